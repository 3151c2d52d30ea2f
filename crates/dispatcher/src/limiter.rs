//! Each sender held to its rate, in segments, by the one replica that holds its dispatch
//! partition ([`crate::partitions`]): a token bucket per sender in memory, no database trip
//! per message. A message reserves its segments and waits for its turn (still unclaimed, its
//! event kept in progress on the bus); the carrier saying "slow down" (429, 20429, 30001)
//! empties the sender's bucket for the back-off, and the account's when there is an account
//! limit.
//!
//! Rates: the number's own, when one was set through the Numbers API (it travels on the
//! number's state event); otherwise the carriers' usual limit for its kind
//! ([`sms_core::rate::Rate::for_sender`]). MMS from a long code have a bucket of their own, in
//! messages. `SMS_CARRIER_RATE` adds one limit for the whole carrier account, shared evenly
//! between the live replicas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sms_core::rate::{Bucket, Rate, SenderKind};
use sms_proto::events::v1::OutboundMessage;

/// A sender's bucket: its organization, number, and whether it counts MMS.
type Key = (String, String, bool);

/// Rates set on numbers, by (organization, number): a replica's copy of the number state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides(Arc<RwLock<HashMap<(String, String), Rate>>>);

impl Overrides {
    /// Records the rate of a number (`None`: back to its default).
    pub fn set(&self, organization_id: String, number: String, rate: Option<Rate>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        match rate {
            Some(r) => {
                map.insert((organization_id, number), r);
            }
            None => {
                map.remove(&(organization_id, number));
            }
        }
    }

    fn get(&self, organization_id: &str, number: &str) -> Option<Rate> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(organization_id.to_owned(), number.to_owned()))
            .copied()
    }
}

/// The buckets of the senders this replica sends for.
pub(crate) struct Limiter {
    origin: Instant,
    buckets: Mutex<HashMap<Key, Bucket>>,
    overrides: Overrides,
    /// The carrier account's rate (segments a second), shared by `live` replicas.
    account: Option<(Rate, Mutex<Bucket>)>,
    live: Arc<AtomicUsize>,
}

impl Limiter {
    pub fn new(overrides: Overrides, account: Option<Rate>, live: Arc<AtomicUsize>) -> Limiter {
        let origin = Instant::now();
        Limiter {
            origin,
            buckets: Mutex::new(HashMap::new()),
            overrides,
            account: account.map(|r| (r, Mutex::new(Bucket::empty(r, 0.0)))),
            live,
        }
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn instant(&self, at: f64) -> Instant {
        self.origin + Duration::from_secs_f64(at.max(0.0))
    }

    fn key(m: &OutboundMessage) -> (Key, f64, Rate) {
        let mms = !m.media_urls.is_empty();
        let kind = SenderKind::of(&m.from);
        // MMS from a long code: a bucket of its own, in messages; otherwise segments.
        let (counts_mms, cost) = if mms && kind == SenderKind::LongCode {
            (true, 1.0)
        } else {
            (false, f64::from(m.segments.max(1)))
        };
        let default = Rate::for_sender(kind, counts_mms);
        (
            (m.organization_id.clone(), m.from.clone(), counts_mms),
            cost,
            default,
        )
    }

    /// Reserves what `m` costs and returns when it may be sent. `fresh` tells whether this
    /// replica took the sender's partition so recently that the previous holder may have
    /// spent the burst: a new bucket then starts empty.
    pub fn reserve(&self, m: &OutboundMessage, fresh: bool) -> Instant {
        let (key, cost, default) = Self::key(m);
        let rate = if key.2 {
            default
        } else {
            self.overrides
                .get(&m.organization_id, &m.from)
                .unwrap_or(default)
        };
        let now = self.now();
        let sender_at = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let bucket = buckets.entry(key).or_insert_with(|| {
                if fresh {
                    Bucket::empty(rate, now)
                } else {
                    Bucket::full(rate, now)
                }
            });
            if bucket.rate() != rate {
                bucket.set_rate(rate, now);
            }
            bucket.reserve(cost, now)
        };
        let account_at = self.account.as_ref().map_or(sender_at, |(r, bucket)| {
            let share = Rate::new(
                r.per_second() / self.live.load(Ordering::Relaxed).max(1) as f64,
                r.burst(),
            )
            .unwrap_or(*r);
            let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
            if bucket.rate() != share {
                bucket.set_rate(share, now);
            }
            // The account's turn comes after the sender's.
            bucket.reserve(cost, sender_at)
        });
        self.instant(sender_at.max(account_at))
    }

