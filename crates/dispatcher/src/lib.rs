//! The dispatcher: takes accepted and due messages off the bus and sends each one exactly
//! once through a [`Carrier`], publishing what happened as status events.
//!
//! Exactly once: before calling the carrier, the dispatcher claims the message in its own
//! `sends` table. A redelivered event (a replica died, an ack was lost) finds the claim and is
//! dropped, so the carrier never sees a message twice. A retryable failure releases the claim
//! (`retry`) and the event comes back after a back-off.
//!
//! Every status the dispatcher reports is written to its outbox in the transaction that
//! changes the claim (`queued` with the claim, `sending` with the carrier's sid, `failed` with
//! the failure), so a status is published if and only if the change it reports was committed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sms_bus::{ConsumerKind, Delivery, Encoded, HandleError, StateKind};
use sms_core::PhoneNumber;
use sms_core::{Reason, Status};
use sms_proto::events::v1::{
    EventMeta, MessageAccepted, MessageDue, NumberChanged, OutboundMessage, StatusChanged,
    StatusSource,
};
use sms_runtime::batch::Batcher;
use sms_runtime::outbox::Outbox;
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod carrier;

pub use carrier::{Carrier, CarrierError, CarrierMessage, Receipt, Twilio};

/// The dispatcher's schema.
pub const SCHEMA: &str = "dispatcher";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_PUBLIC_URL`: public base URL of the inbound receiver, for status callbacks.
    pub public_url: String,
    /// `SMS_TWILIO_API_URL`: the Messages API base URL.
    pub twilio_api_url: String,
    /// `SMS_TWILIO_ACCOUNT_SID`.
    pub twilio_account_sid: String,
    /// `SMS_TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: String,
    /// `SMS_SEND_ATTEMPTS`: carrier calls before a retryable failure becomes final.
    pub send_attempts: i32,
    /// `SMS_CARRIER_TIMEOUT_MS`: timeout of one carrier call.
    pub carrier_timeout: Duration,
    /// `SMS_UNKNOWN_OUTCOME_AFTER_MS`: how long a carrier call may stay without an outcome (the
    /// dispatcher died during it, or the carrier never answered) before its message is failed
    /// as `unknown_carrier_error`, unless the carrier's callbacks have moved it on. Longer than
    /// the carrier timeout; default 10 minutes.
    pub unknown_outcome_after: Duration,
}

impl Config {
    /// Reads the dispatcher's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let public_url = env.string_or("SMS_PUBLIC_URL", "http://127.0.0.1:8080");
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(ConfigError::new(
                "SMS_PUBLIC_URL",
                public_url,
                "expected an http(s) URL",
            ));
        }
        let carrier_timeout = env.millis_or("SMS_CARRIER_TIMEOUT_MS", Duration::from_secs(15))?;
        let unknown_outcome_after =
            env.millis_or("SMS_UNKNOWN_OUTCOME_AFTER_MS", Duration::from_secs(600))?;
        if unknown_outcome_after <= carrier_timeout {
            return Err(ConfigError::new(
                "SMS_UNKNOWN_OUTCOME_AFTER_MS",
                unknown_outcome_after.as_millis().to_string(),
                "must be longer than SMS_CARRIER_TIMEOUT_MS, or calls still in flight are failed",
            ));
        }
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            health_addr: sms_runtime::config::health_addr(env)?,
            public_url,
            twilio_api_url: env.string_or("SMS_TWILIO_API_URL", "https://api.twilio.com"),
            twilio_account_sid: env.raw("SMS_TWILIO_ACCOUNT_SID").ok_or_else(|| {
                ConfigError::new(
                    "SMS_TWILIO_ACCOUNT_SID",
                    "",
                    "the Twilio account SID is required",
                )
            })?,
            twilio_auth_token: env.raw("SMS_TWILIO_AUTH_TOKEN").ok_or_else(|| {
                ConfigError::new(
                    "SMS_TWILIO_AUTH_TOKEN",
                    "",
                    "the Twilio auth token is required",
                )
            })?,
            send_attempts: env.parse_or("SMS_SEND_ATTEMPTS", 4)?,
            carrier_timeout,
            unknown_outcome_after,
        })
    }
}

/// Runs the dispatcher with the Twilio adapter until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http = sms_runtime::http_client(config.carrier_timeout)?;
    let carrier = Twilio::new(
        http,
        &config.twilio_api_url,
        &config.twilio_account_sid,
        &config.twilio_auth_token,
    );
    run_with_carrier(config, Arc::new(carrier), shutdown).await
}

