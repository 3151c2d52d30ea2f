//! Send later: an instant, or a local date-time in the sender's IANA time zone.
//!
//! A local time that does not exist (the spring-forward gap) is refused; an ambiguous one (the
//! fall-back overlap) takes the earlier instant and says so. A time in the past (beyond a small
//! grace) or beyond the horizon is refused.

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// How far in the past a send time may be and still be accepted (clock skew, slow clients).
pub const GRACE: SignedDuration = SignedDuration::from_secs(5);
/// The default furthest send time.
pub const DEFAULT_HORIZON_DAYS: i64 = 365;

/// Why a send time cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not an IANA zone name.
    #[error("{} is not an IANA time zone (like America/New_York)", crate::text::quote(.0))]
    UnknownTimeZone(String),
    /// Not a local date-time.
    #[error(
        "{} is not a local date-time (like 2026-03-08T09:30:00)",
        crate::text::quote(.0)
    )]
    InvalidDateTime(String),
    /// The clocks skip this local time.
    #[error(
        "{local} does not exist in {zone}: the clocks jump forward over it \
         (UTC offset {offset_before} to {offset_after})"
    )]
    NonexistentLocalTime {
        /// The local time asked for.
        local: String,
        /// The zone.
        zone: String,
        /// The UTC offset before the jump.
        offset_before: String,
        /// The UTC offset after it.
        offset_after: String,
    },
    /// In the past.
    #[error("the send time {0} is in the past")]
    InPast(String),
    /// Too far ahead.
    #[error("the send time {at} is more than {days} days ahead")]
    TooFar {
        /// The send time.
        at: String,
        /// The horizon.
        days: i64,
    },
}

/// A resolved send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendAt {
    /// The instant.
    pub at: Timestamp,
    /// The local time occurred twice and the earlier instant was taken.
    pub ambiguous: bool,
}

/// Resolves a local date-time in an IANA zone to an instant.
pub fn resolve_local(date_time: &str, zone: &str) -> Result<SendAt, ScheduleError> {
    let tz =
        TimeZone::get(zone.trim()).map_err(|_| ScheduleError::UnknownTimeZone(zone.to_owned()))?;
    let local: DateTime = date_time
        .trim()
        .parse()
        .map_err(|_| ScheduleError::InvalidDateTime(date_time.to_owned()))?;
    let ambiguous = tz.to_ambiguous_timestamp(local);
    let invalid = |_| ScheduleError::InvalidDateTime(date_time.to_owned());
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } => Ok(SendAt {
            at: ambiguous.unambiguous().map_err(invalid)?,
            ambiguous: false,
        }),
        AmbiguousOffset::Fold { .. } => Ok(SendAt {
            at: ambiguous.earlier().map_err(invalid)?,
            ambiguous: true,
        }),
        AmbiguousOffset::Gap { before, after } => Err(ScheduleError::NonexistentLocalTime {
            local: local.to_string(),
            zone: zone.trim().to_owned(),
            offset_before: before.to_string(),
            offset_after: after.to_string(),
        }),
    }
}

/// Checks that `at` is not in the past (beyond [`GRACE`]) nor beyond `horizon_days`.
pub fn check_window(at: Timestamp, now: Timestamp, horizon_days: i64) -> Result<(), ScheduleError> {
    if at < now - GRACE {
        return Err(ScheduleError::InPast(at.to_string()));
    }
    if at > now + SignedDuration::from_hours(24 * horizon_days) {
        return Err(ScheduleError::TooFar {
            at: at.to_string(),
            days: horizon_days,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ordinary_local_times() {
        let r = resolve_local("2026-07-01T09:30:00", "America/New_York").unwrap();
        assert_eq!(
            r,
            SendAt {
                at: at("2026-07-01T13:30:00Z"),
                ambiguous: false
            }
        );
        let r = resolve_local("2026-01-15T09:30", "Europe/Berlin").unwrap();
        assert_eq!(r.at, at("2026-01-15T08:30:00Z"));
    }

    #[test]
    fn spring_forward_gap_is_refused() {
        // New York skips 02:00–03:00 on 2026-03-08; Berlin 02:00–03:00 on 2026-03-29.
        for (local, zone) in [
            ("2026-03-08T02:30:00", "America/New_York"),
            ("2026-03-29T02:15:00", "Europe/Berlin"),
        ] {
            let e = resolve_local(local, zone).unwrap_err();
            assert!(
                matches!(e, ScheduleError::NonexistentLocalTime { .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("does not exist"), "{e}");
            assert!(e.to_string().contains("jump forward"), "{e}");
        }
        // Just outside the gap is fine.
        assert!(resolve_local("2026-03-08T01:59:59", "America/New_York").is_ok());
        assert!(resolve_local("2026-03-08T03:00:00", "America/New_York").is_ok());
    }

    #[test]
    fn fall_back_overlap_takes_the_earlier_instant() {
        // 01:30 happens twice in New York on 2026-11-01 (EDT then EST).
        let r = resolve_local("2026-11-01T01:30:00", "America/New_York").unwrap();
        assert_eq!(
            r,
            SendAt {
                at: at("2026-11-01T05:30:00Z"),
                ambiguous: true
            }
        );
        // 02:30 happens twice in Berlin on 2026-10-25 (CEST then CET).
        let r = resolve_local("2026-10-25T02:30:00", "Europe/Berlin").unwrap();
        assert_eq!(
            r,
            SendAt {
                at: at("2026-10-25T00:30:00Z"),
                ambiguous: true
            }
        );
    }

    #[test]
    fn bad_zones_and_times() {
        assert!(matches!(
            resolve_local("2026-07-01T09:30", "Mars/Olympus"),
            Err(ScheduleError::UnknownTimeZone(_))
        ));
        assert!(matches!(
            resolve_local("tomorrow at 9", "Europe/Berlin"),
            Err(ScheduleError::InvalidDateTime(_))
        ));
        assert!(matches!(
            resolve_local("2026-02-30T09:00", "Europe/Berlin"),
            Err(ScheduleError::InvalidDateTime(_))
        ));
    }

    #[test]
    fn window() {
        let now = at("2026-06-01T12:00:00Z");
        assert!(check_window(now, now, 365).is_ok());
        assert!(
            check_window(at("2026-06-01T11:59:56Z"), now, 365).is_ok(),
            "within grace"
        );
        assert!(matches!(
            check_window(at("2026-06-01T11:59:54Z"), now, 365),
            Err(ScheduleError::InPast(_))
        ));
        assert!(check_window(at("2027-06-01T12:00:00Z"), now, 365).is_ok());
        assert!(matches!(
            check_window(at("2027-06-01T12:00:01Z"), now, 365),
            Err(ScheduleError::TooFar { .. })
        ));
    }
}
