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
    /// Not an instant: a protobuf `Timestamp` whose nanoseconds are outside 0 to 999,999,999.
    #[error("send_at has {nanos} nanoseconds; a timestamp's nanos are 0 to 999,999,999")]
    InvalidInstant {
        /// The nanoseconds given.
        nanos: i32,
    },
    /// An instant after anything the calendar holds (past the year 9999).
    #[error("the send time ({seconds} s after 1970-01-01T00:00:00Z) is past the year 9999")]
    BeyondCalendar {
        /// The seconds given.
        seconds: i64,
    },
    /// A send time is needed and none was given (a reschedule).
    #[error("a send time is required: send_at, or send_at_local with its time zone")]
    Required,
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

/// A protobuf `Timestamp`'s fields as an instant. Nanoseconds outside 0 to 999,999,999 are not
/// a timestamp (the protobuf definition says so; a negative count is not "just before"); an
/// instant outside what the calendar holds (before the year −9999 or after 9999) is refused as
/// in the past or too far ahead, which is what it is.
pub fn instant(seconds: i64, nanos: i32) -> Result<Timestamp, ScheduleError> {
    if !(0..=999_999_999).contains(&nanos) {
        return Err(ScheduleError::InvalidInstant { nanos });
    }
    Timestamp::new(seconds, nanos).map_err(|_| {
        if seconds < 0 {
            ScheduleError::InPast(format!("{seconds} s from 1970-01-01T00:00:00Z"))
        } else {
            ScheduleError::BeyondCalendar { seconds }
        }
    })
}

/// Whether the seconds of a local date-time's text are 60: a leap second, which civil time in a
/// zone never names (the parser would quietly take it as :59).
fn names_a_leap_second(date_time: &str) -> bool {
    let Some((_, time)) = date_time.split_once(['T', 't', ' ']) else {
        return false;
    };
    let mut fields = time.splitn(3, ':');
    let (_, _, seconds) = (fields.next(), fields.next(), fields.next());
    seconds.is_some_and(|s| s.get(..2) == Some("60"))
}

/// Resolves a local date-time in an IANA zone to an instant.
pub fn resolve_local(date_time: &str, zone: &str) -> Result<SendAt, ScheduleError> {
    let tz =
        TimeZone::get(zone.trim()).map_err(|_| ScheduleError::UnknownTimeZone(zone.to_owned()))?;
    if names_a_leap_second(date_time.trim()) {
        return Err(ScheduleError::InvalidDateTime(date_time.to_owned()));
    }
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
        // A leap second is not a local time (the parser alone would take it as :59).
        for leap in [
            "2026-07-01T09:00:60",
            "2026-07-01 09:00:60.5",
            "2026-06-30T23:59:60",
        ] {
            assert!(
                matches!(
                    resolve_local(leap, "Europe/Berlin"),
                    Err(ScheduleError::InvalidDateTime(_))
                ),
                "{leap}"
            );
        }
        assert!(resolve_local("2026-07-01T09:00:59", "Europe/Berlin").is_ok());
        assert!(resolve_local("2026-07-01T09:60", "Europe/Berlin").is_err());
    }

    #[test]
    fn instants_from_protobuf_fields() {
        assert_eq!(instant(0, 0).unwrap(), at("1970-01-01T00:00:00Z"));
        assert_eq!(
            instant(1, 999_999_999).unwrap(),
            at("1970-01-01T00:00:01.999999999Z")
        );
        for nanos in [-1, 1_000_000_000, i32::MIN, i32::MAX] {
            assert_eq!(
                instant(1_800_000_000, nanos),
                Err(ScheduleError::InvalidInstant { nanos })
            );
        }
        // The last second of 9999 (protobuf's largest) is beyond what jiff holds: too far.
        assert!(matches!(
            instant(253_402_300_799, 0),
            Err(ScheduleError::BeyondCalendar { .. })
        ));
        assert!(matches!(
            instant(i64::MAX, 0),
            Err(ScheduleError::BeyondCalendar { .. })
        ));
        // Within the calendar, the year 9999 is an instant (too far ahead, said by the window).
        assert!(instant(253_370_764_800, 0).is_ok());
        assert!(matches!(
            instant(i64::MIN, 0),
            Err(ScheduleError::InPast(_))
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