/// Runs the dispatcher with any carrier until `shutdown`.
pub async fn run_with_carrier(
    config: Config,
    carrier: Arc<dyn Carrier>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let base = sms_runtime::service::start(
        &config.common,
        SCHEMA,
        &MIGRATOR,
        config.health_addr,
        &shutdown,
    )
    .await?;
    let (pool, bus, outbox) = (base.pool, base.bus, base.outbox);
    // Local copies, replayed and then followed by this replica: no lookup per message.
    let catch_up = Duration::from_secs(30);
    let released = bus
        .state_set(
            StateKind::Number,
            shutdown.clone(),
            catch_up,
            |e: NumberChanged| {
                let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
                (org, e.number, !e.active)
            },
        )
        .await?;
    let opted_out = bus
        .state_set(
            StateKind::OptOut,
            shutdown.clone(),
            catch_up,
            sms_bus::opted_out_entry,
        )
        .await?;
    let dispatcher = Arc::new(Dispatcher {
        claims: claims(pool.clone(), outbox.clone()),
        sent: sent(pool.clone(), outbox.clone()),
        pool: pool.clone(),
        bus: bus.clone(),
        outbox,
        carrier,
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        send_attempts: config.send_attempts.max(1),
        released,
        opted_out,
    });
    let d = dispatcher.clone();
    let accepted = bus.consume(
        ConsumerKind::DispatcherAccepted,
        shutdown.clone(),
        move |e: MessageAccepted, delivery| {
            let d = d.clone();
            async move { d.send(e.meta, e.message, delivery, None).await }
        },
    );
    let d = dispatcher.clone();
    let due = bus.consume(
        ConsumerKind::DispatcherDue,
        shutdown.clone(),
        move |e: MessageDue, delivery| {
            let d = d.clone();
            async move {
                let late = e.late.then(|| {
                    let due = e.send_at.map_or(0, |t| t.seconds);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    format!("fired {} s late", now.saturating_sub(due))
                });
                d.send(e.meta, e.message, delivery, late).await
            }
        },
    );
    let sweep = sweep_unknown_outcomes(
        dispatcher.clone(),
        config.unknown_outcome_after,
        shutdown.clone(),
    );
    tracing::info!("dispatcher running");
    let (a, b, ()) = tokio::join!(accepted, due, sweep);
    base.relay.finish().await;
    a.context("accepted consumer")?;
    b.context("due consumer")?;
    tracing::info!("dispatcher stopped");
    Ok(())
}

struct Dispatcher {
    pool: PgPool,
    /// Claims, many per transaction: message → attempt number, or `None` when already taken.
    claims: Batcher<Claim, Result<Option<i32>, String>>,
    /// Messages the carrier took, recorded many per transaction with their `sending` status.
    sent: Batcher<Taken, Result<(), String>>,
    bus: sms_bus::Bus,
    outbox: Outbox,
    carrier: Arc<dyn Carrier>,
    public_url: String,
    send_attempts: i32,
    /// (organization, number) pairs released since the message was accepted or scheduled.
    released: sms_bus::StateSet,
    /// (organization, contact) pairs that opted out.
    opted_out: sms_bus::StateSet,
}

/// Claims and "sent" marks are group-committed: concurrent sends share statements.
const BATCH: usize = 256;
const BATCH_WORKERS: usize = 2;

/// A claim to make: the message, its organization, and the `queued` status that a first claim
/// reports.
struct Claim {
    id: Uuid,
    organization_id: String,
    queued: Encoded,
}

/// A message the carrier took: its `sending` status carries the carrier's sid.
struct Taken {
    id: Uuid,
    organization_id: String,
    carrier_sid: String,
    sending: Encoded,
}

/// Claims messages for carrier calls, many per transaction. A message is claimed when it is
/// new, or waiting to be retried; otherwise (sending, sent or failed) it is already taken:
/// `None`. A first claim's `queued` status goes into the outbox in the same transaction.
fn claims(pool: PgPool, outbox: Outbox) -> Batcher<Claim, Result<Option<i32>, String>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<Claim>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            match claim_batch(&pool, &outbox, &items).await {
                Ok(mut attempts) => {
                    outbox.wake();
                    // `remove`: a repeat of an id in this batch finds it taken.
                    items.iter().map(|c| Ok(attempts.remove(&c.id))).collect()
                }
                Err(e) => items.iter().map(|_| Err(e.to_string())).collect(),
            }
        }
    })
}