    /// The carrier asked us to slow down sending from `m`'s sender: nothing more from it (nor,
    /// with an account limit, from the account) before `delay` has passed.
    pub fn hold(&self, m: &OutboundMessage, delay: Duration) {
        let (key, _, default) = Self::key(m);
        let until = self.now() + delay.as_secs_f64();
        let now = self.now();
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Bucket::full(default, now))
            .hold_until(until);
        if let Some((_, bucket)) = &self.account {
            bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .hold_until(until);
        }
    }

    /// Forgets buckets that have been full for a minute (a new one would be the same).
    pub fn prune(&self) {
        let now = self.now();
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, b| b.tokens(now - 60.0) < b.rate().burst());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phone number metadata loads on first use (a tenth of a second): before the clock.
    fn warm_up() {
        let _ = SenderKind::of("+12015550100");
    }

    fn message(from: &str, segments: u32) -> OutboundMessage {
        OutboundMessage {
            organization_id: "o".into(),
            from: from.into(),
            segments,
            ..Default::default()
        }
    }

    #[test]
    fn a_long_code_sends_a_segment_a_second_after_its_burst() {
        warm_up();
        let limiter = Limiter::new(Overrides::default(), None, Arc::new(AtomicUsize::new(1)));
        let start = Instant::now();
        let m = message("+12015550100", 1);
        let at: Vec<f64> = (0..4)
            .map(|_| (limiter.reserve(&m, false) - start).as_secs_f64())
            .collect();
        assert!(at[0] < 0.05 && at[1] < 0.05, "the burst: {at:?}");
        assert!(
            (at[2] - 1.0).abs() < 0.05 && (at[3] - 2.0).abs() < 0.05,
            "{at:?}"
        );
        // Another sender is not held up.
        let other = limiter.reserve(&message("+12015550101", 1), false) - start;
        assert!(other.as_secs_f64() < 0.05);
    }

    #[test]
    fn overrides_and_segments_and_holds() {
        let overrides = Overrides::default();
        overrides.set(
            "o".into(),
            "+12015550100".into(),
            Some(Rate::new(5.0, 5.0).unwrap()),
        );
        warm_up();
        let limiter = Limiter::new(overrides, None, Arc::new(AtomicUsize::new(1)));
        let start = Instant::now();
        let m = message("+12015550100", 3);
        let first = limiter.reserve(&m, false) - start;
        let second = limiter.reserve(&m, false) - start;
        assert!(first.as_secs_f64() < 0.05);
        // 3 of 5 tokens left 2; 3 more need 0.2 s at 5 a second.
        assert!((second.as_secs_f64() - 0.2).abs() < 0.05, "{second:?}");
        limiter.hold(&m, Duration::from_secs(10));
        let after = limiter.reserve(&m, false) - start;
        assert!(after.as_secs_f64() > 10.0, "{after:?}");
    }

    #[test]
    fn an_account_limit_is_shared_between_replicas() {
        warm_up();
        let live = Arc::new(AtomicUsize::new(2));
        let limiter = Limiter::new(
            Overrides::default(),
            Some(Rate::new(10.0, 1.0).unwrap()),
            live,
        );
        let start = Instant::now();
        // Different senders, one account: 5 a second here (10 shared by 2), starting empty.
        let at: Vec<f64> = (0..5)
            .map(|i| {
                (limiter.reserve(&message(&format!("+1201555010{i}"), 1), false) - start)
                    .as_secs_f64()
            })
            .collect();
        assert!((at[4] - 1.0).abs() < 0.05, "{at:?}");
    }
}
