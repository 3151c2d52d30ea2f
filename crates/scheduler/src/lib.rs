//! The scheduler: keeps scheduled sends in its own schema and hands each one to the dispatcher
//! (`{ns}.msg.due`) exactly once, when it falls due.
//!
//! Firing claims due rows with `FOR UPDATE SKIP LOCKED` (so replicas never take the same row),
//! marks them `firing` with a lease, commits, publishes, then marks them `fired`. A replica that
//! dies between publish and mark leaves a lease that expires: the row fires again with the same
//! event id, which JetStream de-duplicates and the dispatcher's claim stops in any case. No
//! transaction is held open across the publish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_bus::{Bus, ConsumerKind, HandleError};
use sms_core::Status;
use sms_proto::v1::events::{
    MessageCancel, MessageDue, MessageScheduled, OutboundMessage, StatusChanged,
};
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The scheduler's schema.
pub const SCHEMA: &str = "scheduler";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz` and `/readyz` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_FIRE_BATCH`: rows claimed per firing round.
    pub batch: i64,
    /// `SMS_FIRE_LEASE_MS`: how long a claim holds before another replica may fire the row.
    pub lease: Duration,
    /// `SMS_LATE_AFTER_MS`: firing later than this past its time marks a message late.
    pub late_after: Duration,
}

impl Config {
    /// Reads the scheduler's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            health_addr: sms_runtime::config::health_addr(env)?,
            batch: env.parse_or("SMS_FIRE_BATCH", 1000)?,
            lease: env.millis_or("SMS_FIRE_LEASE_MS", Duration::from_secs(30))?,
            late_after: env.millis_or("SMS_LATE_AFTER_MS", Duration::from_secs(5))?,
        })
    }
}

struct Scheduler {
    pool: PgPool,
    bus: Bus,
    config: Config,
    /// Woken when a new schedule may be earlier than what the firing loop sleeps for.
    wake: Notify,
}

/// Runs the scheduler until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let base = sms_runtime::service::start(
        &config.common,
        SCHEMA,
        &MIGRATOR,
        config.health_addr,
        &shutdown,
    )
    .await?;
    let (pool, bus) = (base.pool, base.bus);
    let s = Arc::new(Scheduler {
        pool,
        bus: bus.clone(),
        config,
        wake: Notify::new(),
    });
    let sc = s.clone();
    let scheduled = bus.consume(
        ConsumerKind::SchedulerScheduled,
        shutdown.clone(),
        move |e: MessageScheduled, _| {
            let s = sc.clone();
            async move { s.schedule(e).await }
        },
    );
    let sc = s.clone();
    let cancels = bus.consume(
        ConsumerKind::SchedulerCancel,
        shutdown.clone(),
        move |e: MessageCancel, _| {
            let s = sc.clone();
            async move { s.cancel(e).await }
        },
    );
    let firing = s.clone().fire_loop(shutdown.clone());
    tracing::info!("scheduler running");
    let (a, b, ()) = tokio::join!(scheduled, cancels, firing);
    a.context("scheduled consumer")?;
    b.context("cancel consumer")?;
    Ok(())
}

fn db_retry(e: sqlx::Error) -> HandleError {
    HandleError::Retry {
        reason: format!("database: {e}"),
        delay: Duration::from_millis(500),
    }
}

impl Scheduler {
    async fn schedule(&self, e: MessageScheduled) -> Result<(), HandleError> {
        let (Some(m), Some(at)) = (e.message, e.send_at) else {
            return Err(HandleError::Permanent(
                "scheduled event without message or time".into(),
            ));
        };
        let id = Uuid::parse_str(&m.message_id)
            .map_err(|err| HandleError::Permanent(format!("bad message id: {err}")))?;
        let send_at = DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
            .ok_or_else(|| HandleError::Permanent("send_at out of range".into()))?;
        sqlx::query!(
            "INSERT INTO scheduler.scheduled (message_id, organization_id, send_at, message)
             VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING",
            id,
            m.organization_id,
            send_at,
            m.encode_to_vec()
        )
        .execute(&self.pool)
        .await
        .map_err(db_retry)?;
        self.wake.notify_one();
        Ok(())
    }

    async fn cancel(&self, e: MessageCancel) -> Result<(), HandleError> {
        let Some(meta) = e.meta else {
            return Err(HandleError::Permanent("cancel event without meta".into()));
        };
        let id = Uuid::parse_str(&meta.message_id)
            .map_err(|err| HandleError::Permanent(format!("bad message id: {err}")))?;
        let canceled = sqlx::query!(
            "UPDATE scheduler.scheduled SET state = 'canceled'
             WHERE message_id = $1 AND organization_id = $2 AND state = 'pending'",
            id,
            meta.organization_id
        )
        .execute(&self.pool)
        .await
        .map_err(db_retry)?
        .rows_affected();
        if canceled == 1 {
            let event = StatusChanged {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&meta.message_id, "canceled"]),
                    &meta.organization_id,
                    &meta.message_id,
                )),
                status: sms_bus::status_to_proto(Status::Canceled) as i32,
                ..Default::default()
            };
            self.bus
                .publish_durably(&event)
                .await
                .map_err(|err| HandleError::Retry {
                    reason: err.to_string(),
                    delay: Duration::from_millis(500),
                })?;
        }
        Ok(())
    }

    async fn fire_loop(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let fired = match self.fire_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "firing round failed");
                    0
                }
            };
            if fired as i64 >= self.config.batch {
                continue;
            }
            let sleep = self.until_next().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// How long until the next row falls due (at most the lease, so expired claims are retried).
    async fn until_next(&self) -> Duration {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar!(
            "SELECT min(send_at) FROM scheduler.scheduled WHERE state = 'pending'"
        )
        .fetch_one(&self.pool)
        .await
        .ok()
        .flatten();
        let cap = self.config.lease;
        match next {
            None => cap,
            Some(at) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(cap),
        }
    }

    /// Claims, publishes and marks one batch of due rows; returns how many fired.
    async fn fire_due(&self) -> anyhow::Result<usize> {
        let lease_secs = self.config.lease.as_secs_f64();
        let claimed = sqlx::query!(
            "UPDATE scheduler.scheduled SET state = 'firing', claimed_at = now()
             WHERE message_id IN (
                 SELECT message_id FROM scheduler.scheduled
                 WHERE (state = 'pending' AND send_at <= now())
                    OR (state = 'firing' AND claimed_at < now() - make_interval(secs => $2))
                 ORDER BY send_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING message_id, organization_id, send_at, message",
            self.config.batch,
            lease_secs
        )
        .fetch_all(&self.pool)
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let late_after = chrono::Duration::from_std(self.config.late_after).unwrap_or_default();
        let mut acks = Vec::with_capacity(claimed.len());
        let mut ids = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let Ok(message) = OutboundMessage::decode(row.message.as_slice()) else {
                tracing::error!(message_id = %row.message_id, "stored message does not decode; skipped");
                continue;
            };
            let id = row.message_id.to_string();
            let event = MessageDue {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&id, "due"]),
                    &row.organization_id,
                    &id,
                )),
                message: Some(message),
                late: now - row.send_at > late_after,
            };
            acks.push(self.bus.publish(&event).await?);
            ids.push(row.message_id);
        }
        for ack in acks {
            ack.await?;
        }
        sqlx::query!(
            "UPDATE scheduler.scheduled SET state = 'fired', fired_at = now()
             WHERE message_id = ANY($1) AND state = 'firing'",
            &ids
        )
        .execute(&self.pool)
        .await?;
        Ok(ids.len())
    }
}
