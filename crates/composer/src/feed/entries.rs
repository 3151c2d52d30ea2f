//! What the feed's writers append, in the transaction of the change each announces, and
//! the signal that wakes this replica's subscribers after such a commit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_proto::v1::{
    FeedEvent, FeedInboundMessage, FeedMessageStatus, FeedNumber, FeedOptOut, feed_event,
};
use tokio::sync::Notify;

use crate::store::feed::NewEntry;
use crate::store::messages::About;
use crate::store::{self, MessageRow};

/// Wakes this replica's subscribers when an entry was written.
#[derive(Debug, Clone, Default)]
pub struct Written(Arc<Notify>);

impl Written {
    /// Resolves at the next [`Written::wake`] after this call.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }

    /// Wakes the subscribers after a commit that appended events.
    pub fn wake(&self) {
        self.0.notify_waiters();
    }
}

fn entry(
    organization_id: &str,
    event_id: &str,
    occurred_at: DateTime<Utc>,
    kind: &str,
    event: feed_event::Event,
) -> NewEntry {
    let payload = FeedEvent {
        id: event_id.to_owned(),
        cursor: String::new(),
        occurred_at: Some(crate::fields::timestamp(occurred_at)),
        r#type: kind.to_owned(),
        event: Some(event),
    }
    .encode_to_vec();
    NewEntry {
        organization_id: organization_id.to_owned(),
        event_id: event_id.to_owned(),
        occurred_at,
        payload,
    }
}

/// A message's status moved.
pub(crate) fn status_entry(
    organization_id: &str,
    message_id: uuid::Uuid,
    event_id: &str,
    fact: &store::HistoryRow,
    about: &About,
) -> NewEntry {
    entry(
        organization_id,
        event_id,
        fact.occurred_at,
        "message.status",
        feed_event::Event::MessageStatus(FeedMessageStatus {
            message_id: message_id.to_string(),
            status: sms_bus::status_to_proto(fact.status) as i32,
            reason: fact.reason.clone().unwrap_or_default(),
            carrier_error_code: fact
                .carrier_error_code
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            from: about.from.clone(),
            to: about.to.clone(),
            lead_id: about.lead_id.clone().unwrap_or_default(),
            contact_id: about.contact_id.clone().unwrap_or_default(),
            user_id: about.user_id.clone(),
        }),
    )
}

/// A contact texted one of our numbers.
pub(crate) fn inbound_entry(m: &MessageRow, event_id: &str, inbox: &[String]) -> NewEntry {
    entry(
        &m.organization_id,
        event_id,
        m.created_at,
        "message.inbound",
        feed_event::Event::InboundMessage(FeedInboundMessage {
            message_id: m.id.to_string(),
            from: m.from_number.clone(),
            to: m.to_number.clone(),
            body: m.body.clone(),
            lead_id: m.lead_id.clone().unwrap_or_default(),
            contact_id: m.contact_id.clone().unwrap_or_default(),
            inbox_user_ids: inbox.to_vec(),
        }),
    )
}

/// One of the organization's numbers changed.
pub(crate) fn number_entry(
    organization_id: &str,
    event_id: &str,
    number: &str,
    active: bool,
) -> NewEntry {
    entry(
        organization_id,
        event_id,
        Utc::now(),
        "number.changed",
        feed_event::Event::Number(FeedNumber {
            number: number.to_owned(),
            active,
        }),
    )
}

/// A contact opted out or back in (from the registry's state event).
pub(crate) fn opt_out_entry(e: &sms_proto::events::v1::OptOutChanged) -> Option<NewEntry> {
    let meta = e.meta.as_ref()?;
    let occurred_at = meta
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_else(Utc::now);
    Some(entry(
        &meta.organization_id,
        &meta.event_id,
        occurred_at,
        "optout.changed",
        feed_event::Event::OptOut(FeedOptOut {
            contact_number: e.contact_number.clone(),
            opted_out: e.opted_out,
            source: e.source.clone(),
            our_number: e.our_number.clone(),
        }),
    ))
}
