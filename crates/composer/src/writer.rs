//! Group commit for accepted messages: concurrent SendMessage calls share transactions
//! (see [`sms_runtime::batch`]). A call still returns only once its own rows are committed.

use sms_runtime::batch::Batcher;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{self, MediaRow, MessageRow, NewMessage};

/// The most messages one transaction stores.
pub const BATCH: usize = 256;

/// A message to store as accepted (or scheduled), with what goes with it.
#[derive(Debug, Clone)]
pub struct NewSend {
    /// The message row.
    pub message: MessageRow,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
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
    fn extra(&self) -> NewMessage<'_> {
        NewMessage {
            idempotency_key: self.idempotency_key.as_deref(),
            to_region: &self.to_region,
            template_id: self.template_id,
            media: &self.media,
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
        let all: Vec<&NewSend> = sends.iter().collect();
        match store::insert_messages(pool, &all).await {
            Ok(()) => return sends.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                tracing::debug!(messages = sends.len(), error = %e, "batch insert failed; storing one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(sends.len());
    for s in &sends {
        results.push(store::insert_message(pool, &s.message, &s.extra(), &s.event_id).await);
    }
    results
}
