//! NATS JetStream for the SMS platform.
//!
//! * [`Subjects`] and [`ConsumerKind`]: every subject, stream and durable consumer, in one place;
//! * [`Bus::publish`]: typed protobuf publish with the event id as `Nats-Msg-Id` (JetStream
//!   drops a repeat inside the duplicate window) and the W3C trace context in the headers;
//! * [`Bus::consume`]: a durable pull consumer shared by every replica, explicit acks, bounded
//!   redelivery, and a dead-letter stream for events that cannot be decoded or keep failing.
//!
//! By concern: [`config`] (servers, credentials, TLS), `client` (connecting, streams,
//! publishing), `consume` (consumers, acks, dead letters), `state` (local copies of the state
//! stream), `error`, [`permissions`] (each service's NATS user), [`trace`], [`metrics`].

mod client;
pub mod config;
mod consume;
mod error;
mod event;
pub mod metrics;
pub mod permissions;
mod state;
mod subjects;
pub mod trace;

pub use client::Bus;
pub use config::{BusConfig, NatsAuth, NatsTls, parse_servers};
pub use consume::Delivery;
pub use error::{BusError, HandleError};
pub use event::{
    Encoded, Event, auto_reply_kind, auto_reply_kind_name, carrier_status_event_id,
    encoding_to_proto, event_reason, meta, new_event_id, reason_from_proto, reason_to_proto,
    reasoned, reply_state, schedule_state_from_name, schedule_state_name, set_reason,
    stable_event_id, status_from_proto, status_to_proto,
};
pub use state::{Held, Holders, StateFollower, StateSet, opted_out_entry};
pub use subjects::{ConsumerKind, DISPATCH_PARTITIONS, StateKind, Subjects, dispatch_partition};

/// Header naming an event's protobuf type (`sms.events.v1.MessageAccepted`); consumers
/// refuse events of another type.
pub const EVENT_TYPE_HEADER: &str = "Sms-Event-Type";
/// Header naming why an event was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "Sms-Dlq-Reason";
/// Header naming the subject a dead-lettered event was published on.
pub const DLQ_SUBJECT_HEADER: &str = "Sms-Dlq-Subject";
/// Header naming the consumer that gave up on a dead-lettered event.
pub const DLQ_CONSUMER_HEADER: &str = "Sms-Dlq-Consumer";
