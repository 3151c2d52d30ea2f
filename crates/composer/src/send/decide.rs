//! Deciding a send: one pure function over the facts gathered for it (the checked sender and
//! its route, the contact's opt-out, the organization's settings, a quiet-hours hold, the
//! time) that accepts it (now, later or held) or refuses it with a reason. No I/O: the send
//! path gathers, calls [`decide`], then persists what it decided.

use chrono::{DateTime, Utc};
use sms_core::{PhoneNumber, Status};

use crate::error::SendError;
use crate::settings::{Hold, Settings};
use crate::store::settings::{DayCount, day_of};

/// What a send is decided on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The organization.
    pub organization_id: &'a str,
    /// The recipient.
    pub to: &'a PhoneNumber,
    /// The sender, already found and checked as the organization's and the user's.
    pub sender: &'a PhoneNumber,
    /// Whether the sender can send MMS.
    pub sender_mms_capable: bool,
    /// The connection it sends through when that one is text only (SMPP).
    pub text_only: Option<String>,
    /// Whether the message has attachments.
    pub attachments: bool,
    /// The body's segments.
    pub segments: u32,
    /// Whether the contact opted out of the organization's messages.
    pub opted_out: bool,
    /// The organization's settings.
    pub settings: Settings,
    /// When quiet hours hold it, if they do (at `send_at`, or now).
    pub hold: Option<Hold>,
    /// The send time asked for (`None`: now).
    pub send_at: Option<DateTime<Utc>>,
    /// Now.
    pub now: DateTime<Utc>,
    /// Its validity, and whether the caller asked for it.
    pub validity_seconds: u32,
    /// See [`Facts::validity_seconds`].
    pub validity_given: bool,
}

/// A send accepted: how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// When it goes (`None`: now).
    pub send_at: Option<DateTime<Utc>>,
    /// Why and from when quiet hours hold it, when they do.
    pub held: Option<Held>,
    /// What the caller is told.
    pub notes: Vec<String>,
    /// The segments it adds to its day, counted only under a cap.
    pub count: Option<DayCount>,
}

impl Accepted {
    /// `accepted` (goes now) or `scheduled` (later, or held).
    pub fn status(&self) -> Status {
        if self.send_at.is_some() {
            Status::Scheduled
        } else {
            Status::Accepted
        }
    }
}

/// A message quiet hours hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// When it was due before the hold.
    pub from: DateTime<Utc>,
    /// The hold's note, recorded in the history.
    pub note: String,
}

/// A send refused.
#[derive(Debug)]
pub enum Refused {
    /// By a rule, with its reason.
    Rule(SendError),
    /// Over the daily cap on its own: the caller is told the day's count, which is read.
    OverCap {
        /// The cap.
        cap: i64,
        /// What it would add to its day.
        count: DayCount,
    },
}

impl From<SendError> for Refused {
    fn from(e: SendError) -> Self {
        Refused::Rule(e)
    }
}

