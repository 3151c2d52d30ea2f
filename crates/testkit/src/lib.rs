//! Test helpers: every test gets its own PostgreSQL database and its own NATS subject
//! namespace, so tests run in parallel without seeing each other; the services run in-process
//! on port 0; the carrier simulator is the only fake.
//!
//! By concern: [`setup`] (servers, accounts, a fresh database and namespace), [`options`] (how
//! a stack is set up), [`stack`] (the platform in-process, its clients, waiting for it),
//! [`carrier`] (a carrier that counts its calls), [`requests`] (requests as the CRM and the
//! carrier send them), [`cluster`] (real processes, for the chaos and trace tests).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod carrier;
pub mod cluster;
pub mod options;
pub mod requests;
pub mod setup;
pub mod stack;

pub use carrier::CountingCarrier;
pub use options::{NatsAccess, Options, SIM_SMPP_ERRORS, smpp_config};
pub use requests::{
    as_caller, as_member, as_user, eventually, post_form, send_ok, sms, twilio_signature,
};
pub use setup::{
    ACCOUNT_SID, AUTH_TOKEN, NATS_URL, ORG, OTHER_ACCOUNT_SID, OTHER_AUTH_TOKEN, PG_BASE, USER,
    common_config, fresh_database, fresh_namespace, init_tracing,
};
/// How a carrier's sends in doubt are resolved ([`Options::carrier_resolution`]).
pub use sms_dispatcher::{Resolution, Unanswered};
pub use stack::{DispatcherHandle, Stack};
