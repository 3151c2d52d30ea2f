//! How fast a sender may send, counted in segments, and a token bucket to hold it to that.
//!
//! Carriers limit each sending number: a US long code about 1 segment a second, a toll-free
//! number about 3, a short code 100 or more; MMS from a long code about 1 message a second.
//! Going faster gets messages refused (HTTP 429, Twilio 20429, queue overflow 30001) or,
//! worse, filtered as spam. [`Rate::for_sender`] gives those defaults; a number may override
//! them ([`Rate::new`] checks an override).
//!
//! [`Bucket`] is a token bucket written as a generic cell rate algorithm: one number, the time
//! at which the bucket would be full again, so reserving is O(1) and needs no queue. A
//! reservation returns when its tokens may be spent; callers reserve in turn and wait.

use std::fmt;

use crate::PhoneNumber;
use crate::phone::NumberType;

/// A sending rate: `per_second` tokens refill every second, up to `burst` held at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

/// The fastest rate a number may be given (segments a second): well above any carrier's.
pub const MAX_PER_SECOND: f64 = 10_000.0;
/// The largest burst a number may be given (segments).
pub const MAX_BURST: f64 = 100_000.0;

/// Why a rate cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateError {
    /// Not a positive, finite rate, or an absurd one.
    #[error("send rate {0} segments a second must be above 0 and at most {MAX_PER_SECOND}")]
    PerSecond(f64),
    /// A burst below one segment, or an absurd one.
    #[error("burst {0} segments must be 1 to {MAX_BURST}")]
    Burst(f64),
}

/// What kind of sender a number is, for its default rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderKind {
    /// A local number (10DLC in the US): about 1 segment a second.
    LongCode,
    /// A toll-free number: about 3 segments a second.
    TollFree,
    /// A short code: 100 segments a second or more.
    ShortCode,
}

impl SenderKind {
    /// The kind of `number`: short codes by their length, toll-free by their type, every
    /// other number a long code.
    pub fn of(number: &str) -> SenderKind {
        if crate::phone::is_short_code(number) {
            return SenderKind::ShortCode;
        }
        match PhoneNumber::parse_valid(number, None).map(|n| n.number_type()) {
            Ok(NumberType::TollFree) => SenderKind::TollFree,
            _ => SenderKind::LongCode,
        }
    }
}

impl fmt::Display for SenderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SenderKind::LongCode => "long_code",
            SenderKind::TollFree => "toll_free",
            SenderKind::ShortCode => "short_code",
        })
    }
}

impl Rate {
    /// A rate of `per_second` segments a second with bursts of up to `burst` segments.
    pub fn new(per_second: f64, burst: f64) -> Result<Rate, RateError> {
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= MAX_PER_SECOND) {
            return Err(RateError::PerSecond(per_second));
        }
        if !(burst.is_finite() && (1.0..=MAX_BURST).contains(&burst)) {
            return Err(RateError::Burst(burst));
        }
        Ok(Rate { per_second, burst })
    }

    /// The carriers' usual limit for a sender of `kind`: segments for SMS; messages for MMS,
    /// which long codes may send about one a second.
    pub fn for_sender(kind: SenderKind, mms: bool) -> Rate {
        let (per_second, burst) = match (kind, mms) {
            (SenderKind::LongCode, false) => (1.0, 2.0),
            (SenderKind::LongCode, true) => (1.0, 1.0),
            (SenderKind::TollFree, _) => (3.0, 6.0),
            (SenderKind::ShortCode, _) => (100.0, 200.0),
        };
        Rate { per_second, burst }
    }

    /// Tokens refilled each second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Tokens held at most.
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

/// A token bucket: `reserve` answers when a cost may be spent, and books it. Times are
/// seconds on the caller's monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    rate: Rate,
    /// When the bucket will be full again, given everything reserved so far.
    full_at: f64,
}

impl Bucket {
    /// A full bucket at `now` (as for a sender nobody sent for lately).
    pub fn full(rate: Rate, now: f64) -> Bucket {
        Bucket { rate, full_at: now }
    }

