//! Group commit: many concurrent callers, one statement.
//!
//! A database commit costs far more than the rows in it (PERFORMANCE.md: about 195 µs of CPU
//! and a log flush per commit), so one transaction per event or per call caps a service near
//! the commit rate. A [`Batcher`] lets callers hand in one item each and wait for its own
//! result, while a few worker tasks each take whatever has queued up (at most `max`) and
//! handle it in one go. Under light load a batch is a single item: nobody waits for company.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

type Job<T, R> = (T, oneshot::Sender<R>);

/// Hands items to batch workers. Cheap to clone; the workers stop when every clone is dropped.
pub struct Batcher<T, R> {
    jobs: mpsc::Sender<Job<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts `workers` tasks, each handling up to `max` items at a time with `handle`, which
    /// must return one result per item, in order.
    pub fn start<F, Fut>(workers: usize, max: usize, handle: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (workers, max) = (workers.max(1), max.max(1));
        let (jobs, queue) = mpsc::channel::<Job<T, R>>(max * workers * 2);
        let queue = Arc::new(Mutex::new(queue));
        let handle = Arc::new(handle);
        for _ in 0..workers {
            let (queue, handle) = (queue.clone(), handle.clone());
            tokio::spawn(async move {
                while let Some(batch) = gather(&queue, max).await {
                    let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) =
                        batch.into_iter().unzip();
                    let results = handle(items).await;
                    // A missing result drops its sender: that caller gets `None`.
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            });
        }
        Batcher { jobs }
    }

    /// Hands `item` over and waits for its result; `None` when the workers are gone (or the
    /// handler returned no result for it).
    pub async fn call(&self, item: T) -> Option<R> {
        let (reply, result) = oneshot::channel();
        self.jobs.send((item, reply)).await.ok()?;
        result.await.ok()
    }
}

/// Waits for one job, then takes whatever else is queued, up to `max`; `None` once closed.
async fn gather<T, R>(
    queue: &Mutex<mpsc::Receiver<Job<T, R>>>,
    max: usize,
) -> Option<Vec<Job<T, R>>> {
    // One worker gathers while the others handle their batches.
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut batch = vec![first];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn callers_get_their_own_results_and_share_batches() {
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let batcher = Batcher::start(2, 64, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.fetch_max(items.len(), Ordering::SeqCst);
                tokio::task::yield_now().await;
                items.into_iter().map(|i| i * 10).collect::<Vec<_>>()
            }
        });
        let calls = (0..500u32).map(|i| {
            let b = batcher.clone();
            async move { (i, b.call(i).await) }
        });
        for (i, result) in futures::future::join_all(calls).await {
            assert_eq!(result, Some(i * 10));
        }
        let largest = largest.load(Ordering::SeqCst);
        assert!((2..=64).contains(&largest), "largest batch {largest}");
    }

    #[tokio::test]
    async fn a_missing_result_is_none_not_a_hang() {
        let batcher = Batcher::start(1, 8, |items: Vec<u32>| async move {
            items.into_iter().filter(|i| i % 2 == 0).collect::<Vec<_>>()
        });
        assert_eq!(batcher.call(2).await, Some(2));
        assert_eq!(batcher.call(3).await, None);
    }
}
