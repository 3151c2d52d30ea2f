//! What the dispatcher decides without I/O: the composer's rules checked again on a message
//! as it came over the bus, how long it stays valid, and how long to wait before a retry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sms_core::PhoneNumber;
use sms_core::Reason;
use sms_proto::events::v1::OutboundMessage;
use sms_runtime::backoff::Backoff;

/// How long to wait before carrier call `attempt` (2 for the first retry) after a failure that
/// sent nothing, by its class: the carrier's own `Retry-After` when it gave one; otherwise full
/// jitter under a ceiling that doubles per attempt, from 2 s (at most a minute) when the
/// carrier is throttling us, 1 s (at most 30 s) when it is down or unreachable, and 5 s (at most
/// 5 minutes) for anything else it says may pass.
pub fn carrier_retry_delay(
    reason: Reason,
    attempt: i32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(Duration::from_secs(300));
    }
    let backoff = match reason {
        Reason::RateLimited | Reason::QueueOverflow => {
            Backoff::new(Duration::from_secs(2), Duration::from_secs(60))
        }
        Reason::CarrierUnavailable => Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        _ => Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
    };
    backoff.delay(u32::try_from(attempt.saturating_sub(1)).unwrap_or(0))
}

/// Until when a message may be handed to the carrier: what the composer set, or its validity
/// (Twilio's longest when none was asked for) from when it fell due (or now).
pub(crate) fn valid_until(m: &OutboundMessage, due: Option<i64>) -> DateTime<Utc> {
    let from_event = m
        .valid_until
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
    from_event.unwrap_or_else(|| {
        let start = due.unwrap_or_else(|| Utc::now().timestamp());
        let validity = match m.validity_seconds {
            0 => sms_core::DEFAULT_VALIDITY_SECS,
            s => i64::from(s),
        };
        DateTime::from_timestamp(start + validity, 0).unwrap_or_else(Utc::now)
    })
}

/// What is left of a message's validity, as the carrier's `ValidityPeriod` (1 to 36,000 s):
/// a message the carrier cannot deliver by then is dropped by the carrier, not delivered late.
pub(crate) fn validity_left(valid_until: DateTime<Utc>) -> u32 {
    let left = (valid_until - Utc::now()).num_seconds();
    u32::try_from(left.clamp(1, i64::from(sms_core::MAX_VALIDITY_SECS))).unwrap_or(1)
}

/// Why a message as it came over the bus must not be sent, if it must not: the composer's
/// rules (valid numbers in the same calling code, a recipient that takes SMS, a body of the
/// right length and characters), checked again with the same functions.
pub(crate) fn invalid(m: &OutboundMessage) -> Option<(Reason, String)> {
    let from = match PhoneNumber::parse_valid(&m.from, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidSender, e.to_string())),
    };
    let to = match PhoneNumber::parse_valid(&m.to, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidRecipient, e.to_string())),
    };
    if !to.sms_supported() {
        return Some((
            Reason::InvalidRecipient,
            format!("{} does not take SMS here", to.e164()),
        ));
    }
    if !sms_core::phone::same_calling_code(&from, &to) {
        return Some((
            Reason::InvalidRecipient,
            format!(
                "{} and {} are in different countries",
                from.e164(),
                to.e164()
            ),
        ));
    }
    if let Err(e) = sms_core::text::check("body", &m.body, usize::MAX, sms_core::text::Lines::Multi)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    if m.media_urls.len() > sms_core::mms::MAX_ATTACHMENTS {
        return Some((
            Reason::InvalidMessage,
            format!("{} attachments", m.media_urls.len()),
        ));
    }
    if (m.media_urls.is_empty() || !m.body.trim().is_empty())
        && let Err(e) = sms_core::validate_body(&m.body)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_again() {
        let good = OutboundMessage {
            from: "+12015550100".into(),
            to: "+12015550123".into(),
            body: "hi".into(),
            ..Default::default()
        };
        assert_eq!(invalid(&good), None);
        let cases = [
            (
                OutboundMessage {
                    to: "+447400123456".into(),
                    ..good.clone()
                },
                Reason::InvalidRecipient,
            ),
            (
                OutboundMessage {
                    from: "garbage".into(),
                    ..good.clone()
                },
                Reason::InvalidSender,
            ),
            (
                OutboundMessage {
                    body: "a\0b".into(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: "x".repeat(1001),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: String::new(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
        ];
        for (m, reason) in cases {
            assert_eq!(invalid(&m).map(|(r, _)| r), Some(reason), "{m:?}");
        }
    }

    #[test]
    fn retries_back_off_by_class_with_full_jitter() {
        let sample = |reason, attempt| {
            (0..500)
                .map(|_| carrier_retry_delay(reason, attempt, None))
                .collect::<Vec<_>>()
        };
        // Throttled: the first retry within 2 s, later ones capped at a minute.
        let first = sample(Reason::RateLimited, 2);
        assert!(first.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(first.iter().any(|d| *d < Duration::from_secs(1)));
        let late = sample(Reason::RateLimited, 30);
        assert!(late.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(late.iter().any(|d| *d > Duration::from_secs(30)));
        // The carrier down: capped at 30 s; anything else: at 5 minutes.
        assert!(
            sample(Reason::CarrierUnavailable, 30)
                .iter()
                .all(|d| *d <= Duration::from_secs(30))
        );
        assert!(
            sample(Reason::Unreachable, 30)
                .iter()
                .any(|d| *d > Duration::from_secs(60))
        );
        // The carrier's own word wins.
        assert_eq!(
            carrier_retry_delay(Reason::RateLimited, 2, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
