//! Accepting a message: group commit for accepted messages (concurrent SendMessage calls share
//! transactions, see [`sms_runtime::batch`]; a call still returns only once its own rows are
//! committed), each message stored with its event for the dispatcher or the scheduler in the
//! outbox, in the same transaction.

use chrono::{DateTime, Utc};
use sms_bus::Encoded;
use sms_core::TemplateId;
use sms_proto::events::v1::AutoReplyKind;
use sms_proto::events::v1::{MessageAccepted, MessageScheduled, OutboundMessage};
use sms_runtime::batch::Batcher;
use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::media::MediaConfig;
use crate::store::media::MediaState;
use crate::store::{self, MediaRow, MessageRow};

/// User id recorded on automatic replies; the kind tells whether it may reach an opted-out
/// contact (only the opt-out confirmation may).
pub const AUTO_REPLY_USER: &str = "system";

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
    pub template_id: Option<TemplateId>,
    /// Attachments, stored in the same transaction.
    pub media: Vec<MediaRow>,
    /// The id of the first history entry's event.
    pub event_id: String,
    /// The event for the dispatcher (`msg.accepted`) or the scheduler (`msg.scheduled`).
    pub event: Encoded,
    /// Why it is held (quiet hours), for its first history entry.
    pub note: Option<String>,
    /// Its segments on the day it is due, held to the organization's cap (counted only for
    /// an organization with a cap: the count's row serializes its sends).
    pub count: Option<store::settings::DayCount>,
}

impl NewSend {
    fn extra(&self) -> store::NewMessage<'_> {
        store::NewMessage {
            idempotency_key: self.idempotency_key.as_deref(),
            request_hash: self.request_hash.as_deref(),
            to_region: &self.to_region,
            template_id: self.template_id,
            media: &self.media,
            note: self.note.as_deref(),
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
            note: self.note.as_deref(),
        }
    }
}

/// The handle calls store through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer(Batcher<NewSend, Result<(), sqlx::Error>>);

