//! The transactional outbox: how every service tells the others about a change.
//!
//! A change another service must hear about is written together with its event, in one
//! transaction: [`Outbox::add`] inserts the encoded event into the `outbox` table of the
//! service's own schema. After the commit [`Outbox::wake`] lets the relay ([`Outbox::run`])
//! publish it at once; the relay also polls, so an event whose process died between the commit
//! and the publish is published by any replica a moment later. Rows are taken with
//! `FOR UPDATE SKIP LOCKED` (replicas share the work), published with the event id as
//! `Nats-Msg-Id` (JetStream drops a repeat inside its duplicate window), and deleted in the
//! same transaction once JetStream acknowledged them; a publish that failed leaves its row for
//! the next round, after a back-off with full jitter. So an event is published at least once
//! for every committed change, and never for a change that was rolled back; consumers are
//! idempotent for the rare repeat outside the window.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use sms_bus::{Bus, Encoded, Event};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// The outbox table's migrations, run in every service's schema by [`crate::db::connect`]
/// with their own history table (`_outbox_migrations`), apart from the service's.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("migrations/outbox");
    migrator.dangerous_set_table_name("_outbox_migrations");
    migrator
}

/// How the relay works.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Events published per round (one transaction).
    pub batch: i64,
    /// How often the relay looks for events nobody woke it for (another process's, or ones
    /// whose publish failed).
    pub poll: Duration,
    /// Back-off after a round in which a publish failed.
    pub backoff: Backoff,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            batch: 512,
            poll: Duration::from_millis(500),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// What one relay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Events JetStream acknowledged (and their rows deleted).
    pub published: usize,
    /// Events whose publish failed (their rows stay).
    pub failed: usize,
}

/// One service's outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pool: PgPool,
    bus: Bus,
    wake: Notify,
    config: OutboxConfig,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox in `pool`'s schema, relayed to `bus`; `name` (the service) labels its metrics
    /// and logs.
    pub fn new(name: &str, pool: PgPool, bus: Bus, config: OutboxConfig) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                pool,
                bus,
                wake: Notify::new(),
                config,
            }),
        }
    }

    /// `event`, encoded for this bus's namespace in the current span (whose trace it carries).
    pub fn encode<E: Event>(&self, event: &E) -> Encoded {
        Encoded::new(self.inner.bus.subjects(), event)
    }

    /// Adds `events` to the outbox in `conn`'s transaction: they are published if and only if
    /// it commits. Call [`Outbox::wake`] after the commit.
    pub async fn add(
        &self,
        conn: &mut PgConnection,
        events: &[Encoded],
    ) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&Encoded) -> &str| -> Vec<&str> { events.iter().map(f).collect() };
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
        let traces: Vec<Option<&str>> = events.iter().map(|e| e.traceparent.as_deref()).collect();
        sqlx::query(
            "INSERT INTO outbox (event_id, subject, event_type, payload, traceparent)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])",
        )
        .bind(column(|e| &e.event_id))
        .bind(column(|e| &e.subject))
        .bind(column(|e| &e.event_type))
        .bind(payloads)
        .bind(traces)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Adds one event (see [`Outbox::add`]).
    pub async fn add_event<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: &E,
    ) -> Result<(), sqlx::Error> {
        self.add(conn, &[self.encode(event)]).await
    }

    /// Tells the relay there is something to publish (after a commit).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Events not yet published.
    pub async fn pending(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.inner.pool)
            .await
    }

    /// One round: takes up to a batch of unpublished events (skipping those another relay
    /// holds), publishes them, and deletes those JetStream acknowledged, in one transaction.
    pub async fn relay_once(&self) -> Result<Round, sqlx::Error> {
        let inner = &self.inner;
        let mut tx = inner.pool.begin().await?;
        // A relay round needs no flush of its own: if its commit (the deletes) is lost in a
        // crash, the rows are published again and JetStream drops the repeats. Not waiting for
        // the WAL keeps the relay out of the writers' fsync queue.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        type Row = (i64, String, String, String, Vec<u8>, Option<String>, f64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, event_id, subject, event_type, payload, traceparent,
                    extract(epoch FROM clock_timestamp() - created_at)::float8
             FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(inner.config.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Round::default());
        }
        // Everything in flight at once (JetStream keeps one connection's order); then every
        // acknowledgement awaited together, since each waits up to the publish timeout.
        let mut in_flight = Vec::with_capacity(rows.len());
        for (id, event_id, subject, event_type, payload, traceparent, age) in rows {
            let encoded = Encoded {
                event_id,
                subject,
                event_type,
                payload,
                traceparent,
            };
            in_flight.push((id, age, inner.bus.publish_encoded(encoded).await));
        }
        let acks = join_all(in_flight.into_iter().map(|(id, age, sent)| async move {
            let acked = match sent {
                Ok(ack) => ack
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("acknowledgement: {e}")),
                Err(e) => Err(e.to_string()),
            };
            (id, age, acked)
        }))
        .await;
        let mut published = Vec::new();
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for (id, age, acked) in acks {
            match acked {
                Ok(()) => {
                    metrics::histogram!(crate::metrics::OUTBOX_LAG_SECONDS, "outbox" => inner.name.clone())
                        .record(age);
                    published.push(id);
                }
                Err(e) => {
                    last_error = e;
                    failed.push(id);
                }
            }
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind(&failed)
            .bind(&last_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!(crate::metrics::OUTBOX_EVENTS, "outbox" => inner.name.clone(), "outcome" => "published")
            .increment(published.len() as u64);
        if !failed.is_empty() {
            metrics::counter!(crate::metrics::OUTBOX_EVENTS, "outbox" => inner.name.clone(), "outcome" => "failed")
                .increment(failed.len() as u64);
            tracing::warn!(
                outbox = %inner.name,
                failed = failed.len(),
                published = published.len(),
                error = %last_error,
                "outbox: publishes failed; retrying after a back-off"
            );
        }
        Ok(Round {
            published: published.len(),
            failed: failed.len(),
        })
    }

    /// Relays until `shutdown`, then publishes what is left (for a few seconds at most).
    pub async fn run(self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let mut failures = 0u32;
        loop {
            let wait = match self.relay_once().await {
                Ok(round) if round.failed == 0 => {
                    failures = 0;
                    if i64::try_from(round.published).unwrap_or(0) >= inner.config.batch {
                        continue;
                    }
                    None
                }
                Ok(_) => {
                    failures += 1;
                    Some(inner.config.backoff.delay(failures))
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(outbox = %inner.name, error = %e, "outbox: database error");
                    Some(inner.config.backoff.delay(failures))
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = inner.wake.notified(), if wait.is_none() => {}
                () = tokio::time::sleep(wait.unwrap_or(inner.config.poll)) => {}
            }
        }
        let drain = async {
            while let Ok(round) = self.relay_once().await {
                if round.published == 0 || round.failed > 0 {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!(outbox = %inner.name, "outbox: events left for the next start");
        }
    }
}
