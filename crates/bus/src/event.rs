//! Typed events: each protobuf event knows its subject and carries an [`EventMeta`].

use std::time::SystemTime;

use sms_core::{Encoding, Reason, Status};
use sms_proto::events::v1::{
    AutoReply, AutoReplyKind, CarrierOptOut, EventMeta, InboundReceived, InboundStored,
    MessageAccepted, MessageDue, MessageScheduled, NumberChanged, OptOutChanged, OutboundMessage,
    ScheduleCommandReply, ScheduleState, StatusChanged, StatusCheck,
};
use sms_proto::v1::{Encoding as ProtoEncoding, FailureReason, MessageStatus};
use uuid::Uuid;

use crate::{StateKind, Subjects};

/// A protobuf event that can travel on the bus.
pub trait Event: prost::Message + Default + Send + Sync + 'static {
    /// A short name for logs and metrics.
    const NAME: &'static str;

    /// The protobuf type's full name, e.g. `sms.events.v1.MessageAccepted`. It travels in the
    /// [`EVENT_TYPE_HEADER`](crate::EVENT_TYPE_HEADER): protobuf decodes bytes of one type as
    /// another without complaint, so a consumer refuses an event whose header names another
    /// type rather than act on garbage.
    const TYPE: &'static str;

    /// The common metadata.
    fn meta(&self) -> Option<&EventMeta>;

    /// The subject the event is published on.
    fn subject(&self, subjects: &Subjects) -> String;

    /// The event id (also the JetStream `Nats-Msg-Id`).
    fn event_id(&self) -> &str {
        self.meta().map_or("", |m| m.event_id.as_str())
    }

    /// The message the event is about, if any.
    fn message_id(&self) -> &str {
        self.meta().map_or("", |m| m.message_id.as_str())
    }
}

macro_rules! event {
    ($ty:ident, $name:literal, |$e:ident, $s:ident| $subject:expr) => {
        impl Event for $ty {
            const NAME: &'static str = $name;
            const TYPE: &'static str = concat!("sms.events.v1.", stringify!($ty));

            fn meta(&self) -> Option<&EventMeta> {
                self.meta.as_ref()
            }

            fn subject(&self, $s: &Subjects) -> String {
                let $e = self;
                $subject
            }
        }
    };
}

event!(MessageAccepted, "msg.accepted", |e, s| s.msg_accepted(
    partition_of(e.meta.as_ref(), e.message.as_ref())
));
event!(MessageScheduled, "msg.scheduled", |_e, s| s.msg_scheduled());
event!(MessageDue, "msg.due", |e, s| s
    .msg_due(partition_of(e.meta.as_ref(), e.message.as_ref())));
event!(StatusCheck, "msg.check", |_e, s| s.msg_check());
event!(AutoReply, "msg.autoreply", |_e, s| s.msg_autoreply());
event!(CarrierOptOut, "msg.optout", |_e, s| s.msg_optout());
event!(InboundStored, "msg.inbound", |_e, s| s.msg_inbound());
event!(InboundReceived, "inbound.received", |_e, s| s
    .inbound_received());
event!(OptOutChanged, "optout.changed", |e, s| s.state(
    StateKind::OptOut,
    e.meta.as_ref().map_or("", |m| m.organization_id.as_str()),
    &e.contact_number
));
event!(NumberChanged, "number.changed", |e, s| s.state(
    StateKind::Number,
    e.meta.as_ref().map_or("", |m| m.organization_id.as_str()),
    &e.number
));
event!(StatusChanged, "status", |e, s| s.status(
    status_from_proto(e.status()).unwrap_or(Status::Failed)
));

/// The dispatch partition of a message to send: by its organization and sender.
fn partition_of(meta: Option<&EventMeta>, message: Option<&OutboundMessage>) -> u16 {
    crate::dispatch_partition(
        meta.map_or("", |m| m.organization_id.as_str()),
        message.map_or("", |m| m.from.as_str()),
    )
}

/// An event encoded for the wire, with what its headers carry: what an outbox stores and
/// relays later, exactly as it would have been published at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The event id (`Nats-Msg-Id`).
    pub event_id: String,
    /// The subject.
    pub subject: String,
    /// The protobuf type ([`Event::TYPE`]).
    pub event_type: String,
    /// The protobuf bytes.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the span the event was made in.
    pub traceparent: Option<String>,
}

