//! What the composer's writers append to the event feed ([`sms_feed`]), each in the
//! transaction of the change it announces: statuses and inbound messages (number changes are
//! `sms-numbers`').

use sms_feed::NewEntry;
use sms_feed::entries::entry;
use sms_proto::v1::{FeedInboundMessage, FeedMessageStatus, feed_event};

use crate::store::messages::About;
use crate::store::{self, MessageRow};

/// A message's status moved.
pub(crate) fn status_entry(
    organization_id: &str,
    message_id: sms_core::MessageId,
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
            reason: fact
                .reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
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
            from: m.from_number.to_string(),
            to: m.to_number.to_string(),
            body: m.body.clone(),
            lead_id: m.lead_id.clone().unwrap_or_default(),
            contact_id: m.contact_id.clone().unwrap_or_default(),
            inbox_user_ids: inbox.to_vec(),
        }),
    )
}
