//! The event feed the CRM subscribes to (`EventsService.Subscribe`): message statuses, inbound
//! messages, opt-out changes and number changes of one organization, each written in the
//! transaction of the change it announces (opt-outs, which another service owns, by a durable
//! consumer whose marker is the entry itself), read back in an order no later commit can slip
//! behind, resumable from any event's cursor.

use std::time::Duration;

use chrono::Utc;
use prost::Message as _;
use sms_bus::HandleError;
use sms_proto::v1::{FeedEvent, SubscribeResponse};
use sms_runtime::auth::Caller;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::FeedError;
use crate::signal::Written;
use crate::store;
pub use crate::store::feed::{MAX_CURSOR, Position, cursor, parse_cursor};

/// Events read per query.
const PAGE: i64 = 500;
/// How often a subscriber looks for events written by other replicas (or committed out of
/// order) when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// Events kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The event feed capability: where a subscription starts, what it is sent, and the
/// opt-out changes it writes itself.
#[derive(Clone)]
pub struct Feed {
    pool: PgPool,
    written: Written,
    shutdown: CancellationToken,
}

impl Feed {
    /// The feed kept in `pool`, woken by `written`, its subscriptions ended by `shutdown`.
    pub fn new(pool: PgPool, written: Written, shutdown: CancellationToken) -> Self {
        Feed {
            pool,
            written,
            shutdown,
        }
    }

    /// Where a subscription starts: after `cursor`, else the oldest kept (`from_start`), else
    /// now. A cursor that is malformed, unknown, or older than the feed keeps is refused with
    /// the oldest cursor kept.
    pub async fn feed_start(
        &self,
        caller: &Caller,
        given: &str,
        from_start: bool,
    ) -> Result<Position, FeedError> {
        let org = &caller.organization_id;
        sms_core::text::check("cursor", given, MAX_CURSOR, sms_core::text::Lines::Single)?;
        let horizon = store::feed::horizon(&self.pool, org).await?;
        let oldest = horizon.unwrap_or(Position { tx: 0, seq: -1 });
        let resume_from = || horizon.map(cursor).unwrap_or_default();
        if given.trim().is_empty() {
            return Ok(if from_start {
                oldest
            } else {
                store::feed::now(&self.pool).await?
            });
        }
        let Some(at) = parse_cursor(given) else {
            return Err(FeedError::InvalidCursor {
                resume_from: resume_from(),
            });
        };
        if horizon.is_some_and(|h| at < h) {
            return Err(FeedError::CursorExpired {
                resume_from: resume_from(),
            });
        }
        if Some(at) != horizon && !store::feed::holds(&self.pool, org, at).await? {
            return Err(FeedError::CursorUnknown {
                resume_from: resume_from(),
            });
        }
        Ok(at)
    }

    /// Sends the organization's events after `from` to `out` as they come, until the
    /// subscriber goes away or the service stops.
    pub async fn feed_pump(
        self,
        organization_id: String,
        from: Position,
        out: mpsc::Sender<Result<SubscribeResponse, tonic::Status>>,
    ) {
        let mut after = from;
        loop {
            // Registered before reading, so that a write between the read and the wait wakes it.
            let written = self.written.notified();
            let page = match store::feed::read(&self.pool, &organization_id, after, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "event feed read failed");
                    let _ = out
                        .send(Err(tonic::Status::unavailable(
                            "the event feed cannot be read now; resubscribe with your last cursor",
                        )))
                        .await;
                    return;
                }
            };
            let full = i64::try_from(page.len()).unwrap_or(0) == PAGE;
            for (at, payload) in page {
                after = at;
                let Ok(mut event) = FeedEvent::decode(payload.as_slice()) else {
                    tracing::error!(?at, "feed entry does not decode; skipped");
                    continue;
                };
                event.cursor = cursor(at);
                if out
                    .send(Ok(SubscribeResponse { event: Some(event) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = out.closed() => return,
                () = self.shutdown.cancelled() => return,
                () = written => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Writes an opt-out change (the registry's state event) to the feed; the entry itself
    /// is the marker that makes a redelivery change nothing.
    pub async fn on_opt_out(
        &self,
        e: &sms_proto::events::v1::OptOutChanged,
    ) -> Result<(), HandleError> {
        let Some(entry) = crate::entries::opt_out_entry(e) else {
            return Err(HandleError::Permanent("opt-out change without meta".into()));
        };
        let mut conn = self.pool.acquire().await.map_err(store::db_failure)?;
        store::feed::append(&mut conn, &[entry])
            .await
            .map_err(store::db_failure)?;
        self.written.wake();
        Ok(())
    }
}

/// Deletes events (and webhook attempts) past `retention`, a batch at a time, until
/// `shutdown`.
pub async fn prune(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    loop {
        let before =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match store::feed::prune(&pool, before, 10_000).await {
            Ok(n) if n > 0 => {
                tracing::info!(deleted = n, "event feed pruned");
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "event feed prune failed"),
        }
        // Once a round, not once per feed batch.
        if let Err(e) = store::webhooks::prune(&pool, before).await {
            tracing::warn!(error = %e, "webhook attempts prune failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}