impl Encoded {
    /// `event`, encoded in the current span.
    ///
    /// The event's creation is a producer span (messaging semantic conventions, operation
    /// `create`: the outbox sends it later) whose context the event carries, so that each
    /// consumer's processing of it is that span's child.
    pub fn new<E: Event>(subjects: &Subjects, event: &E) -> Encoded {
        let subject = event.subject(subjects);
        let event_id = event.event_id().to_owned();
        let span = tracing::info_span!(
            "create",
            otel.name = %format_args!("create {}", E::NAME),
            otel.kind = "producer",
            "messaging.system" = "nats",
            "messaging.operation.type" = "create",
            "messaging.operation.name" = "create",
            "messaging.destination.name" = %subject,
            "messaging.message.id" = %event_id,
            "sms.message_id" = %event.message_id(),
        );
        let traceparent = span.in_scope(crate::trace::current_traceparent);
        Encoded {
            event_id,
            subject,
            event_type: E::TYPE.to_owned(),
            payload: event.encode_to_vec(),
            traceparent,
        }
    }
}

/// A new event id: a UUIDv7, so ids sort by time.
pub fn new_event_id() -> String {
    Uuid::now_v7().to_string()
}

/// A deterministic event id for something that may be reported more than once (a carrier
/// retrying a webhook): the same `parts` always give the same id, so JetStream drops repeats.
pub fn stable_event_id(parts: &[&str]) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, parts.join("\u{1f}").as_bytes()).to_string()
}

/// The id of a carrier's word on message `message_id` of `organization_id`: that `status`
/// for carrier sid `sid`, signed by `account`. A carrier retrying the callback (or the
/// dispatcher reading the same from the carrier's records) makes the same event; a callback
/// that differs in any of them (another account signing, another message named) is another
/// event, so it can never take the place of the genuine one in JetStream's de-duplication.
pub fn carrier_status_event_id(
    sid: &str,
    status: Status,
    account: &str,
    organization_id: &str,
    message_id: &str,
) -> String {
    stable_event_id(&[sid, status.as_str(), account, organization_id, message_id])
}

/// Metadata for a new event about `message_id` (empty when none) of `organization_id`.
pub fn meta(event_id: String, organization_id: &str, message_id: &str) -> EventMeta {
    EventMeta {
        event_id,
        organization_id: organization_id.to_owned(),
        message_id: message_id.to_owned(),
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
    }
}

/// The domain status of a protobuf status; `None` for `UNSPECIFIED`.
pub fn status_from_proto(s: MessageStatus) -> Option<Status> {
    Some(match s {
        MessageStatus::Unspecified => return None,
        MessageStatus::Accepted => Status::Accepted,
        MessageStatus::Scheduled => Status::Scheduled,
        MessageStatus::Queued => Status::Queued,
        MessageStatus::Sending => Status::Sending,
        MessageStatus::Sent => Status::Sent,
        MessageStatus::Delivered => Status::Delivered,
        MessageStatus::Undelivered => Status::Undelivered,
        MessageStatus::Failed => Status::Failed,
        MessageStatus::Canceled => Status::Canceled,
        MessageStatus::Received => Status::Received,
    })
}

/// The protobuf status of a domain status.
pub fn status_to_proto(s: Status) -> MessageStatus {
    match s {
        Status::Accepted => MessageStatus::Accepted,
        Status::Scheduled => MessageStatus::Scheduled,
        Status::Queued => MessageStatus::Queued,
        Status::Sending => MessageStatus::Sending,
        Status::Sent => MessageStatus::Sent,
        Status::Delivered => MessageStatus::Delivered,
        Status::Undelivered => MessageStatus::Undelivered,
        Status::Failed => MessageStatus::Failed,
        Status::Canceled => MessageStatus::Canceled,
        Status::Received => MessageStatus::Received,
    }
}