/// Accepts or refuses a send, in the order the caller is told of the first reason: an MMS
/// its sender or route cannot carry, an opted-out contact, then quiet hours and the daily cap.
pub fn decide(f: Facts<'_>) -> Result<Accepted, Refused> {
    if f.attachments {
        if !f.sender_mms_capable {
            return Err(SendError::SenderNotMmsCapable(f.sender.e164().to_owned()).into());
        }
        if let Some(connection) = f.text_only {
            return Err(SendError::TextOnlyCarrier {
                number: f.sender.e164().to_owned(),
                connection,
            }
            .into());
        }
        sms_core::mms::check_route(f.sender, f.to).map_err(SendError::from)?;
    }
    if f.opted_out {
        return Err(SendError::OptedOut(f.to.e164().to_owned()).into());
    }
    let mut notes = Vec::new();
    // When it was due before quiet hours held it.
    let due = f.send_at.unwrap_or(f.now);
    let send_at = match &f.hold {
        Some(h) => {
            notes.push(h.note.clone());
            let ends = due + chrono::Duration::seconds(i64::from(f.validity_seconds));
            if f.validity_given && ends < h.until {
                notes.push(format!(
                    "its validity ({} s from {}) ends before the window opens: it will fail as \
                     expired",
                    f.validity_seconds,
                    due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            Some(h.until)
        }
        None => f.send_at,
    };
    let segments = i64::from(f.segments);
    let count = DayCount {
        organization_id: f.organization_id.to_owned(),
        day: day_of(send_at.unwrap_or(f.now)),
        segments,
        cap: f.settings.daily_segment_cap,
    };
    if let Some(cap) = f.settings.daily_segment_cap
        && segments > cap
    {
        return Err(Refused::OverCap { cap, count });
    }
    Ok(Accepted {
        send_at,
        held: f.hold.map(|h| Held {
            from: due,
            note: h.note,
        }),
        notes,
        count: f.settings.daily_segment_cap.map(|_| count),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> PhoneNumber {
        PhoneNumber::parse_valid(n, None).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The sender of most cases.
    static SENDER: std::sync::LazyLock<PhoneNumber> =
        std::sync::LazyLock::new(|| number("+12015550100"));

    fn facts<'a>(to: &'a PhoneNumber) -> Facts<'a> {
        Facts {
            organization_id: "org",
            to,
            sender: &SENDER,
            sender_mms_capable: true,
            text_only: None,
            attachments: false,
            segments: 2,
            opted_out: false,
            settings: Settings::default(),
            hold: None,
            send_at: None,
            now: at("2026-12-07T15:00:00Z"),
            validity_seconds: 14_400,
            validity_given: false,
        }
    }

    fn refused(r: Result<Accepted, Refused>) -> &'static str {
        match r {
            Err(Refused::Rule(e)) => e.reason(),
            Err(Refused::OverCap { .. }) => "OVER_CAP",
            Ok(a) => panic!("accepted: {a:?}"),
        }
    }

    #[test]
    fn a_message_goes_now_or_at_its_time_uncounted_without_a_cap() {
        let to = number("+12015550123");
        let now = decide(facts(&to)).unwrap();
        assert_eq!(now.status(), Status::Accepted);
        assert_eq!((now.send_at, now.held, now.count), (None, None, None));
        assert!(now.notes.is_empty());
        let later = at("2026-12-08T15:00:00Z");
        let scheduled = decide(Facts {
            send_at: Some(later),
            ..facts(&to)
        })
        .unwrap();
        assert_eq!(scheduled.status(), Status::Scheduled);
        assert_eq!(scheduled.send_at, Some(later));
    }

    #[test]
    fn an_mms_needs_a_capable_sender_a_route_that_carries_it_and_a_country_that_takes_it() {
        let to = number("+12015550123");
        fn mms(f: Facts<'_>) -> Facts<'_> {
            Facts {
                attachments: true,
                ..f
            }
        }
        assert!(decide(mms(facts(&to))).is_ok());
        assert_eq!(
            refused(decide(Facts {
                sender_mms_capable: false,
                ..mms(facts(&to))
            })),
            "SENDER_NOT_MMS_CAPABLE"
        );
        assert_eq!(
            refused(decide(Facts {
                text_only: Some("smpp".into()),
                ..mms(facts(&to))
            })),
            "SENDER_NOT_MMS_CAPABLE"
        );
        let uk = number("+447911123456");
        let uk_sender = number("+447911123400");
        assert_eq!(
            refused(decide(Facts {
                sender: &uk_sender,
                ..mms(facts(&uk))
            })),
            "MMS_COUNTRY_NOT_SUPPORTED"
        );
        // A text from the same senders is not an MMS: none of this applies.
        assert!(
            decide(Facts {
                sender_mms_capable: false,
                text_only: Some("smpp".into()),
                ..facts(&to)
            })
            .is_ok()
        );
    }

    #[test]
    fn an_opted_out_contact_is_refused() {
        let to = number("+12015550123");
        assert_eq!(
            refused(decide(Facts {
                opted_out: true,
                ..facts(&to)
            })),
            "OPTED_OUT"
        );
    }

    #[test]
    fn quiet_hours_hold_it_until_the_window_opens_and_say_when_its_validity_cannot_last() {
        let to = number("+12015550123");
        let until = at("2026-12-08T13:00:00Z");
        let hold = Hold {
            until,
            note: "held for quiet hours".into(),
        };
        let held = decide(Facts {
            hold: Some(hold.clone()),
            ..facts(&to)
        })
        .unwrap();
        assert_eq!(held.status(), Status::Scheduled);
        assert_eq!(held.send_at, Some(until));
        assert_eq!(
            held.held,
            Some(Held {
                from: at("2026-12-07T15:00:00Z"),
                note: "held for quiet hours".into()
            })
        );
        assert_eq!(held.notes, vec!["held for quiet hours".to_owned()]);
        // The default validity does not run while held; one the caller asked for does.
        let short = decide(Facts {
            hold: Some(hold),
            validity_seconds: 3_600,
            validity_given: true,
            ..facts(&to)
        })
        .unwrap();
        assert_eq!(short.notes.len(), 2);
        assert!(
            short.notes[1].contains("fail as expired"),
            "{:?}",
            short.notes
        );
    }

    #[test]
    fn the_daily_cap_counts_a_message_on_its_send_day_and_refuses_one_larger_than_the_cap() {
        let to = number("+12015550123");
        let capped = |cap| Settings {
            daily_segment_cap: Some(cap),
            ..Settings::default()
        };
        let later = at("2026-12-09T10:00:00Z");
        let counted = decide(Facts {
            settings: capped(2),
            send_at: Some(later),
            ..facts(&to)
        })
        .unwrap();
        let count = counted.count.unwrap();
        assert_eq!((count.segments, count.cap), (2, Some(2)));
        assert_eq!(count.day, day_of(later));
        match decide(Facts {
            settings: capped(1),
            ..facts(&to)
        }) {
            Err(Refused::OverCap { cap, count }) => assert_eq!((cap, count.segments), (1, 2)),
            other => panic!("{other:?}"),
        }
    }
}
