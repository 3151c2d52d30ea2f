//! Group commit for accepted messages: concurrent SendMessage calls share transactions.
//!
//! A commit costs far more than the rows in it (PERFORMANCE.md: about 195 µs of CPU and a log
//! flush), so one transaction per call caps accepting near the commit rate. Calls hand their
//! rows to a few writer tasks; each takes whatever has queued up (at most [`BATCH`]) and stores
//! it in one transaction. A call still returns only once its own rows are committed, and under
//! light load a batch is a single message: nothing waits for company.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
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

struct Job {
    send: NewSend,
    done: oneshot::Sender<Result<(), sqlx::Error>>,
}

/// The handle calls store through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts `writers` tasks storing into `pool`; they stop when every handle is dropped.
    pub fn start(pool: PgPool, writers: usize) -> Writer {
        let (jobs, queue) = mpsc::channel(BATCH * writers.max(1) * 2);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(pool.clone(), queue.clone()));
        }
        Writer { jobs }
    }

    /// Stores `send` and returns once it is committed. The error is the one storing this
    /// message alone gives (a taken idempotency key, say), whatever else shared its batch.
    pub async fn insert(&self, send: NewSend) -> Result<(), sqlx::Error> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { send, done })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        result.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn run(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::new();
        {
            // One writer gathers while the others commit.
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        write(&pool, batch).await;
    }
}

async fn write(pool: &PgPool, batch: Vec<Job>) {
    // Attachments are rare and large: those messages go alone.
    let (with_media, plain): (Vec<Job>, Vec<Job>) =
        batch.into_iter().partition(|j| !j.send.media.is_empty());
    for job in with_media {
        write_one(pool, job).await;
    }
    match plain.len() {
        0 => {}
        1 => {
            for job in plain {
                write_one(pool, job).await;
            }
        }
        _ => {
            let sends: Vec<&NewSend> = plain.iter().map(|j| &j.send).collect();
            match store::insert_messages(pool, &sends).await {
                Ok(()) => {
                    for job in plain {
                        let _ = job.done.send(Ok(()));
                    }
                }
                Err(e) => {
                    // One row's conflict fails them all: find out whose, one at a time.
                    tracing::debug!(messages = plain.len(), error = %e, "batch insert failed; storing one by one");
                    for job in plain {
                        write_one(pool, job).await;
                    }
                }
            }
        }
    }
}

async fn write_one(pool: &PgPool, job: Job) {
    let s = &job.send;
    let result = store::insert_message(pool, &s.message, &s.extra(), &s.event_id).await;
    let _ = job.done.send(result);
}
