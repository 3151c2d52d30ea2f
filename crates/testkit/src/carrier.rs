//! A carrier that counts its calls, around the real Twilio adapter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sms_dispatcher::{Carrier, CarrierError, CarrierMessage, Receipt};
use tokio::task::JoinHandle;

/// A carrier wrapper that counts the calls of one dispatcher instance.
pub struct CountingCarrier {
    pub(crate) inner: Arc<dyn Carrier>,
    /// Calls made through this instance.
    pub calls: AtomicU64,
    /// The next this many calls are lost on the way, as when the dispatcher dies during the
    /// call before the request leaves: the carrier never sees them and the caller hears
    /// nothing (an unknown outcome).
    pub lose: std::sync::atomic::AtomicU32,
    /// How its sends in doubt are resolved: Twilio's own (`ListByPair`), or as a carrier that
    /// can only be asked under an id (SMPP's), to try the dispatcher's per-connection policies
    /// with the simulator.
    pub(crate) resolution: sms_dispatcher::Resolution,
}

#[async_trait]
impl Carrier for CountingCarrier {
    fn account(&self) -> &str {
        self.inner.account()
    }
    fn resolution(&self) -> sms_dispatcher::Resolution {
        self.resolution
    }
    fn statuses(&self) -> sms_dispatcher::StatusSource {
        self.inner.statuses()
    }
    fn admission(&self) -> Option<&tokio::sync::Semaphore> {
        self.inner.admission()
    }
    fn start(&self, context: sms_dispatcher::CarrierContext) -> Option<JoinHandle<()>> {
        self.inner.start(context)
    }
    async fn send(&self, message: &CarrierMessage) -> Result<Receipt, CarrierError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let lost = self
            .lose
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(CarrierError::Ambiguous(
                "lost on the way (test): no answer".into(),
            ));
        }
        self.inner.send(message).await
    }

    async fn find(
        &self,
        from: &str,
        to: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<sms_dispatcher::CarrierRecord>, sms_dispatcher::LookupError> {
        self.inner.find(from, to, since).await
    }

    async fn fetch(
        &self,
        sid: &str,
    ) -> Result<Option<sms_dispatcher::CarrierRecord>, sms_dispatcher::LookupError> {
        self.inner.fetch(sid).await
    }
}
