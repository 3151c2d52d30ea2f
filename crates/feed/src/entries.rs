//! Entries of the feed: the `sms.v1.FeedEvent` each is, and the opt-out changes the feed
//! writes itself (the registry owns opt-outs; the composer's writers build theirs with
//! [`entry`]).

use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_proto::v1::{FeedEvent, FeedOptOut, feed_event};

use crate::store::feed::NewEntry;

/// An entry of `kind` about `event`, as the organization's subscribers will read it.
pub fn entry(
    organization_id: &str,
    event_id: &str,
    occurred_at: DateTime<Utc>,
    kind: &str,
    event: feed_event::Event,
) -> NewEntry {
    let payload = FeedEvent {
        id: event_id.to_owned(),
        cursor: String::new(),
        occurred_at: Some(timestamp(occurred_at)),
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

/// A UTC time as a protobuf timestamp.
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}
