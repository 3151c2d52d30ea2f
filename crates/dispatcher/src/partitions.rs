//! Dispatch partitions: which replica sends for which senders.
//!
//! Messages to send are published on `msg.{accepted,due}.<partition>`, the partition a stable
//! hash of their organization and sender ([`sms_bus::dispatch_partition`]). Each partition is
//! leased to one replica at a time through the `partitions` table, and only that replica pulls
//! its durable consumers, so it alone sends for those senders and can hold each to its rate in
//! memory ([`crate::limiter`]), with no database trip per message.
//!
//! Every round (a third of the lease) a replica says it is alive, counts the live replicas,
//! renews its leases, takes free or expired partitions up to its fair share, and gives back
//! what is above it: it first stops pulling them and lets what it holds go back to the bus,
//! then frees the lease, so two replicas never send for one sender at once. A replica that
//! dies leaves its leases to expire; what it held comes back after the bus's ack wait. A
//! replica whose renewals fail (the database unreachable) stops sending for its partitions
//! when its own view of the lease runs out, before anyone else may take them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// One held partition, as this replica sees it.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// When this replica took it: a sender's bucket starts empty in the first moments, since
    /// the previous holder may just have spent its burst.
    pub since: Instant,
    /// Until when this replica may send for it (its lease, less a margin, by its own clock).
    pub until: Instant,
    /// Cancelled when the partition is given back or lost.
    pub stop: CancellationToken,
}

/// The partitions this replica holds, and those it is giving back (stopped, their leases
/// still renewed until their consumers have finished). Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holdings(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    held: BTreeMap<u16, Held>,
    releasing: BTreeSet<u16>,
}

impl Holdings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition, if this replica may send for it now.
    pub fn holding(&self, partition: u16) -> Option<Held> {
        self.lock()
            .held
            .get(&partition)
            .filter(|h| h.until > Instant::now())
            .cloned()
    }

    /// How many partitions it holds.
    pub fn count(&self) -> usize {
        self.lock().held.len()
    }
}

/// What the lease loop tells the dispatcher.
pub(crate) enum Change {
    /// Start pulling this partition's consumers (until its token is cancelled).
    Took(u16, CancellationToken),
}

/// Lease settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseConfig {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

/// One replica as a holder of partitions.
pub(crate) struct Replica {
    /// The dispatcher's database.
    pub pool: PgPool,
    /// This replica's id.
    pub me: String,
    /// Lease settings.
    pub config: LeaseConfig,
    /// What it holds.
    pub holdings: Holdings,
    /// Kept at the number of live replicas (for shares of account-wide limits).
    pub live: Arc<std::sync::atomic::AtomicUsize>,
}

/// Keeps this replica's share of the partitions until `shutdown`, then gives them all back.
/// Partitions taken are announced on `changes`; those whose consumers have stopped come back
/// on `stopped`, and their leases are freed.
pub(crate) async fn run(
    replica: Replica,
    changes: tokio::sync::mpsc::UnboundedSender<Change>,
    mut stopped: tokio::sync::mpsc::UnboundedReceiver<u16>,
    shutdown: CancellationToken,
) {
    let Replica {
        pool,
        me,
        config,
        holdings,
        live,
    } = replica;
    let period = config.lease / 3;
    loop {
        let started = Instant::now();
        match round(&pool, &me, config, &holdings, &live, &changes).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "partition lease round failed"),
        }
        // Partitions whose consumers have stopped (given back): free their leases.
        let mut freed = Vec::new();
        while let Ok(p) = stopped.try_recv() {
            holdings.lock().releasing.remove(&p);
            freed.push(i32::from(p));
        }
        if !freed.is_empty()
            && let Err(e) = free(&pool, &me, &freed).await
        {
            tracing::warn!(error = %e, "could not free partitions; their leases will expire");
        }
        let wait = period.saturating_sub(started.elapsed());
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Shutting down: stop every partition, wait for their consumers, free the leases.
    let held: Vec<u16> = {
        let mut inner = holdings.lock();
        let keys: Vec<u16> = inner
            .held
            .keys()
            .chain(inner.releasing.iter())
            .copied()
            .collect();
        for h in inner.held.values() {
            h.stop.cancel();
        }
        inner.held.clear();
        inner.releasing.clear();
        keys
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut freed = Vec::new();
    while freed.len() < held.len() {
        match tokio::time::timeout_at(deadline, stopped.recv()).await {
            Ok(Some(p)) => freed.push(i32::from(p)),
            _ => break,
        }
    }
    let _ = free(&pool, &me, &freed).await;
    let _ = sqlx::query!("DELETE FROM dispatcher.replicas WHERE id = $1", me)
        .execute(&pool)
        .await;
}

