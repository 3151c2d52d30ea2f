//! Bind slots shared by the dispatcher replicas (`smpp_bind_slots`): a replica binds only on a
//! slot it leases, at most its fair share of the connection's binds (rounded up), renews the
//! lease while bound and gives a slot back when it holds more than its share (a replica
//! joined). A replica that dies leaves its slots to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::carrier::Slots;

/// Slots leased in the dispatcher's database.
pub(crate) struct LeasedSlots {
    pub pool: PgPool,
    /// This replica.
    pub me: String,
    /// Live replicas (kept by the partition leases).
    pub live: Arc<AtomicUsize>,
    /// How long a slot's lease lasts without renewal.
    pub lease: Duration,
}

impl LeasedSlots {
    fn share(&self, total: usize) -> i64 {
        let live = self.live.load(Ordering::Relaxed).max(1);
        i64::try_from(total.div_ceil(live)).unwrap_or(i64::MAX)
    }
}

#[async_trait]
impl Slots for LeasedSlots {
    fn lease(&self) -> Duration {
        self.lease
    }

    async fn take(&self, connection: &str, total: usize) -> Result<Option<i32>, String> {
        let total = i32::try_from(total).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        sqlx::query!(
            "INSERT INTO dispatcher.smpp_bind_slots (connection, slot)
             SELECT $1, generate_series(0, $2 - 1)
             ON CONFLICT DO NOTHING",
            connection,
            total
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        let held = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM dispatcher.smpp_bind_slots
                WHERE connection = $1 AND owner = $2 AND lease_until > now() AND slot < $3"#,
            connection,
            self.me,
            total
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        if held >= self.share(usize::try_from(total).unwrap_or(0)) {
            tx.commit().await.map_err(|e| e.to_string())?;
            return Ok(None);
        }
        let slot = sqlx::query_scalar!(
            "UPDATE dispatcher.smpp_bind_slots
                SET owner = $2, lease_until = now() + make_interval(secs => $4)
              WHERE connection = $1 AND slot = (
                    SELECT slot FROM dispatcher.smpp_bind_slots
                     WHERE connection = $1 AND slot < $3 AND lease_until < now()
                     ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
              RETURNING slot",
            connection,
            self.me,
            total,
            self.lease.as_secs_f64()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(slot)
    }

    async fn renew(&self, connection: &str, slot: i32, total: usize) -> Result<bool, String> {
        // Above its share (a replica joined): the highest slot held goes back.
        let share = self.share(total);
        let renewed = sqlx::query_scalar!(
            r#"WITH mine AS (
                   SELECT slot, row_number() OVER (ORDER BY slot) AS n
                     FROM dispatcher.smpp_bind_slots
                    WHERE connection = $1 AND owner = $2 AND lease_until > now())
               UPDATE dispatcher.smpp_bind_slots s
                  SET lease_until = now() + make_interval(secs => $4)
                 FROM mine
                WHERE s.connection = $1 AND s.slot = $3 AND s.owner = $2
                  AND mine.slot = s.slot AND mine.n <= $5
               RETURNING s.slot"#,
            connection,
            self.me,
            slot,
            self.lease.as_secs_f64(),
            share
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        Ok(renewed.is_some())
    }

    async fn free(&self, connection: &str, slot: i32) {
        let _ = sqlx::query!(
            "UPDATE dispatcher.smpp_bind_slots SET owner = NULL, lease_until = '-infinity'
              WHERE connection = $1 AND slot = $2 AND owner = $3",
            connection,
            slot,
            self.me
        )
        .execute(&self.pool)
        .await;
    }
}
