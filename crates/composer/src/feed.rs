//! The event feed the CRM subscribes to (`EventsService.Subscribe`): message statuses, inbound
//! messages, opt-out changes and number changes of one organization, each written in the
//! transaction of the change it announces (opt-outs, which another service owns, by a durable
//! consumer whose marker is the entry itself), read back in an order no later commit can slip
//! behind, resumable from any event's cursor.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_proto::v1::{
    FeedEvent, FeedInboundMessage, FeedMessageStatus, FeedNumber, FeedOptOut, SubscribeResponse,
    feed_event,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Caller};
use crate::error::ComposerError;
use crate::store::feed::{NewEntry, Position};
use crate::store::messages::About;
use crate::store::{self, MessageRow};

/// Events read per query.
const PAGE: i64 = 500;
/// How often a subscriber looks for events written by other replicas (or committed out of
/// order) when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// Events kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The feed's shared state: wakes this replica's subscribers when it writes.
#[derive(Debug, Clone)]
pub struct Feed {
    pub(crate) written: Arc<Notify>,
    /// How long events are kept.
    pub retention: Duration,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            written: Arc::new(Notify::new()),
            retention: DEFAULT_RETENTION,
        }
    }
}

impl Feed {
    /// A feed keeping events for `retention`.
    pub fn new(retention: Duration) -> Self {
        Feed {
            retention,
            ..Feed::default()
        }
    }

    /// Wakes the subscribers after a commit that appended events.
    pub fn wake(&self) {
        self.written.notify_waiters();
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
        occurred_at: Some(crate::grpc::timestamp(occurred_at)),
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

/// The cursor of the event at `p`: opaque to callers.
pub fn cursor(p: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1.{}.{}", p.tx, p.seq))
}

/// The position a cursor names, if it is one of ours.
pub fn parse_cursor(cursor: &str) -> Option<Position> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.strip_prefix("v1.")?.split('.');
    let tx = parts.next()?.parse::<i64>().ok()?;
    let seq = parts.next()?.parse::<i64>().ok()?;
    (parts.next().is_none() && tx >= 0 && seq >= 0).then_some(Position { tx, seq })
}

/// Longest cursor accepted.
pub const MAX_CURSOR: usize = 128;

impl App {
    /// Where a subscription starts: after `cursor`, else the oldest kept (`from_start`), else
    /// now. A cursor that is malformed, unknown, or older than the feed keeps is refused with
    /// the oldest cursor kept.
    pub async fn feed_start(
        &self,
        caller: &Caller,
        given: &str,
        from_start: bool,
    ) -> Result<Position, ComposerError> {
        let org = &caller.organization_id;
        sms_core::text::check("cursor", given, MAX_CURSOR, sms_core::text::Lines::Single)?;
        let horizon = store::feed::horizon(&self.pool, org).await?;
        let oldest = horizon.unwrap_or(Position { tx: 0, seq: -1 });
        let resume_from = || horizon.map(cursor).unwrap_or_default();
        if given.trim().is_empty() {
            return Ok(if from_start {
                oldest
            } else {
                store::feed::now(&self.pool).await?
            });
        }
        let Some(at) = parse_cursor(given) else {
            return Err(ComposerError::InvalidCursor {
                resume_from: resume_from(),
            });
        };
        if horizon.is_some_and(|h| at < h) {
            return Err(ComposerError::CursorExpired {
                resume_from: resume_from(),
            });
        }
        if Some(at) != horizon && !store::feed::holds(&self.pool, org, at).await? {
            return Err(ComposerError::CursorUnknown {
                resume_from: resume_from(),
            });
        }
        Ok(at)
    }

    /// Sends the organization's events after `from` to `out` as they come, until the
    /// subscriber goes away or the service stops.
    pub async fn feed_pump(
        self: Arc<Self>,
        organization_id: String,
        from: Position,
        out: mpsc::Sender<Result<SubscribeResponse, tonic::Status>>,
        shutdown: CancellationToken,
    ) {
        let mut after = from;
        loop {
            // Registered before reading, so that a write between the read and the wait wakes it.
            let written = self.feed.written.notified();
            let page = match store::feed::read(&self.pool, &organization_id, after, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "event feed read failed");
                    let _ = out
                        .send(Err(tonic::Status::unavailable(
                            "the event feed cannot be read now; resubscribe with your last cursor",
                        )))
                        .await;
                    return;
                }
            };
            let full = i64::try_from(page.len()).unwrap_or(0) == PAGE;
            for (at, payload) in page {
                after = at;
                let Ok(mut event) = FeedEvent::decode(payload.as_slice()) else {
                    tracing::error!(?at, "feed entry does not decode; skipped");
                    continue;
                };
                event.cursor = cursor(at);
                if out
                    .send(Ok(SubscribeResponse { event: Some(event) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = out.closed() => return,
                () = shutdown.cancelled() => return,
                () = written => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Deletes events past their retention, a batch at a time, until `shutdown`.
    pub async fn prune_feed(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let before = Utc::now()
                - chrono::Duration::from_std(self.feed.retention).unwrap_or(chrono::Duration::MAX);
            match store::feed::prune(&self.pool, before, 10_000).await {
                Ok(n) if n > 0 => {
                    tracing::info!(deleted = n, "event feed pruned");
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event feed prune failed"),
            }
            // Once a round, not once per feed batch.
            if let Err(e) = store::webhooks::prune(&self.pool, before).await {
                tracing::warn!(error = %e, "webhook attempts prune failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(600)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_is_not_ours() {
        let p = Position { tx: 7_234, seq: 99 };
        assert_eq!(parse_cursor(&cursor(p)), Some(p));
        for bad in [
            "",
            "abc",
            "djEuMS4y!",
            &URL_SAFE_NO_PAD.encode("v2.1.2"),
            &URL_SAFE_NO_PAD.encode("v1.1"),
            &URL_SAFE_NO_PAD.encode("v1.1.2.3"),
            &URL_SAFE_NO_PAD.encode("v1.-1.2"),
            &URL_SAFE_NO_PAD.encode("v1.x.2"),
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
