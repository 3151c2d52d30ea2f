//! Claims and "sent" marks, group-committed: concurrent sends share statements.

use std::time::Duration;

use sms_bus::{Delivery, HandleError};
use sms_runtime::backoff::Backoff;
use sms_runtime::batch::Batcher;
use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::store;

/// Claims and "sent" marks are group-committed: concurrent sends share statements.
pub(crate) const BATCH: usize = 256;
pub(crate) const BATCH_WORKERS: usize = 2;

/// A group-committed statement that failed, as each of its callers sees it.
#[derive(Debug, Clone)]
pub(crate) struct BatchError {
    /// The database could not be reached (see [`sms_runtime::db::is_unavailable`]).
    pub(crate) unavailable: bool,
    pub(crate) reason: String,
}

impl BatchError {
    pub(crate) fn new(e: &sqlx::Error) -> BatchError {
        BatchError {
            unavailable: sms_runtime::db::is_unavailable(e),
            reason: format!("database: {e}"),
        }
    }

    pub(crate) fn stopping() -> BatchError {
        BatchError {
            unavailable: true,
            reason: "dispatcher stopping".into(),
        }
    }

    /// What the bus should do with the event.
    pub(crate) fn handle(self, delivery: Delivery) -> HandleError {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let delay = backoff.delay(u32::try_from(delivery.attempt).unwrap_or(u32::MAX));
        if self.unavailable {
            HandleError::Unavailable {
                reason: self.reason,
                delay,
            }
        } else {
            HandleError::Retry {
                reason: self.reason,
                delay,
            }
        }
    }
}

/// Claims messages for carrier calls, many per transaction (see [`store::claim`]).
pub(crate) fn claims(
    pool: PgPool,
    outbox: Outbox,
    in_doubt_after: Duration,
) -> Batcher<store::Claim, Result<Option<i32>, BatchError>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<store::Claim>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            match store::claim(&pool, &outbox, &items, in_doubt_after).await {
                Ok(mut attempts) => {
                    outbox.wake();
                    // `remove`: a repeat of an id in this batch finds it taken.
                    items.iter().map(|c| Ok(attempts.remove(&c.id))).collect()
                }
                Err(e) => items.iter().map(|_| Err(BatchError::new(&e))).collect(),
            }
        }
    })
}

/// Records that the carrier took messages, many per transaction (see [`store::sent`]).
pub(crate) fn sent(pool: PgPool, outbox: Outbox) -> Batcher<store::Taken, Result<(), BatchError>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<store::Taken>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            let result = store::sent(&pool, &outbox, &items)
                .await
                .map_err(|e| BatchError::new(&e));
            if result.is_ok() {
                outbox.wake();
            }
            items.iter().map(|_| result.clone()).collect()
        }
    })
}

/// A database error as the bus should treat it (see [`sms_runtime::db::consumer_error`]).
pub(crate) fn db_retry(e: sqlx::Error, delivery: Delivery) -> HandleError {
    sms_runtime::db::consumer_error(e, delivery.attempt)
}
