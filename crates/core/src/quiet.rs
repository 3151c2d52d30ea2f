//! Quiet hours: an organization may send only inside a daily window (08:00–21:00 by default,
//! on chosen days of the week) in the recipient's local time, as US law and carrier codes
//! expect of marketing texts. A message that would go out outside it is held until the window
//! next opens.
//!
//! The recipient's time zone comes from the number, as libphonenumber maps prefixes to zones
//! (`data/timezones.tsv`, written by `scripts/phone-timezones.py`): the country, and for
//! countries with several zones the area code (US, CA) or prefix (AU). **Ambiguous numbers**
//! (an Australian mobile, a North American toll-free number) have several candidate zones: the
//! message goes out only when it is inside the window in all of them; if the candidates never
//! share a moment of the window within a week (toll-free numbers span Guam to Hawaii), the
//! country's main zone decides (New York for +1, Sydney for +61, London for +44, Helsinki for
//! +358).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::PhoneNumber;

/// Why quiet hours cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuietError {
    /// A time that is not `HH:MM` or `HH:MM:SS`.
    #[error("{field} {value:?} is not a time of day (HH:MM)")]
    Time {
        /// `start` or `end`.
        field: &'static str,
        /// As given.
        value: String,
    },
    /// A window that ends before (or when) it starts.
    #[error("the window ends at {end} before it starts at {start}")]
    Backwards {
        /// Its start.
        start: Time,
        /// Its end.
        end: Time,
    },
    /// A day that is not a day of the week.
    #[error("{0} is not a day of the week (mon, tue, wed, thu, fri, sat, sun)")]
    Day(String),
}

/// When an organization may send, in the recipient's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: Time,
    end: Time,
    /// Days on which it may send, Monday first.
    days: [bool; 7],
}

impl Default for Window {
    /// 08:00 to 21:00, every day.
    fn default() -> Self {
        Window {
            start: Time::constant(8, 0, 0, 0),
            end: Time::constant(21, 0, 0, 0),
            days: [true; 7],
        }
    }
}

fn time(field: &'static str, value: &str) -> Result<Time, QuietError> {
    let bad = || QuietError::Time {
        field,
        value: crate::text::quote(value).to_string(),
    };
    let parts: Vec<&str> = value.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let n = |i: usize| {
        parts
            .get(i)
            .map_or(Ok(0), |p| p.parse::<i8>().map_err(|_| bad()))
    };
    Time::new(n(0)?, n(1)?, n(2)?, 0).map_err(|_| bad())
}

fn weekday(name: &str) -> Result<Weekday, QuietError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return Err(QuietError::Day(crate::text::quote(name).to_string())),
    })
}

impl Window {
    /// A window from `start` to `end` (`HH:MM` or `HH:MM:SS`, the end after the start) on
    /// `days` (`mon` … `sun`; every day when empty).
    pub fn new(start: &str, end: &str, days: &[String]) -> Result<Window, QuietError> {
        let start = time("start", start)?;
        let end = time("end", end)?;
        if end <= start {
            return Err(QuietError::Backwards { start, end });
        }
        let mut allowed = [days.is_empty(); 7];
        for d in days {
            allowed[usize::try_from(weekday(d)?.to_monday_zero_offset()).unwrap_or(0)] = true;
        }
        Ok(Window {
            start,
            end,
            days: allowed,
        })
    }

    /// A window from stored parts (no day at all: every day).
    pub fn from_parts(start: Time, end: Time, days: [bool; 7]) -> Result<Window, QuietError> {
        if end <= start {
            return Err(QuietError::Backwards { start, end });
        }
        let days = if days.iter().any(|d| *d) {
            days
        } else {
            [true; 7]
        };
        Ok(Window { start, end, days })
    }

    /// Which days it is open, Monday first.
    pub fn day_mask(&self) -> [bool; 7] {
        self.days
    }

    /// Its start.
    pub fn start(&self) -> Time {
        self.start
    }

    /// Its end.
    pub fn end(&self) -> Time {
        self.end
    }

