//! The wake-up after a commit that wrote the feed: in this process at once, and to every
//! other process that reads the feed (the feed's replicas, the composer's) over core NATS.
//! A wake-up may be lost; readers also look on their own a few times a second.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use sms_bus::Bus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// At most one wake-up is sent to the others per this long: a busy composer commits the
/// feed hundreds of times a second, and one signal wakes every reader.
const COALESCE: Duration = Duration::from_millis(5);

/// Wakes the feed's readers when an entry was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    here: Arc<Notify>,
    /// Set when other processes are told too: wakes the task that tells them.
    others: Option<Arc<Notify>>,
}

impl Written {
    /// Wake-ups within this process only (tests, tools).
    pub fn local() -> Self {
        Written::default()
    }

    /// Wake-ups shared over `bus`: this process's commits wake the others' readers, theirs
    /// wake ours; both until `shutdown`.
    pub async fn over(bus: &Bus, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let subject = bus.subjects().feed_written();
        let client = bus.client().clone();
        let mut heard = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to the feed's wake-ups: {e}"))?;
        let written = Written {
            here: Arc::default(),
            others: Some(Arc::default()),
        };
        let here = written.here.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    signal = heard.next() => match signal {
                        Some(_) => here.notify_waiters(),
                        None => return,
                    },
                }
            }
        });
        let others = written.others.clone().unwrap_or_default();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = others.notified() => {}
                }
                // Lost now and then is fine (see the module's note); a failure is not worth
                // more than a debug line.
                if let Err(e) = client.publish(subject.clone(), bytes::Bytes::new()).await {
                    tracing::debug!(error = %e, "feed wake-up not sent");
                }
                tokio::time::sleep(COALESCE).await;
            }
        });
        Ok(written)
    }

    /// Resolves at the next [`Written::wake`] (here or, when shared, anywhere) after this call.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.here.notified()
    }

    /// Wakes the readers after a commit that appended events.
    pub fn wake(&self) {
        self.here.notify_waiters();
        if let Some(others) = &self.others {
            // Stored if the sender is busy: the next send carries it.
            others.notify_one();
        }
    }
}