impl Writer {
    /// Starts `writers` tasks storing into `pool` (events into `outbox`); they stop when every
    /// handle is dropped.
    pub fn start(pool: PgPool, outbox: Outbox, writers: usize) -> Writer {
        Writer(Batcher::start(writers, BATCH, move |sends| {
            let (pool, outbox) = (pool.clone(), outbox.clone());
            async move {
                let results = write(&pool, &outbox, sends).await;
                outbox.wake();
                results
            }
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

async fn write(
    pool: &PgPool,
    outbox: &Outbox,
    sends: Vec<NewSend>,
) -> Vec<Result<(), sqlx::Error>> {
    // Attachments are rare and large, and a lone message needs no batch: those go one by one.
    // So does a batch that failed, since one row's conflict fails them all: each caller then
    // gets the answer its own message gets.
    let plain = sends.len() > 1 && sends.iter().all(|s| s.media.is_empty());
    if plain {
        match write_batch(pool, outbox, &sends).await {
            Ok(()) => return sends.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                tracing::debug!(messages = sends.len(), error = %e, "batch insert failed; storing one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(sends.len());
    for s in &sends {
        results.push(write_one(pool, outbox, s).await);
    }
    results
}

async fn write_batch(pool: &PgPool, outbox: &Outbox, sends: &[NewSend]) -> Result<(), sqlx::Error> {
    let all: Vec<store::messages::BatchedMessage<'_>> =
        sends.iter().map(NewSend::batched).collect();
    let events: Vec<Encoded> = sends.iter().map(|s| s.event.clone()).collect();
    let mut tx = pool.begin().await?;
    store::messages::insert_many(&mut tx, &all).await?;
    store::settings::count(&mut tx, &day_counts(sends)).await?;
    outbox.add(&mut tx, &events).await?;
    tx.commit().await
}

async fn write_one(pool: &PgPool, outbox: &Outbox, s: &NewSend) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    store::messages::insert(&mut tx, &s.message, &s.extra(), &s.event_id).await?;
    if let Some(count) = &s.count {
        store::settings::count(&mut tx, std::slice::from_ref(count)).await?;
    }
    outbox.add(&mut tx, std::slice::from_ref(&s.event)).await?;
    tx.commit().await
}

/// The segments of `sends` by organization and day, each held to the lowest cap among them
/// (a cap changed while the batch gathered).
fn day_counts(sends: &[NewSend]) -> Vec<store::settings::DayCount> {
    let mut by_day: std::collections::BTreeMap<
        (&str, chrono::NaiveDate),
        store::settings::DayCount,
    > = std::collections::BTreeMap::new();
    for c in sends.iter().filter_map(|s| s.count.as_ref()) {
        by_day
            .entry((c.organization_id.as_str(), c.day))
            .and_modify(|sum| {
                sum.segments += c.segments;
                sum.cap = match (sum.cap, c.cap) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            })
            .or_insert_with(|| c.clone());
    }
    by_day.into_values().collect()
}

/// The event id of a message's acceptance (the same however often it is published).
pub(crate) fn accepted_event_id(m: &MessageRow) -> String {
    sms_bus::stable_event_id(&[&m.id.to_string(), "accepted"])
}

/// What the dispatcher needs to send `m`, valid for `validity_seconds` from `valid_from` (when
/// given; otherwise from when it falls due, which the dispatcher knows: it can be moved).
fn outbound(
    m: &MessageRow,
    validity_seconds: u32,
    valid_from: Option<DateTime<Utc>>,
) -> OutboundMessage {
    OutboundMessage {
        // Only the opt-out confirmation may reach a contact who just opted out.
        allow_opted_out: m.user_id
            == format!(
                "{AUTO_REPLY_USER}:{}",
                sms_bus::auto_reply_kind_name(AutoReplyKind::OptOutConfirmation)
            ),
        message_id: m.id.to_string(),
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        from: m.from_number.to_string(),
        to: m.to_number.to_string(),
        body: m.body.clone(),
        encoding: m.encoding.as_str().to_owned(),
        encoding_type: sms_bus::encoding_to_proto(m.encoding) as i32,
        segments: u32::try_from(m.segments).unwrap_or(0),
        media_urls: Vec::new(),
        valid_until: valid_from.map(|from| prost_types::Timestamp {
            seconds: from.timestamp() + i64::from(validity_seconds),
            nanos: i32::try_from(from.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        validity_seconds,
    }
}

/// From when a message's validity runs: its acceptance when it goes now; `held_from` (when it
/// was due, before quiet hours held it) when the caller asked for a validity; otherwise from
/// when it falls due (`None`).
pub(crate) fn valid_from(
    m: &MessageRow,
    held_from: Option<DateTime<Utc>>,
    validity_given: bool,
) -> Option<DateTime<Utc>> {
    match (m.send_at, held_from) {
        (None, _) => Some(m.created_at),
        (Some(_), Some(due)) if validity_given => Some(due),
        (Some(_), _) => None,
    }
}

/// Makes the event that hands a stored message on, with signed URLs for its attachments.
#[derive(Clone)]
pub struct Handoff {
    outbox: Outbox,
    media: std::sync::Arc<MediaConfig>,
}

impl Handoff {
    /// Events encoded for `outbox`, attachment URLs signed by `media`.
    pub fn new(outbox: Outbox, media: std::sync::Arc<MediaConfig>) -> Self {
        Handoff { outbox, media }
    }

    /// The event that hands a new message on: to the dispatcher (now) or the scheduler (later),
    /// with signed URLs for its attachments `media`.
    pub(crate) fn accepted_event(
        &self,
        m: &MessageRow,
        media: &[MediaRow],
        validity_seconds: u32,
        valid_from: Option<DateTime<Utc>>,
    ) -> Encoded {
        let mut message = outbound(m, validity_seconds, valid_from);
        // Carriers fetch attachments until two days after the send time.
        let expires = m.send_at.unwrap_or(m.created_at).timestamp() + 2 * 24 * 3600;
        message.media_urls = media
            .iter()
            .filter(|f| f.state == MediaState::Stored)
            .map(|f| self.media.url(f.id, expires))
            .collect();
        let id = m.id.to_string();
        match m.send_at {
            Some(send_at) => self.outbox.encode(&MessageScheduled {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&id, "scheduled"]),
                    &m.organization_id,
                    &id,
                )),
                message: Some(message),
                send_at: Some(prost_types::Timestamp {
                    seconds: send_at.timestamp(),
                    nanos: i32::try_from(send_at.timestamp_subsec_nanos()).unwrap_or(0),
                }),
            }),
            None => self.outbox.encode(&MessageAccepted {
                meta: Some(sms_bus::meta(accepted_event_id(m), &m.organization_id, &id)),
                message: Some(message),
            }),
        }
    }
}
