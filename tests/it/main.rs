//! End-to-end tests: every service on the real NATS and PostgreSQL, each test with its own
//! database and subject namespace; the carrier simulator (Twilio's wire format) is the only fake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod callbacks;
mod chaos;
mod console;
mod edges;
mod feed;
mod hostile;
mod inbound;
mod mms;
mod natsauth;
mod operations;
mod outage;
mod outbox;
mod pipeline;
mod quiet;
mod reflection;
mod refusals;
mod renting;
mod resolution;
mod rules;
mod scale;
mod schedule;
mod sending;
mod smpp;
mod traces;
mod webhooks;