async fn claim_batch(
    pool: &PgPool,
    outbox: &Outbox,
    items: &[Claim],
) -> Result<std::collections::HashMap<Uuid, i32>, sqlx::Error> {
    // The same message twice in one batch (a redelivery racing the first delivery): the first
    // claims it, the others find it taken, as they would one after another.
    let mut first = std::collections::HashSet::new();
    let unique: Vec<&Claim> = items.iter().filter(|c| first.insert(c.id)).collect();
    let ids: Vec<Uuid> = unique.iter().map(|c| c.id).collect();
    let orgs: Vec<String> = unique.iter().map(|c| c.organization_id.clone()).collect();
    let mut tx = pool.begin().await?;
    let rows = sqlx::query!(
        "INSERT INTO dispatcher.sends (message_id, organization_id, state, attempts)
         SELECT id, org, 'sending', 1 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, org)
         ON CONFLICT (message_id) DO UPDATE
            SET state = 'sending', attempts = dispatcher.sends.attempts + 1,
                updated_at = now()
            WHERE dispatcher.sends.state = 'retry'
         RETURNING message_id, attempts",
        &ids,
        &orgs
    )
    .fetch_all(&mut *tx)
    .await?;
    let attempts: std::collections::HashMap<Uuid, i32> = rows
        .into_iter()
        .map(|r| (r.message_id, r.attempts))
        .collect();
    let queued: Vec<Encoded> = unique
        .iter()
        .filter(|c| attempts.get(&c.id) == Some(&1))
        .map(|c| c.queued.clone())
        .collect();
    outbox.add(&mut tx, &queued).await?;
    tx.commit().await?;
    Ok(attempts)
}

/// Records that the carrier took messages, with their `sending` status in the outbox, many
/// per transaction.
///
/// Written as an upsert on the claim rows rather than an `UPDATE … FROM UNNEST` join: the
/// conflict check always goes through the primary key, whereas the join's plan depends on the
/// table's statistics, and on a young table (never analyzed) the planner picks a full scan per
/// batch and keeps that plan as the table grows (measured: 37 million rows read in a
/// 17-second benchmark).
fn sent(pool: PgPool, outbox: Outbox) -> Batcher<Taken, Result<(), String>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<Taken>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            let result = sent_batch(&pool, &outbox, &items)
                .await
                .map_err(|e| e.to_string());
            if result.is_ok() {
                outbox.wake();
            }
            items.iter().map(|_| result.clone()).collect()
        }
    })
}

async fn sent_batch(pool: &PgPool, outbox: &Outbox, items: &[Taken]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = items.iter().map(|t| t.id).collect();
    let orgs: Vec<String> = items.iter().map(|t| t.organization_id.clone()).collect();
    let sids: Vec<String> = items.iter().map(|t| t.carrier_sid.clone()).collect();
    let events: Vec<Encoded> = items.iter().map(|t| t.sending.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO dispatcher.sends (message_id, organization_id, state, carrier_sid)
         SELECT id, org, 'sent', sid FROM UNNEST($1::uuid[], $2::text[], $3::text[])
              AS u(id, org, sid)
         ON CONFLICT (message_id) DO UPDATE
            SET state = 'sent', carrier_sid = EXCLUDED.carrier_sid, updated_at = now()",
        &ids,
        &orgs,
        &sids
    )
    .execute(&mut *tx)
    .await?;
    outbox.add(&mut tx, &events).await?;
    tx.commit().await
}

/// Fails the messages whose carrier call has had no outcome for `after`: the dispatcher that
/// made it died during the call, or the call timed out after the request went out. Sending
/// again could text the contact twice, so they are not retried; the failure applies only if
/// the message is still `queued`, so carrier callbacks that did arrive win.
async fn sweep_unknown_outcomes(d: Arc<Dispatcher>, after: Duration, shutdown: CancellationToken) {
    let period = (after / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match d.fail_unknown_outcomes(after).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "failed messages whose carrier call had no outcome"
            ),
            Err(e) => tracing::warn!(error = %e, "unknown-outcome sweep failed"),
        }
    }
}