/// The protobuf reason of a catalogue reason.
pub fn reason_to_proto(r: Reason) -> FailureReason {
    match r {
        Reason::OptedOut => FailureReason::OptedOut,
        Reason::NotSmsCapable => FailureReason::NotSmsCapable,
        Reason::SenderUnavailable => FailureReason::SenderUnavailable,
        Reason::FilteredAsSpam => FailureReason::FilteredAsSpam,
        Reason::Unreachable => FailureReason::Unreachable,
        Reason::UnknownDestination => FailureReason::UnknownDestination,
        Reason::Blocked => FailureReason::Blocked,
        Reason::QueueOverflow => FailureReason::QueueOverflow,
        Reason::RateLimited => FailureReason::RateLimited,
        Reason::InvalidRecipient => FailureReason::InvalidRecipient,
        Reason::InvalidSender => FailureReason::InvalidSender,
        Reason::RegionNotEnabled => FailureReason::RegionNotEnabled,
        Reason::AccountProblem => FailureReason::AccountProblem,
        Reason::Expired => FailureReason::Expired,
        Reason::UnknownCarrierError => FailureReason::UnknownCarrierError,
        Reason::CarrierUnavailable => FailureReason::CarrierUnavailable,
        Reason::MediaRejected => FailureReason::MediaRejected,
        Reason::InvalidMessage => FailureReason::InvalidMessage,
    }
}

/// The catalogue reason of a protobuf reason (none for unspecified).
pub fn reason_from_proto(r: FailureReason) -> Option<Reason> {
    Some(match r {
        FailureReason::Unspecified => return None,
        FailureReason::OptedOut => Reason::OptedOut,
        FailureReason::NotSmsCapable => Reason::NotSmsCapable,
        FailureReason::SenderUnavailable => Reason::SenderUnavailable,
        FailureReason::FilteredAsSpam => Reason::FilteredAsSpam,
        FailureReason::Unreachable => Reason::Unreachable,
        FailureReason::UnknownDestination => Reason::UnknownDestination,
        FailureReason::Blocked => Reason::Blocked,
        FailureReason::QueueOverflow => Reason::QueueOverflow,
        FailureReason::RateLimited => Reason::RateLimited,
        FailureReason::InvalidRecipient => Reason::InvalidRecipient,
        FailureReason::InvalidSender => Reason::InvalidSender,
        FailureReason::RegionNotEnabled => Reason::RegionNotEnabled,
        FailureReason::AccountProblem => Reason::AccountProblem,
        FailureReason::Expired => Reason::Expired,
        FailureReason::UnknownCarrierError => Reason::UnknownCarrierError,
        FailureReason::CarrierUnavailable => Reason::CarrierUnavailable,
        FailureReason::MediaRejected => Reason::MediaRejected,
        FailureReason::InvalidMessage => Reason::InvalidMessage,
    })
}

/// Sets a status event's reason: the typed field, and the name the previous release reads.
pub fn set_reason(e: &mut StatusChanged, reason: Option<Reason>) {
    e.failure_reason = reason.map_or(FailureReason::Unspecified, reason_to_proto) as i32;
    e.reason = reason.map(|r| r.as_str().to_owned()).unwrap_or_default();
}

/// A status event with only its reason set (both fields), the rest default: the base of a
/// status event's literal (`..sms_bus::reasoned(reason)`).
pub fn reasoned(reason: Option<Reason>) -> StatusChanged {
    let mut e = StatusChanged::default();
    set_reason(&mut e, reason);
    e
}

/// A status event's reason: the typed field, or (an event from the previous release) the
/// catalogue name it carried.
pub fn event_reason(e: &StatusChanged) -> Option<Reason> {
    FailureReason::try_from(e.failure_reason)
        .ok()
        .and_then(reason_from_proto)
        .or_else(|| Reason::parse(&e.reason))
}

/// The protobuf encoding of a text's encoding.
pub fn encoding_to_proto(e: Encoding) -> ProtoEncoding {
    match e {
        Encoding::Gsm7 => ProtoEncoding::Gsm7,
        Encoding::Ucs2 => ProtoEncoding::Ucs2,
    }
}

/// A schedule's state by its name in the scheduler's table (and the previous release's
/// replies); unknown for anything else.
pub fn schedule_state_from_name(name: &str) -> ScheduleState {
    match name {
        "pending" => ScheduleState::Pending,
        "firing" => ScheduleState::Firing,
        "fired" => ScheduleState::Fired,
        "canceled" => ScheduleState::Canceled,
        _ => ScheduleState::Unknown,
    }
}

