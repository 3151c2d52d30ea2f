//! The organization's numbers, the groups that share them, and renting: searching the
//! carrier's numbers, renting and importing them, giving released ones back.
//!
//! A library the composer runs (its `NumbersService` and the senders the send path checks):
//! [`Numbers`] is the capability, [`grpc::NumbersApi`] its gRPC adapter, [`NumbersError`] its
//! one error type mapped to gRPC in one place, [`store`] its SQL. The tables are in the
//! composer's schema: a send reads them in its own transaction ([`store::numbers::usable`],
//! [`store::numbers::find`]), and a number's change is written with its feed entry
//! ([`sms_feed`]) and its state event (the composer's outbox) in one transaction.

pub mod carrier;
pub mod error;
pub mod grpc;
pub mod numbers;
pub mod renting;
pub mod store;

pub use carrier::{Carrier, CarrierConfig};
pub use error::NumbersError;
pub use numbers::{Numbers, Routes, SenderCache, TWILIO_CONNECTION, is_connection_name};
pub use renting::GIVE_BACK_EVERY;
