//! Twilio error codes in our words: the reasons of the error catalogue (sms-core).

use sms_core::Reason;

/// Our reason for a Twilio error code; unknown codes are `unknown_carrier_error`.
pub fn reason(code: u32) -> Reason {
    match code {
        21610 => Reason::OptedOut,
        30006 | 21614 | 21635 => Reason::NotSmsCapable,
        30007 => Reason::FilteredAsSpam,
        30003 => Reason::Unreachable,
        30005 => Reason::UnknownDestination,
        30004 => Reason::Blocked,
        30001 | 21611 => Reason::QueueOverflow,
        20429 | 30022 | 30027 => Reason::RateLimited,
        21211 => Reason::InvalidRecipient,
        21606 | 21212 | 21659 => Reason::InvalidSender,
        21408 | 21612 => Reason::RegionNotEnabled,
        30002 | 30034 | 20003 => Reason::AccountProblem,
        30036 => Reason::Expired,
        30019 | 12300 | 21620 | 11751 => Reason::MediaRejected,
        _ => Reason::UnknownCarrierError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_codes_map_to_reasons() {
        let table = [
            (21610, Reason::OptedOut, false),
            (30006, Reason::NotSmsCapable, false),
            (21614, Reason::NotSmsCapable, false),
            (21635, Reason::NotSmsCapable, false),
            (30007, Reason::FilteredAsSpam, false),
            (30003, Reason::Unreachable, true),
            (30005, Reason::UnknownDestination, false),
            (30008, Reason::UnknownCarrierError, true),
            (30001, Reason::QueueOverflow, true),
            (30004, Reason::Blocked, false),
            (20429, Reason::RateLimited, true),
            (12345, Reason::UnknownCarrierError, true),
        ];
        for (code, expected, retryable) in table {
            assert_eq!(reason(code), expected, "{code}");
            assert_eq!(expected.is_retryable(), retryable, "{code}");
        }
    }
}