    /// Its days, as names (`mon` …).
    pub fn days(&self) -> Vec<&'static str> {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .into_iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| d)
            .collect()
    }

    /// Whether `at` is inside the window in `tz`.
    pub fn open_at(&self, at: Timestamp, tz: &TimeZone) -> bool {
        let local = at.to_zoned_datetime(tz.clone());
        let day = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
        let t = local.time();
        self.days[day] && t >= self.start && t < self.end
    }

    /// When the window next opens in `tz` at or after `at` (its start on an allowed day),
    /// within a week.
    fn openings(&self, at: Timestamp, tz: &TimeZone) -> Vec<Timestamp> {
        let today = at.to_zoned_datetime(tz.clone()).date();
        (0..8)
            .filter_map(|d| today.checked_add(d.days()).ok())
            .filter(|date| {
                self.days[usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0)]
            })
            // A start in a DST gap moves later, to the first moment that exists.
            .filter_map(|date| {
                date.to_datetime(self.start)
                    .to_zoned_datetime(tz.clone())
                    .ok()
            })
            .map(|z| z.timestamp())
            .filter(|t| *t >= at)
            .collect()
    }

    /// When a message to a recipient in `zones` may go out, asked at `at`: `None` when now is
    /// fine, otherwise the first moment inside the window in every zone (see the module's
    /// rule for ambiguous numbers; `fallback` is the country's main zone).
    pub fn release(
        &self,
        at: Timestamp,
        zones: &[TimeZone],
        fallback: &TimeZone,
    ) -> Option<Timestamp> {
        let zones: &[TimeZone] = if zones.is_empty() {
            std::slice::from_ref(fallback)
        } else {
            zones
        };
        let open_in_all = |t: Timestamp| zones.iter().all(|z| self.open_at(t, z));
        if open_in_all(at) {
            return None;
        }
        let mut candidates: Vec<Timestamp> =
            zones.iter().flat_map(|z| self.openings(at, z)).collect();
        candidates.sort_unstable();
        if let Some(t) = candidates.into_iter().find(|t| open_in_all(*t)) {
            return Some(t);
        }
        // The candidate zones never share a moment of the window: the country's main zone.
        if self.open_at(at, fallback) {
            return None;
        }
        self.openings(at, fallback).into_iter().next()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}–{} on {}",
            self.start,
            self.end,
            self.days().join(",")
        )
    }
}

/// Prefix → zones, from `data/timezones.tsv`.
fn table() -> &'static HashMap<&'static str, Vec<&'static str>> {
    static TABLE: OnceLock<HashMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("data/timezones.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .map(|(prefix, zones)| (prefix, zones.split(' ').collect()))
            .collect()
    })
}