    /// An empty bucket at `now`: what a new owner of a sender starts with, since the previous
    /// owner may have just spent the burst.
    pub fn empty(rate: Rate, now: f64) -> Bucket {
        Bucket {
            rate,
            full_at: now + rate.burst / rate.per_second,
        }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Changes the rate from `now` on, keeping the tokens the bucket holds (up to the new burst).
    pub fn set_rate(&mut self, rate: Rate, now: f64) {
        let held = self.tokens(now).min(rate.burst);
        self.rate = rate;
        self.full_at = now + (rate.burst - held) / rate.per_second;
    }

    /// Tokens held at `now` (negative while reservations are waiting).
    pub fn tokens(&self, now: f64) -> f64 {
        self.rate.burst - self.rate.per_second * (self.full_at - now).max(0.0)
    }

    /// Reserves `cost` tokens and returns when they may be spent (`now` at the earliest). A
    /// cost above the burst waits for a full bucket and leaves it in debt.
    pub fn reserve(&mut self, cost: f64, now: f64) -> f64 {
        let cost = cost.max(0.0);
        let at = (self.full_at - (self.rate.burst - cost) / self.rate.per_second).max(now);
        self.full_at = self.full_at.max(at) + cost / self.rate.per_second;
        at
    }

    /// Nothing more may be spent before `until` (the carrier asked us to slow down): the
    /// bucket is empty then.
    pub fn hold_until(&mut self, until: f64) {
        self.full_at = self
            .full_at
            .max(until + self.rate.burst / self.rate.per_second);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn defaults_by_kind() {
        assert_eq!(SenderKind::of("+12015550100"), SenderKind::LongCode);
        assert_eq!(SenderKind::of("+18005550199"), SenderKind::TollFree);
        assert_eq!(SenderKind::of("12345"), SenderKind::ShortCode);
        assert_eq!(
            Rate::for_sender(SenderKind::LongCode, false).per_second(),
            1.0
        );
        assert_eq!(
            Rate::for_sender(SenderKind::TollFree, false).per_second(),
            3.0
        );
        assert_eq!(
            Rate::for_sender(SenderKind::ShortCode, false).per_second(),
            100.0
        );
        assert_eq!(Rate::for_sender(SenderKind::LongCode, true).burst(), 1.0);
    }

    #[test]
    fn absurd_rates_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(
                matches!(Rate::new(bad, 2.0), Err(RateError::PerSecond(_))),
                "{bad}"
            );
        }
        for bad in [0.0, 0.5, -3.0, f64::NAN, 1e12] {
            assert!(
                matches!(Rate::new(1.0, bad), Err(RateError::Burst(_))),
                "{bad}"
            );
        }
        assert!(Rate::new(0.5, 1.0).is_ok());
    }

    #[test]
    fn a_full_bucket_spends_its_burst_then_the_rate() {
        let mut b = Bucket::full(Rate::new(1.0, 2.0).unwrap(), 0.0);
        assert_eq!(b.reserve(1.0, 0.0), 0.0);
        assert_eq!(b.reserve(1.0, 0.0), 0.0);
        assert_eq!(b.reserve(1.0, 0.0), 1.0);
        assert_eq!(
            b.reserve(3.0, 0.0),
            4.0,
            "three segments wait for three tokens"
        );
        assert_eq!(b.reserve(1.0, 10.0), 10.0, "refilled meanwhile");
    }

    #[test]
    fn an_empty_bucket_waits_for_its_first_tokens() {
        let mut b = Bucket::empty(Rate::new(5.0, 10.0).unwrap(), 100.0);
        assert!(
            (b.reserve(1.0, 100.0) - 100.2).abs() < 1e-9,
            "one token takes 0.2 s"
        );
    }

    #[test]
    fn a_hold_empties_the_bucket_until_then() {
        let mut b = Bucket::full(Rate::new(1.0, 2.0).unwrap(), 0.0);
        b.hold_until(5.0);
        assert_eq!(b.reserve(1.0, 0.0), 6.0);
    }

    proptest! {
        /// Whatever is reserved, whenever: in any window the tokens spent are at most the
        /// burst plus the rate times the window's length, and nothing is spent before it is
        /// asked for.
        #[test]
        fn no_window_spends_more_than_the_burst_and_the_rate(
            per_second in 0.5f64..50.0,
            burst in 1.0f64..20.0,
            asks in proptest::collection::vec((0.0f64..3.0, 1u8..4), 1..200),
            start_empty: bool,
        ) {
            let rate = Rate::new(per_second, burst).unwrap();
            let mut b = if start_empty { Bucket::empty(rate, 0.0) } else { Bucket::full(rate, 0.0) };
            let mut now = 0.0;
            let mut spent: Vec<(f64, f64)> = Vec::new();
            for (gap, cost) in asks {
                now += gap;
                let cost = f64::from(cost);
                let at = b.reserve(cost, now);
                prop_assert!(at >= now);
                spent.push((at, cost));
            }
            for &(start, _) in &spent {
                for width in [0.5, 1.0, 2.0, 5.0] {
                    let total: f64 = spent
                        .iter()
                        .filter(|(t, _)| *t >= start && *t < start + width)
                        .map(|(_, c)| c)
                        .sum();
                    // Costs above the burst are spent whole: allow one such cost over.
                    let allowed = burst.max(3.0) + per_second * width + 1e-6;
                    prop_assert!(total <= allowed, "{total} spent in {width} s (allowed {allowed})");
                }
            }
        }
    }
}