/// A database hiccup: try the event again shortly.
fn db_retry(e: sqlx::Error) -> HandleError {
    HandleError::Retry {
        reason: format!("database: {e}"),
        delay: Duration::from_millis(500),
    }
}

/// Exponential back-off for carrier retries: 1 s, 2 s, 4 s, … at most 60 s.
fn backoff(attempt: i32) -> Duration {
    Duration::from_secs(1u64 << attempt.clamp(1, 7).saturating_sub(1)).min(Duration::from_secs(60))
}

impl Dispatcher {
    async fn send(
        &self,
        meta: Option<EventMeta>,
        message: Option<OutboundMessage>,
        delivery: Delivery,
        note: Option<String>,
    ) -> Result<(), HandleError> {
        let (Some(_meta), Some(m)) = (meta, message) else {
            return Err(HandleError::Permanent(
                "event without meta or message".into(),
            ));
        };
        let id = Uuid::parse_str(&m.message_id).map_err(|e| {
            HandleError::Permanent(format!("bad message id {:?}: {e}", m.message_id))
        })?;
        let detail = note.as_deref().unwrap_or("");
        let queued = self.encode(&status_event(&m, Status::Queued, None, None, detail));
        let Some(attempt) = self.claim(id, &m.organization_id, queued.clone()).await? else {
            tracing::debug!(%id, "already taken on; dropping the redelivery");
            return Ok(());
        };
        // The claim committed `queued` to the outbox, which will publish it. An early copy goes
        // out now, before the carrier call, so that it is on the bus ahead of the carrier's
        // callbacks (the composer holds back callbacks for a message not yet seen queued);
        // JetStream drops whichever copy comes second (same event id).
        let early = if attempt == 1 {
            self.bus.publish_encoded(queued).await.ok()
        } else {
            None
        };
        // What can change between accepting and sending is checked again here, and so is
        // what the composer checked: the event came over the bus.
        if let Some((reason, detail)) = invalid(&m) {
            tracing::error!(%id, %reason, %detail, "message breaks a rule; not sent");
            metrics::counter!(sms_runtime::metrics::SENDS_BLOCKED, "reason" => reason.as_str())
                .increment(1);
            return self.fail(id, &m, reason, None, &detail).await;
        }
        if let Some(reason) = self.refusal(&m) {
            metrics::counter!(sms_runtime::metrics::SENDS_BLOCKED, "reason" => reason.as_str())
                .increment(1);
            return self.fail(id, &m, reason, None, "").await;
        }
        let started = std::time::Instant::now();
        let outcome = self.carrier.send(&self.carrier_message(&m)).await;
        metrics::histogram!(sms_runtime::metrics::CARRIER_REQUEST_SECONDS)
            .record(started.elapsed());
        metrics::counter!(
            sms_runtime::metrics::CARRIER_REQUESTS,
            "outcome" => match &outcome {
                Ok(_) => "accepted",
                Err(CarrierError::Retryable { .. }) => "retryable_error",
                Err(CarrierError::Permanent { .. }) => "refused",
                Err(CarrierError::Ambiguous(_)) => "unknown",
            }
        )
        .increment(1);
        if let Some(ack) = early
            && let Err(e) = ack.await
        {
            tracing::debug!(%id, error = %e, "early queued copy not stored; the outbox publishes it");
        }
        match outcome {
            Ok(receipt) => {
                // The carrier's sid, as its answer gave it: the composer binds the message to
                // it, so that only callbacks carrying it apply.
                let sending = self.encode(&sending_event(&m, &receipt.carrier_sid));
                self.sent
                    .call(Taken {
                        id,
                        organization_id: m.organization_id.clone(),
                        carrier_sid: receipt.carrier_sid,
                        sending,
                    })
                    .await
                    .unwrap_or_else(|| Err("dispatcher stopping".into()))
                    .map_err(|e| retry(format!("database: {e}")))
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                retry_after,
            }) if attempt < self.send_attempts && !delivery.last => {
                tracing::warn!(%id, attempt, %reason, ?code, %detail, "carrier call failed; will retry");
                self.set_state(id, "retry", &detail).await?;
                Err(HandleError::Retry {
                    reason: detail,
                    delay: retry_after.unwrap_or_else(|| backoff(attempt)),
                })
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                ..
            })
            | Err(CarrierError::Permanent {
                reason,
                code,
                detail,
            }) => {
                tracing::info!(%id, %reason, ?code, %detail, "message failed at the carrier");
                self.fail(id, &m, reason, code, &detail).await
            }
            Err(CarrierError::Ambiguous(detail)) => {
                // Left in `sending`: the carrier's callbacks, if it got the message, move it on.
                tracing::error!(%id, %detail, "carrier call outcome unknown; not retrying to avoid a double send");
                Ok(())
            }
        }
    }

    /// Fails a claimed message: the claim's state and the `failed` status, in one transaction.
    async fn fail(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        reason: Reason,
        code: Option<u32>,
        detail: &str,
    ) -> Result<(), HandleError> {
        let event = status_event(m, Status::Failed, Some(reason), code, detail);
        let mut tx = self.pool.begin().await.map_err(db_retry)?;
        sqlx::query!(
            "UPDATE dispatcher.sends SET state = 'failed', last_error = $2, updated_at = now()
             WHERE message_id = $1",
            id,
            if detail.is_empty() {
                reason.as_str()
            } else {
                detail
            }
        )
        .execute(&mut *tx)
        .await
        .map_err(db_retry)?;
        self.outbox
            .add_event(&mut tx, &event)
            .await
            .map_err(db_retry)?;
        tx.commit().await.map_err(db_retry)?;
        self.outbox.wake();
        Ok(())
    }

    fn encode(&self, event: &StatusChanged) -> Encoded {
        self.outbox.encode(event)
    }

    /// One sweep of [`sweep_unknown_outcomes`]; returns how many messages it failed.
    async fn fail_unknown_outcomes(&self, after: Duration) -> anyhow::Result<usize> {
        let secs = after.as_secs_f64();
        let mut tx = self.pool.begin().await?;
        let stuck = sqlx::query!(
            "UPDATE dispatcher.sends SET state = 'failed', updated_at = now(),
                    last_error = 'carrier call outcome unknown'
             WHERE message_id IN (
                 SELECT message_id FROM dispatcher.sends
                 WHERE state = 'sending' AND updated_at < now() - make_interval(secs => $1)
                 ORDER BY updated_at LIMIT 500 FOR UPDATE SKIP LOCKED)
             RETURNING message_id, organization_id",
            secs
        )
        .fetch_all(&mut *tx)
        .await?;
        let detail = format!(
            "no outcome from the carrier call within {} s (the dispatcher stopped during it, or \
             the carrier never answered); not retried, to avoid texting twice",
            after.as_secs()
        );
        let events: Vec<Encoded> = stuck
            .iter()
            .map(|row| {
                let id = row.message_id.to_string();
                self.encode(&StatusChanged {
                    meta: Some(sms_bus::meta(
                        sms_bus::stable_event_id(&[&id, "failed", "unknown-outcome"]),
                        &row.organization_id,
                        &id,
                    )),
                    status: sms_bus::status_to_proto(Status::Failed) as i32,
                    reason: Reason::UnknownCarrierError.as_str().to_owned(),
                    detail: detail.clone(),
                    only_from: sms_bus::status_to_proto(Status::Queued) as i32,
                    source: StatusSource::Dispatcher as i32,
                    ..Default::default()
                })
            })
            .collect();
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(stuck.len())
    }

    /// Why the message must not go out any more, if it must not.
    fn refusal(&self, m: &OutboundMessage) -> Option<Reason> {
        if !m.allow_opted_out && self.opted_out.contains(&m.organization_id, &m.to) {
            return Some(Reason::OptedOut);
        }
        self.released
            .contains(&m.organization_id, &m.from)
            .then_some(Reason::SenderUnavailable)
    }

    /// Claims the message for a carrier call (reporting `queued` on the first claim); `None`
    /// when another delivery already has it.
    async fn claim(
        &self,
        id: Uuid,
        organization_id: &str,
        queued: Encoded,
    ) -> Result<Option<i32>, HandleError> {
        self.claims
            .call(Claim {
                id,
                organization_id: organization_id.to_owned(),
                queued,
            })
            .await
            .unwrap_or_else(|| Err("dispatcher stopping".into()))
            .map_err(|e| retry(format!("database: {e}")))
    }

    async fn set_state(&self, id: Uuid, state: &str, error: &str) -> Result<(), HandleError> {
        sqlx::query!(
            "UPDATE dispatcher.sends SET state = $2, last_error = $3, updated_at = now()
             WHERE message_id = $1",
            id,
            state,
            error
        )
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db_retry)
    }

    fn carrier_message(&self, m: &OutboundMessage) -> CarrierMessage {
        let traceparent = sms_bus::trace::current_traceparent();
        let mut params = vec![
            ("org", m.organization_id.as_str()),
            ("mid", m.message_id.as_str()),
        ];
        if let Some(tp) = &traceparent {
            // The callback URL is signed by the carrier, so the trace context in it is trusted
            // and the status events of this message continue its trace.
            params.push(("tp", tp.as_str()));
        }
        let callback = reqwest::Url::parse_with_params(
            &format!("{}/webhooks/twilio/status", self.public_url),
            &params,
        )
        .map(String::from)
        .unwrap_or_default();
        CarrierMessage {
            from: m.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            status_callback: callback,
            media_urls: m.media_urls.clone(),
            traceparent,
        }
    }
}