/// The IANA zones a number may be in, and its country's main zone. As libphonenumber does: a
/// geographic number (fixed line, or fixed line or mobile as in North America) by the longest
/// prefix it knows; any other (a mobile elsewhere, toll-free) by its country alone.
pub fn zones_of(number: &PhoneNumber) -> (Vec<TimeZone>, TimeZone) {
    let digits = number.e164().trim_start_matches('+');
    let code = number.calling_code().to_string();
    let table = table();
    let geographic = matches!(
        number.number_type(),
        crate::NumberType::FixedLine | crate::NumberType::FixedLineOrMobile
    );
    let names = if geographic {
        (1..=digits.len())
            .rev()
            .find_map(|n| table.get(&digits[..n]))
            .cloned()
    } else {
        table.get(code.as_str()).cloned()
    }
    .unwrap_or_default();
    let zones = names
        .iter()
        .filter_map(|name| TimeZone::get(name).ok())
        .collect();
    let main = match number.calling_code() {
        1 => "America/New_York",
        61 => "Australia/Sydney",
        44 => "Europe/London",
        358 => "Europe/Helsinki",
        _ => names.first().copied().unwrap_or("UTC"),
    };
    (zones, TimeZone::get(main).unwrap_or(TimeZone::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> PhoneNumber {
        PhoneNumber::parse_valid(n, None).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn release(window: &Window, n: &str, when: &str) -> Option<Timestamp> {
        let (zones, main) = zones_of(&number(n));
        window.release(at(when), &zones, &main)
    }

    #[test]
    fn zones_come_from_the_number() {
        let names = |n: &str| {
            zones_of(&number(n))
                .0
                .iter()
                .map(|z| z.iana_name().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("+12015550123"), ["America/New_York"]);
        assert_eq!(names("+13105550123"), ["America/Los_Angeles"]);
        assert_eq!(names("+61298765432"), ["Australia/Sydney"]);
        assert_eq!(names("+4915112345678"), ["Europe/Berlin"]);
        assert!(
            names("+61412345678").len() > 1,
            "an Australian mobile is ambiguous"
        );
    }

    #[test]
    fn new_york_los_angeles_and_sydney_are_held_until_their_own_morning() {
        let w = Window::default();
        // 22:30 in New York on a Tuesday (EST, UTC−5) is 19:30 in Los Angeles.
        let when = "2026-12-08T03:30:00Z";
        assert_eq!(
            release(&w, "+12015550123", when),
            Some(at("2026-12-08T13:00:00Z")),
            "New York: 08:00 EST next morning"
        );
        assert_eq!(release(&w, "+13105550123", when), None, "LA: still evening");
        // Sydney (AEDT, UTC+11) at 14:30 local: open.
        assert_eq!(release(&w, "+61298765432", when), None);
        // Sydney at 05:00 local (18:00 UTC the day before): held until 08:00 local.
        assert_eq!(
            release(&w, "+61298765432", "2026-12-07T18:00:00Z"),
            Some(at("2026-12-07T21:00:00Z"))
        );
    }

    #[test]
    fn dst_changes_move_the_window_with_the_clock() {
        let w = Window::default();
        // New York springs forward on 2027-03-14: 08:00 EDT is 12:00 UTC that day, 13:00 UTC
        // the day before.
        assert_eq!(
            release(&w, "+12015550123", "2027-03-14T04:00:00Z"),
            Some(at("2027-03-14T12:00:00Z"))
        );
        assert_eq!(
            release(&w, "+12015550123", "2027-03-13T04:00:00Z"),
            Some(at("2027-03-13T13:00:00Z"))
        );
        // Sydney falls back on 2027-04-04 (AEDT UTC+11 → AEST UTC+10).
        assert_eq!(
            release(&w, "+61298765432", "2027-04-04T18:00:00Z"),
            Some(at("2027-04-04T22:00:00Z"))
        );
    }

    #[test]
    fn days_of_the_week_are_honoured() {
        let weekdays: Vec<String> = ["mon", "tue", "wed", "thu", "fri"]
            .map(String::from)
            .to_vec();
        let w = Window::new("09:00", "17:30", &weekdays).unwrap();
        // Saturday 2026-12-12, 10:00 in New York: held until Monday 09:00.
        assert_eq!(
            release(&w, "+12015550123", "2026-12-12T15:00:00Z"),
            Some(at("2026-12-14T14:00:00Z"))
        );
        assert_eq!(w.days(), ["mon", "tue", "wed", "thu", "fri"]);
    }

    #[test]
    fn an_ambiguous_number_waits_for_a_moment_open_in_all_its_zones() {
        let w = Window::default();
        // An Australian mobile may be anywhere libphonenumber puts Australia: the Cocos
        // Islands (UTC+6:30) to Lord Howe (UTC+11 in summer). At 21:30 UTC it is 08:30 in
        // Sydney but 03:00 on Cocos: held until 08:00 there (01:30 UTC), 12:30 on Lord Howe.
        let released = release(&w, "+61412345678", "2026-12-07T21:30:00Z").unwrap();
        assert_eq!(released, at("2026-12-08T01:30:00Z"));
        // North American toll-free may be anywhere from Guam (UTC+10) to Pago Pago (UTC−11):
        // the first moment all are between 08:00 and 21:00 is 22:00 UTC (08:00 on Guam).
        assert_eq!(
            release(&w, "+18005550199", "2026-12-08T03:30:00Z"),
            Some(at("2026-12-08T22:00:00Z"))
        );
        // A narrower window never opens everywhere at once: New York's decides.
        let none: Vec<String> = Vec::new();
        let narrow = Window::new("09:00", "12:00", &none).unwrap();
        assert_eq!(
            release(&narrow, "+18005550199", "2026-12-08T03:30:00Z"),
            Some(at("2026-12-08T14:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_are_refused_with_the_field() {
        let none: Vec<String> = Vec::new();
        assert!(matches!(
            Window::new("21:00", "08:00", &none),
            Err(QuietError::Backwards { .. })
        ));
        assert!(matches!(
            Window::new("8am", "21:00", &none),
            Err(QuietError::Time { field: "start", .. })
        ));
        assert!(matches!(
            Window::new("08:00", "25:00", &none),
            Err(QuietError::Time { field: "end", .. })
        ));
        assert!(matches!(
            Window::new("08:00", "21:00", &["someday".to_owned()]),
            Err(QuietError::Day(_))
        ));
        assert!(Window::new("08:00:30", "21:00", &none).is_ok());
    }
}
