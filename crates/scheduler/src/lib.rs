//! The scheduler: keeps scheduled sends in its own schema and hands each one to the dispatcher
//! (`{ns}.msg.due`) exactly once, when it falls due.
//!
//! Firing takes due rows with `FOR UPDATE SKIP LOCKED` (so replicas never take the same row)
//! and marks them `fired` in the transaction that adds their `msg.due` events to the outbox: a
//! row is fired exactly when its event is committed, and the relay publishes it. A round needs
//! only the database, so a bus outage delays the events but not the firing, and a replica that
//! dies mid-round leaves its rows pending for the next. A cancel commits the row's state and
//! its `canceled` status the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_bus::{Bus, ConsumerKind, HandleError};
use sms_core::Status;
use sms_proto::events::v1::{
    MessageDue, MessageScheduled, OutboundMessage, ScheduleCommand, ScheduleCommandReply,
    ScheduleState, StatusChanged, schedule_command,
};
use sms_runtime::outbox::Outbox;
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

/// The scheduler's schema.
pub const SCHEMA: &str = "scheduler";

/// How long after the composer accepted a message a command may come before its schedule:
/// the schedule's event leaves the composer's outbox within moments, and a scheduler that was
/// down catches up within this.
pub const ARRIVAL_PATIENCE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_FIRE_BATCH`: rows claimed per firing round.
    pub batch: i64,
    /// `SMS_FIRE_POLL_MS`: the longest the firing loop sleeps (it is woken for schedules this
    /// replica stores; this bounds how late it sees another replica's).
    pub poll: Duration,
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
            poll: env.millis_or("SMS_FIRE_POLL_MS", Duration::from_secs(1))?,
            late_after: env.millis_or("SMS_LATE_AFTER_MS", Duration::from_secs(5))?,
        })
    }
}

struct Scheduler {
    pool: PgPool,
    bus: Bus,
    outbox: Outbox,
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
        outbox: base.outbox,
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
    let commands = s.clone().serve_commands(shutdown.clone()).await?;
    let firing = s.clone().fire_loop(shutdown.clone());
    tracing::info!("scheduler running");
    let (a, (), ()) = tokio::join!(scheduled, firing, commands);
    base.relay.finish().await;
    a.context("scheduled consumer")?;
    Ok(())
}

fn db_retry(e: sqlx::Error) -> HandleError {
    sms_runtime::db::consumer_error(e, 3)
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
        // A cancel or reschedule may have overtaken this event and left a row without the
        // message: the event fills it in, keeping the row's state and time.
        sqlx::query!(
            "INSERT INTO scheduler.scheduled (message_id, organization_id, send_at, message)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id) DO UPDATE SET message = EXCLUDED.message
             WHERE octet_length(scheduler.scheduled.message) = 0",
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

    /// Answers cancel and reschedule requests (one replica answers each).
    async fn serve_commands(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<impl std::future::Future<Output = ()>> {
        let client = self.bus.client().clone();
        let mut requests = client
            .queue_subscribe(
                self.bus.subjects().scheduler_command(),
                "scheduler".to_owned(),
            )
            .await
            .context("scheduler command subscription")?;
        Ok(async move {
            loop {
                let request = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = futures::StreamExt::next(&mut requests) => r,
                };
                let Some(request) = request else { return };
                let Some(reply_to) = request.reply.clone() else {
                    continue;
                };
                // The caller's trace continues here (its context is in the headers).
                let span = tracing::info_span!(
                    "process",
                    otel.name = %format_args!("process {}", request.subject),
                    otel.kind = "server",
                    "messaging.system" = "nats",
                    "messaging.operation.type" = "process",
                    "messaging.destination.name" = %request.subject,
                );
                sms_bus::trace::set_parent_from(&span, request.headers.as_ref());
                let reply = match ScheduleCommand::decode(request.payload.clone()) {
                    Ok(command) => self
                        .command(command)
                        .instrument(span.clone())
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(parent: &span, error = %e, "schedule command failed");
                            ScheduleCommandReply {
                                error: "the scheduler could not carry out the command".into(),
                                ..Default::default()
                            }
                        }),
                    Err(e) => ScheduleCommandReply {
                        error: format!("undecodable command: {e}"),
                        ..Default::default()
                    },
                };
                if let Err(e) = client.publish(reply_to, reply.encode_to_vec().into()).await {
                    tracing::warn!(error = %e, "could not answer a schedule command");
                }
            }
        })
    }

    /// Cancels or moves a schedule if it has not started firing. The row decides atomically.
    /// A command that arrives before the schedule itself (its event still on its way) leaves a
    /// row the schedule fills in, but only while the schedule may still come
    /// ([`ARRIVAL_PATIENCE`] after the composer accepted it): for an id this scheduler never
    /// had, nothing is done and the state is `unknown`.
    async fn command(&self, c: ScheduleCommand) -> anyhow::Result<ScheduleCommandReply> {
        let meta = c.meta.context("command without meta")?;
        let id = Uuid::parse_str(&meta.message_id).context("bad message id")?;
        let org = meta.organization_id.as_str();
        let (cancel, send_at) = match c.action {
            Some(schedule_command::Action::Cancel(_)) => (true, None),
            Some(schedule_command::Action::RescheduleTo(at)) => (
                false,
                Some(
                    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
                        .context("reschedule time out of range")?,
                ),
            ),
            None => anyhow::bail!("command without an action"),
        };
        let may_be_coming = c
            .accepted_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .is_some_and(|accepted| Utc::now() - accepted < ARRIVAL_PATIENCE);
        let mut tx = self.pool.begin().await?;
        // Twice at most: a schedule that arrives between the look and the placeholder is
        // looked at again.
        let mut outcome = None;
        for _ in 0..2 {
            let current = sqlx::query_scalar!(
                "SELECT state FROM scheduler.scheduled
                 WHERE message_id = $1 AND organization_id = $2 FOR UPDATE",
                id,
                org
            )
            .fetch_optional(&mut *tx)
            .await?;
            // The table's words, read into the state once.
            match current.as_deref().map(sms_bus::schedule_state_from_name) {
                Some(ScheduleState::Pending) => {
                    let state = sqlx::query_scalar!(
                        "UPDATE scheduler.scheduled
                         SET state = CASE WHEN $2 THEN 'canceled' ELSE state END,
                             send_at = COALESCE($3, send_at),
                             rescheduled = rescheduled OR $3 IS NOT NULL
                         WHERE message_id = $1 RETURNING state",
                        id,
                        cancel,
                        send_at
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    outcome = Some((true, sms_bus::schedule_state_from_name(&state)));
                }
                Some(other) => outcome = Some((false, other)),
                None if may_be_coming => {
                    let placed = sqlx::query_scalar!(
                        "INSERT INTO scheduler.scheduled
                             (message_id, organization_id, send_at, message, state, rescheduled)
                         VALUES ($1, $2, COALESCE($4, now()), '',
                                 CASE WHEN $3 THEN 'canceled' ELSE 'pending' END, $4 IS NOT NULL)
                         ON CONFLICT (message_id) DO NOTHING
                         RETURNING state",
                        id,
                        org,
                        cancel,
                        send_at
                    )
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(state) = placed {
                        outcome = Some((true, sms_bus::schedule_state_from_name(&state)));
                    }
                }
                None => {
                    tracing::info!(message_id = %id, "schedule command for a schedule this scheduler never had; nothing done");
                    outcome = Some((false, ScheduleState::Unknown));
                }
            }
            if outcome.is_some() {
                break;
            }
        }
        let (done, state) = outcome.unwrap_or((false, ScheduleState::Unknown));
        if done && state == ScheduleState::Canceled {
            let event = StatusChanged {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&meta.message_id, "canceled"]),
                    org,
                    &meta.message_id,
                )),
                status: sms_bus::status_to_proto(Status::Canceled) as i32,
                source: sms_proto::events::v1::StatusSource::Scheduler as i32,
                ..Default::default()
            };
            self.outbox.add_event(&mut tx, &event).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        self.wake.notify_one();
        Ok(ScheduleCommandReply {
            done,
            state: sms_bus::schedule_state_name(state).to_owned(),
            schedule_state: state as i32,
            error: String::new(),
        })
    }

    async fn fire_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // A failed round (the database) is retried soon, with jittered back-off.
        let backoff =
            sms_runtime::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failures = 0;
        while !shutdown.is_cancelled() {
            let sleep = match self.fire_due().await {
                Ok(n) if n as i64 >= self.config.batch => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.until_next().await
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "firing round failed; retrying");
                    backoff.delay(failures)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// How long until the next row falls due (at most the poll interval, so that schedules
    /// another replica stored are seen).
    async fn until_next(&self) -> Duration {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar!(
            "SELECT min(send_at) FROM scheduler.scheduled
             WHERE state = 'pending' AND octet_length(message) > 0"
        )
        .fetch_one(&self.pool)
        .await
        .ok()
        .flatten();
        let cap = self.config.poll;
        match next {
            None => cap,
            Some(at) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(cap),
        }
    }

    /// Fires one batch of due rows: each marked `fired` with its `msg.due` event in the
    /// outbox, in one transaction; returns how many fired.
    async fn fire_due(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query!(
            "UPDATE scheduler.scheduled SET state = 'fired', fired_at = now()
             WHERE message_id IN (
                 SELECT message_id FROM scheduler.scheduled
                 WHERE state = 'pending' AND send_at <= now() AND octet_length(message) > 0
                 ORDER BY send_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING message_id, organization_id, send_at, message, rescheduled",
            self.config.batch
        )
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let late_after = chrono::Duration::from_std(self.config.late_after).unwrap_or_default();
        let mut events = Vec::with_capacity(claimed.len());
        let mut lags = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let Ok(mut message) = OutboundMessage::decode(row.message.as_slice()) else {
                tracing::error!(message_id = %row.message_id, "stored message does not decode; skipped");
                continue;
            };
            // Moved by the caller: its validity runs from its new time.
            if row.rescheduled {
                message.valid_until = None;
            }
            let id = row.message_id.to_string();
            let lag = now - row.send_at;
            events.push(self.outbox.encode(&MessageDue {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&id, "due"]),
                    &row.organization_id,
                    &id,
                )),
                message: Some(message),
                late: lag > late_after,
                send_at: Some(prost_types::Timestamp {
                    seconds: row.send_at.timestamp(),
                    nanos: i32::try_from(row.send_at.timestamp_subsec_nanos()).unwrap_or(0),
                }),
            }));
            lags.push(lag);
        }
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        self.outbox.wake();
        for lag in lags {
            let late = if lag > late_after { "true" } else { "false" };
            metrics::counter!(sms_runtime::metrics::SCHEDULED_FIRED, "late" => late).increment(1);
            metrics::histogram!(sms_runtime::metrics::SCHEDULE_LAG_SECONDS)
                .record(lag.to_std().unwrap_or_default());
        }
        Ok(claimed.len())
    }
}