/// A status the dispatcher reports about `m`.
fn status_event(
    m: &OutboundMessage,
    status: Status,
    reason: Option<Reason>,
    code: Option<u32>,
    detail: &str,
) -> StatusChanged {
    StatusChanged {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&m.message_id, status.as_str(), "dispatcher"]),
            &m.organization_id,
            &m.message_id,
        )),
        status: sms_bus::status_to_proto(status) as i32,
        reason: reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        carrier_sid: String::new(),
        carrier_error_code: code.unwrap_or(0),
        detail: detail.to_owned(),
        contact_number: if status == Status::Failed {
            m.to.clone()
        } else {
            String::new()
        },
        source: StatusSource::Dispatcher as i32,
        ..Default::default()
    }
}

/// `sending`, with the sid the carrier answered with.
fn sending_event(m: &OutboundMessage, carrier_sid: &str) -> StatusChanged {
    StatusChanged {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&m.message_id, "sending", "dispatcher"]),
            &m.organization_id,
            &m.message_id,
        )),
        status: sms_bus::status_to_proto(Status::Sending) as i32,
        carrier_sid: carrier_sid.to_owned(),
        source: StatusSource::Dispatcher as i32,
        ..Default::default()
    }
}

/// Why a message as it came over the bus must not be sent, if it must not: the composer's
/// rules (valid numbers in the same calling code, a recipient that takes SMS, a body of the
/// right length and characters), checked again with the same functions.
fn invalid(m: &OutboundMessage) -> Option<(Reason, String)> {
    let from = match PhoneNumber::parse_valid(&m.from, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidSender, e.to_string())),
    };
    let to = match PhoneNumber::parse_valid(&m.to, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidRecipient, e.to_string())),
    };
    if !to.sms_supported() {
        return Some((
            Reason::InvalidRecipient,
            format!("{} does not take SMS here", to.e164()),
        ));
    }
    if !sms_core::phone::same_calling_code(&from, &to) {
        return Some((
            Reason::InvalidRecipient,
            format!(
                "{} and {} are in different countries",
                from.e164(),
                to.e164()
            ),
        ));
    }
    if let Err(e) = sms_core::text::check("body", &m.body, usize::MAX, sms_core::text::Lines::Multi)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    if m.media_urls.len() > sms_core::mms::MAX_ATTACHMENTS {
        return Some((
            Reason::InvalidMessage,
            format!("{} attachments", m.media_urls.len()),
        ));
    }
    if (m.media_urls.is_empty() || !m.body.trim().is_empty())
        && let Err(e) = sms_core::validate_body(&m.body)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    None
}

fn retry(reason: String) -> HandleError {
    HandleError::Retry {
        reason,
        delay: Duration::from_millis(500),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_again() {
        let good = OutboundMessage {
            from: "+12015550100".into(),
            to: "+12015550123".into(),
            body: "hi".into(),
            ..Default::default()
        };
        assert_eq!(invalid(&good), None);
        let cases = [
            (
                OutboundMessage {
                    to: "+447400123456".into(),
                    ..good.clone()
                },
                Reason::InvalidRecipient,
            ),
            (
                OutboundMessage {
                    from: "garbage".into(),
                    ..good.clone()
                },
                Reason::InvalidSender,
            ),
            (
                OutboundMessage {
                    body: "a\0b".into(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: "x".repeat(1001),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: String::new(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
        ];
        for (m, reason) in cases {
            assert_eq!(invalid(&m).map(|(r, _)| r), Some(reason), "{m:?}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }
}
