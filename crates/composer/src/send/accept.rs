//! Accepting a message: group commit for accepted messages (concurrent SendMessage calls share
//! transactions, see [`sms_runtime::batch`]; a call still returns only once its own rows are
//! committed), then the event for the dispatcher or the scheduler, and the re-publisher for
//! the events whose publish may have failed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sms_proto::events::v1::{MessageAccepted, MessageScheduled, OutboundMessage};
use sms_runtime::batch::Batcher;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::App;
use crate::store::{self, MediaRow, MessageRow};

/// The most messages one transaction stores.
pub const BATCH: usize = 256;

/// A message to store as accepted (or scheduled), with what goes with it.
#[derive(Debug, Clone)]
pub struct NewSend {
    /// The message row.
    pub message: MessageRow,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The request's fingerprint (stored with the key).
    pub request_hash: Option<Vec<u8>>,
    /// The recipient's region, for usage.
    pub to_region: String,
    /// The template it was rendered from.
    pub template_id: Option<Uuid>,
    /// Attachments, stored in the same transaction.
    pub media: Vec<MediaRow>,
    /// The id of the first history entry's event.
    pub event_id: String,
}

impl NewSend {
    fn extra(&self) -> store::NewMessage<'_> {
        store::NewMessage {
            idempotency_key: self.idempotency_key.as_deref(),
            request_hash: self.request_hash.as_deref(),
            to_region: &self.to_region,
            template_id: self.template_id,
            media: &self.media,
        }
    }

    fn batched(&self) -> store::messages::BatchedMessage<'_> {
        store::messages::BatchedMessage {
            message: &self.message,
            idempotency_key: self.idempotency_key.as_deref(),
            request_hash: self.request_hash.as_deref(),
            to_region: &self.to_region,
            template_id: self.template_id,
            event_id: &self.event_id,
        }
    }
}

/// The handle calls store through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer(Batcher<NewSend, Result<(), sqlx::Error>>);

impl Writer {
    /// Starts `writers` tasks storing into `pool`; they stop when every handle is dropped.
    pub fn start(pool: PgPool, writers: usize) -> Writer {
        Writer(Batcher::start(writers, BATCH, move |sends| {
            let pool = pool.clone();
            async move { write(&pool, sends).await }
        }))
    }

    /// Stores `send` and returns once it is committed. The error is the one storing this
    /// message alone gives (a taken idempotency key, say), whatever else shared its batch.
    pub async fn insert(&self, send: NewSend) -> Result<(), sqlx::Error> {
        self.0
            .call(send)
            .await
            .unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn write(pool: &PgPool, sends: Vec<NewSend>) -> Vec<Result<(), sqlx::Error>> {
    // Attachments are rare and large, and a lone message needs no batch: those go one by one.
    // So does a batch that failed, since one row's conflict fails them all: each caller then
    // gets the answer its own message gets.
    let plain = sends.len() > 1 && sends.iter().all(|s| s.media.is_empty());
    if plain {
        let all: Vec<store::messages::BatchedMessage<'_>> =
            sends.iter().map(NewSend::batched).collect();
        match store::messages::insert_many(pool, &all).await {
            Ok(()) => return sends.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                tracing::debug!(messages = sends.len(), error = %e, "batch insert failed; storing one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(sends.len());
    for s in &sends {
        results.push(store::messages::insert(pool, &s.message, &s.extra(), &s.event_id).await);
    }
    results
}

/// The event id of a message's acceptance (the same however often it is published).
pub(crate) fn accepted_event_id(m: &MessageRow) -> String {
    sms_bus::stable_event_id(&[&m.id.to_string(), "accepted"])
}

/// What the dispatcher needs to send `m`.
fn outbound(m: &MessageRow) -> OutboundMessage {
    OutboundMessage {
        // Only the opt-out confirmation may reach a contact who just opted out.
        allow_opted_out: m.user_id
            == format!("{}:opt_out_confirmation", crate::inbox::AUTO_REPLY_USER),
        message_id: m.id.to_string(),
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        from: m.from_number.clone(),
        to: m.to_number.clone(),
        body: m.body.clone(),
        encoding: m.encoding.as_str().to_owned(),
        segments: u32::try_from(m.segments).unwrap_or(0),
        media_urls: Vec::new(),
    }
}

impl App {
    /// Publishes a stored message for the dispatcher (now) or the scheduler (later).
    pub(crate) async fn publish_accepted(&self, m: &MessageRow) -> Result<(), sms_bus::BusError> {
        let mut message = outbound(m);
        if m.media_count > 0 {
            let from = m.send_at.unwrap_or(m.created_at).timestamp();
            message.media_urls = match self.media_urls(m.id, from).await {
                Ok(urls) => urls,
                Err(e) => {
                    // Not published: the re-publisher tries again.
                    tracing::warn!(message_id = %m.id, error = %e, "attachment URLs unavailable");
                    return Ok(());
                }
            };
        }
        if let Some(send_at) = m.send_at {
            let event = MessageScheduled {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&m.id.to_string(), "scheduled"]),
                    &m.organization_id,
                    &m.id.to_string(),
                )),
                message: Some(message),
                send_at: Some(prost_types::Timestamp {
                    seconds: send_at.timestamp(),
                    nanos: i32::try_from(send_at.timestamp_subsec_nanos()).unwrap_or(0),
                }),
            };
            self.bus.publish_durably(&event).await?;
            if let Err(e) = store::messages::mark_schedule_published(&self.pool, m.id).await {
                // Harmless: the re-publisher sends it again and the scheduler ignores repeats.
                tracing::warn!(message_id = %m.id, error = %e, "could not mark the schedule published");
            }
            return Ok(());
        }
        let event = MessageAccepted {
            meta: Some(sms_bus::meta(
                accepted_event_id(m),
                &m.organization_id,
                &m.id.to_string(),
            )),
            message: Some(message),
        };
        self.bus.publish_durably(&event).await
    }

    /// Re-publishes messages stuck in `accepted`, and schedules whose publish is not confirmed
    /// (the publish failed, or the process died between storing and publishing). Same event
    /// id: JetStream, the dispatcher or the scheduler drop repeats.
    pub async fn republish_stale(&self, older_than: Duration) -> Result<usize, sqlx::Error> {
        let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stale = store::messages::claim_unpublished(&self.pool, cutoff, 500).await?;
        for m in &stale {
            if let Err(e) = self.publish_accepted(m).await {
                tracing::warn!(message_id = %m.id, error = %e, "re-publish failed");
            }
        }
        Ok(stale.len())
    }
}

/// Every few seconds, publishes again the messages stuck in `accepted`.
pub async fn republisher(app: Arc<App>, after: Duration, shutdown: CancellationToken) {
    let period = (after / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match app.republish_stale(after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "re-published messages stuck in accepted"),
            Err(e) => tracing::warn!(error = %e, "re-publisher query failed"),
        }
    }
}
