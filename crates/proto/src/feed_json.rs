//! An event of the feed (`sms.v1.FeedEvent`) as JSON: what webhooks deliver and
//! `smsctl events --json` prints, in one place so that the two never drift apart.

use serde_json::{Value, json};

use crate::v1::{FeedEvent, MessageStatus, feed_event};

/// `delivered`, `failed`, … (the status enum's name without its prefix).
pub fn status_name(status: i32) -> String {
    MessageStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MESSAGE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| status.to_string())
}

/// The event's own fields.
pub fn data(e: &FeedEvent) -> Value {
    match &e.event {
        Some(feed_event::Event::MessageStatus(s)) => json!({
            "message_id": s.message_id, "status": status_name(s.status), "reason": s.reason,
            "carrier_error_code": s.carrier_error_code, "from": s.from, "to": s.to,
            "lead_id": s.lead_id, "contact_id": s.contact_id, "user_id": s.user_id}),
        Some(feed_event::Event::InboundMessage(m)) => json!({
            "message_id": m.message_id, "from": m.from, "to": m.to, "body": m.body,
            "lead_id": m.lead_id, "contact_id": m.contact_id, "inbox_user_ids": m.inbox_user_ids}),
        Some(feed_event::Event::OptOut(o)) => json!({
            "contact_number": o.contact_number, "opted_out": o.opted_out, "source": o.source,
            "our_number": o.our_number}),
        Some(feed_event::Event::Number(n)) => json!({"number": n.number, "active": n.active}),
        None => Value::Null,
    }
}

/// When it happened, RFC 3339 in UTC (empty when unknown).
pub fn occurred_at(e: &FeedEvent) -> String {
    e.occurred_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The whole event, with its id and cursor: a line of `smsctl events --json`.
pub fn event(e: &FeedEvent) -> Value {
    json!({"id": e.id, "cursor": e.cursor, "type": e.r#type, "occurred_at": occurred_at(e),
           "data": data(e)})
}

/// A webhook's body, as the Standard Webhooks specification lays it out: the type, when it
/// happened, and the data (the event's id travels in the `webhook-id` header).
pub fn webhook_body(e: &FeedEvent) -> Value {
    json!({"type": e.r#type, "timestamp": occurred_at(e), "data": data(e)})
}