async fn round(
    pool: &PgPool,
    me: &str,
    config: LeaseConfig,
    holdings: &Holdings,
    live: &std::sync::atomic::AtomicUsize,
    changes: &tokio::sync::mpsc::UnboundedSender<Change>,
) -> Result<(), sqlx::Error> {
    let lease = config.lease.as_secs_f64();
    // This replica's view of a lease renewed now: shorter than the database's by a margin,
    // counted from before the renewal was asked for.
    let asked = Instant::now();
    let valid = asked + config.lease.mul_f64(0.8);
    sqlx::query!(
        "INSERT INTO dispatcher.replicas (id, seen_at) VALUES ($1, now())
         ON CONFLICT (id) DO UPDATE SET seen_at = now()",
        me
    )
    .execute(pool)
    .await?;
    let replicas = sqlx::query_scalar!(
        "SELECT count(*) AS \"n!\" FROM dispatcher.replicas
         WHERE seen_at > now() - make_interval(secs => $1)",
        lease
    )
    .fetch_one(pool)
    .await?;
    let replicas = usize::try_from(replicas).unwrap_or(1).max(1);
    live.store(replicas, std::sync::atomic::Ordering::Relaxed);
    let total = usize::from(sms_bus::DISPATCH_PARTITIONS);
    let fair = total.div_ceil(replicas);
    let renewed: Vec<i32> = sqlx::query_scalar!(
        "UPDATE dispatcher.partitions SET lease_until = now() + make_interval(secs => $2)
         WHERE owner = $1 AND lease_until > now()
         RETURNING partition",
        me,
        lease
    )
    .fetch_all(pool)
    .await?;
    let renewed: BTreeSet<u16> = renewed
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .collect();
    // Those being given back are renewed until their consumers stop, but no longer count.
    let held: Vec<u16> = {
        let mut inner = holdings.lock();
        let held: Vec<u16> = renewed
            .iter()
            .copied()
            .filter(|p| !inner.releasing.contains(p))
            .collect();
        // Partitions this replica thought it held but no longer does (its lease ran out while
        // it could not renew): stop them now.
        let lost: Vec<u16> = inner
            .held
            .keys()
            .copied()
            .filter(|p| !held.contains(p))
            .collect();
        for p in lost {
            if let Some(h) = inner.held.remove(&p) {
                tracing::warn!(partition = p, "partition lease lost");
                h.stop.cancel();
            }
        }
        for p in &held {
            if let Some(h) = inner.held.get_mut(p) {
                h.until = valid;
            }
        }
        held
    };
    if held.len() > fair {
        // Too many: give back the highest, once their consumers have stopped.
        let extra: Vec<u16> = held.iter().rev().take(held.len() - fair).copied().collect();
        let mut inner = holdings.lock();
        for p in extra {
            if let Some(h) = inner.held.remove(&p) {
                tracing::info!(partition = p, replicas, "giving a partition back");
                h.stop.cancel();
                inner.releasing.insert(p);
            }
        }
    } else if held.len() < fair {
        let want = i64::try_from(fair - held.len()).unwrap_or(0);
        let taken: Vec<i32> = sqlx::query_scalar!(
            "UPDATE dispatcher.partitions SET owner = $1,
                    lease_until = now() + make_interval(secs => $2)
             WHERE partition IN (
                 SELECT partition FROM dispatcher.partitions
                 WHERE lease_until <= now() AND partition < $4
                 ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING partition",
            me,
            lease,
            want,
            i32::from(sms_bus::DISPATCH_PARTITIONS)
        )
        .fetch_all(pool)
        .await?;
        let mut inner = holdings.lock();
        for p in taken.into_iter().filter_map(|p| u16::try_from(p).ok()) {
            let stop = CancellationToken::new();
            inner.held.insert(
                p,
                Held {
                    since: Instant::now(),
                    until: valid,
                    stop: stop.clone(),
                },
            );
            tracing::info!(partition = p, replicas, "took a partition");
            let _ = changes.send(Change::Took(p, stop));
        }
    }
    metrics::gauge!(sms_runtime::metrics::DISPATCH_PARTITIONS_HELD).set(holdings.count() as f64);
    Ok(())
}

async fn free(pool: &PgPool, me: &str, partitions: &[i32]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dispatcher.partitions SET owner = NULL, lease_until = '-infinity'
         WHERE owner = $1 AND partition = ANY($2)",
        me,
        partitions
    )
    .execute(pool)
    .await
    .map(|_| ())
}