/// A schedule state's name: in the scheduler's table, in the previous release's replies, and
/// in what callers are told.
pub fn schedule_state_name(s: ScheduleState) -> &'static str {
    match s {
        ScheduleState::Pending => "pending",
        ScheduleState::Firing => "firing",
        ScheduleState::Fired => "fired",
        ScheduleState::Canceled => "canceled",
        ScheduleState::Unknown | ScheduleState::Unspecified => "unknown",
    }
}

/// A scheduler's reply's state: the typed field, or the previous release's name.
pub fn reply_state(r: &ScheduleCommandReply) -> ScheduleState {
    match ScheduleState::try_from(r.schedule_state) {
        Ok(ScheduleState::Unspecified) | Err(_) => schedule_state_from_name(&r.state),
        Ok(s) => s,
    }
}

/// An auto-reply kind's name (stored with the reply it sent, and the previous release's).
pub fn auto_reply_kind_name(k: AutoReplyKind) -> &'static str {
    match k {
        AutoReplyKind::Help => "help",
        AutoReplyKind::OptOutConfirmation => "opt_out_confirmation",
        AutoReplyKind::Unspecified => "",
    }
}

/// An auto-reply's kind: the typed field, or the previous release's name.
pub fn auto_reply_kind(e: &AutoReply) -> AutoReplyKind {
    match AutoReplyKind::try_from(e.reply_kind) {
        Ok(AutoReplyKind::Unspecified) | Err(_) => match e.kind.as_str() {
            "help" => AutoReplyKind::Help,
            "opt_out_confirmation" => AutoReplyKind::OptOutConfirmation,
            _ => AutoReplyKind::Unspecified,
        },
        Ok(k) => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in sms_core::status::ALL {
            assert_eq!(status_from_proto(status_to_proto(s)), Some(s));
        }
    }

    #[test]
    fn stable_ids_are_stable_and_distinct() {
        assert_eq!(
            stable_event_id(&["SM1", "sent"]),
            stable_event_id(&["SM1", "sent"])
        );
        assert_ne!(
            stable_event_id(&["SM1", "sent"]),
            stable_event_id(&["SM1", "delivered"])
        );
        assert_ne!(
            stable_event_id(&["SM1s", "ent"]),
            stable_event_id(&["SM1", "sent"])
        );
    }

    #[test]
    fn events_name_their_protobuf_type() {
        use prost::Name as _;
        assert_eq!(MessageAccepted::TYPE, "sms.events.v1.MessageAccepted");
        assert_eq!(StatusChanged::TYPE, StatusChanged::full_name());
        assert_eq!(OptOutChanged::TYPE, OptOutChanged::full_name());
    }

    #[test]
    fn status_events_go_to_their_status_subject() {
        let e = StatusChanged {
            status: MessageStatus::Delivered as i32,
            ..Default::default()
        };
        assert_eq!(e.subject(&Subjects::new("x")), "x.status.delivered");
    }

    #[test]
    fn reasons_round_trip_and_old_events_are_read_by_name() {
        for r in sms_core::reason::ALL_REASONS {
            assert_eq!(reason_from_proto(reason_to_proto(r)), Some(r));
            // The value's name is the catalogue's name, prefixed.
            assert_eq!(
                reason_to_proto(r).as_str_name(),
                format!("FAILURE_REASON_{}", r.as_str().to_ascii_uppercase())
            );
            let mut e = StatusChanged::default();
            set_reason(&mut e, Some(r));
            assert_eq!(event_reason(&e), Some(r));
            let old = StatusChanged {
                reason: r.as_str().to_owned(),
                ..Default::default()
            };
            assert_eq!(event_reason(&old), Some(r));
        }
        assert_eq!(event_reason(&StatusChanged::default()), None);
        for s in [
            ScheduleState::Pending,
            ScheduleState::Firing,
            ScheduleState::Fired,
            ScheduleState::Canceled,
            ScheduleState::Unknown,
        ] {
            let old = ScheduleCommandReply {
                state: schedule_state_name(s).to_owned(),
                ..Default::default()
            };
            assert_eq!(reply_state(&old), s);
        }
        for k in [AutoReplyKind::Help, AutoReplyKind::OptOutConfirmation] {
            let old = AutoReply {
                kind: auto_reply_kind_name(k).to_owned(),
                ..Default::default()
            };
            assert_eq!(auto_reply_kind(&old), k);
        }
    }
}
