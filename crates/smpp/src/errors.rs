//! Error codes in our words: a receipt's `err:` (most SMSCs quote the GSM MAP error of
//! 3GPP TS 29.002, some their own codes, configured per connection) and the `command_status`
//! of a refused `submit_sm` (SMPP 3.4, 5.1.3).

use std::collections::HashMap;

use sms_core::Reason;

/// A receipt's error codes in our words: GSM MAP's by default, with a connection's own codes
/// over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorMap {
    own: HashMap<String, Reason>,
}

/// Why an error map's setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error map entry {entry}: {why}")]
pub struct ErrorMapError {
    /// The entry, quoted.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

impl ErrorMap {
    /// A connection's own codes, as its setting spells them: `code=reason` pairs separated by
    /// commas (`069=filtered_as_spam,0x45=blocked`); codes in decimal, or hex with `0x`.
    pub fn parse(setting: &str) -> Result<ErrorMap, ErrorMapError> {
        let mut own = HashMap::new();
        for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let refuse = |why: String| ErrorMapError {
                entry: sms_core::text::quote(entry),
                why,
            };
            let (code, reason) = entry
                .split_once('=')
                .ok_or_else(|| refuse("not code=reason".into()))?;
            let code =
                canonical(code.trim()).ok_or_else(|| refuse("the code is not a number".into()))?;
            let reason = Reason::parse(reason.trim()).ok_or_else(|| {
                refuse(format!(
                    "no reason is called {}",
                    sms_core::text::quote(reason.trim())
                ))
            })?;
            own.insert(code, reason);
        }
        Ok(ErrorMap { own })
    }

    /// Our reason for a receipt's error code (as [`crate::Receipt::error`] gives it).
    pub fn reason(&self, code: &str) -> Reason {
        let Some(code) = canonical(code) else {
            return Reason::UnknownCarrierError;
        };
        if let Some(reason) = self.own.get(&code) {
            return *reason;
        }
        match code.parse::<u32>() {
            // unknownSubscriber, unidentifiedSubscriber, illegalSubscriber
            Ok(1 | 5 | 9) => Reason::UnknownDestination,
            // absentSubscriberSM, absentSubscriber, subscriberBusyForMT-SMS
            Ok(6 | 27 | 31) => Reason::Unreachable,
            // teleserviceNotProvisioned (no SMS: a landline), illegalEquipment,
            // facilityNotSupported
            Ok(11 | 12 | 21) => Reason::NotSmsCapable,
            // callBarred
            Ok(13) => Reason::Blocked,
            // messageWaitingListFull
            Ok(33) => Reason::QueueOverflow,
            _ => Reason::UnknownCarrierError,
        }
    }
}

/// A code without leading zeros, in decimal (`0x45` → `69`, `069` → `69`).
fn canonical(code: &str) -> Option<String> {
    let value = match code.strip_prefix("0x").or_else(|| code.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => code.parse::<u32>().ok()?,
    };
    Some(value.to_string())
}

/// Our reason for a `submit_sm_resp` (or `generic_nack`) error status, with whether it is
/// throttling (slow the connection down, fail nothing).
pub fn submit_status(command_status: u32) -> SubmitRefusal {
    use SubmitRefusal::*;
    match command_status {
        // ESME_RTHROTTLED, ESME_RMSGQFUL
        0x58 => Throttled(Reason::RateLimited),
        0x14 => Throttled(Reason::QueueOverflow),
        // ESME_RSYSERR: the SMSC's own trouble
        0x08 => Retryable(Reason::CarrierUnavailable),
        // ESME_RINVSRCADR, ESME_RINVSRCTON, ESME_RINVSRCNPI
        0x0A | 0x48 | 0x49 => Permanent(Reason::InvalidSender),
        // ESME_RINVDSTADR, ESME_RINVDSTTON, ESME_RINVDSTNPI
        0x0B | 0x50 | 0x51 => Permanent(Reason::InvalidRecipient),
        // ESME_RINVEXPIRY
        0x62 => Permanent(Reason::Expired),
        // ESME_RSUBMITFAIL: the SMSC could not take it now
        0x45 => Retryable(Reason::UnknownCarrierError),
        // ESME_RINVBNDSTS, ESME_RBINDFAIL, ESME_RINVPASWD, ESME_RINVSYSID
        0x04 | 0x0D | 0x0E | 0x0F => Retryable(Reason::AccountProblem),
        // The rest (bad message length, data coding, esm_class, TLVs, …): this message, as we
        // built it, is not one the SMSC takes.
        _ => Permanent(Reason::UnknownCarrierError),
    }
}

/// What a refused `submit_sm` means for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitRefusal {
    /// The SMSC asks us to slow down: nothing failed, nothing counted as an attempt.
    Throttled(Reason),
    /// Nothing was taken; trying again may work (counted as an attempt).
    Retryable(Reason),
    /// Will not be taken.
    Permanent(Reason),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_errors_and_a_connections_own_codes() {
        let map = ErrorMap::parse("069=filtered_as_spam, 0x46=blocked,").unwrap();
        assert_eq!(map.reason("069"), Reason::FilteredAsSpam);
        assert_eq!(map.reason("69"), Reason::FilteredAsSpam);
        assert_eq!(map.reason("70"), Reason::Blocked);
        assert_eq!(map.reason("011"), Reason::NotSmsCapable);
        assert_eq!(map.reason("1"), Reason::UnknownDestination);
        assert_eq!(map.reason("27"), Reason::Unreachable);
        assert_eq!(map.reason("999"), Reason::UnknownCarrierError);
        assert_eq!(map.reason("x1"), Reason::UnknownCarrierError);
        assert_eq!(
            ErrorMap::default().reason("069"),
            Reason::UnknownCarrierError
        );
    }

    #[test]
    fn a_bad_error_map_is_refused_by_entry() {
        let e = ErrorMap::parse("69=spam").unwrap_err();
        assert!(
            e.to_string().contains("69=spam") && e.why.contains("spam"),
            "{e}"
        );
        assert!(ErrorMap::parse("sixty=blocked").is_err());
        assert!(ErrorMap::parse("69").is_err());
        assert!(ErrorMap::parse("0xZZ=blocked").is_err());
        assert_eq!(ErrorMap::parse("").unwrap(), ErrorMap::default());
    }

    #[test]
    fn throttling_is_told_apart() {
        assert_eq!(
            submit_status(0x58),
            SubmitRefusal::Throttled(Reason::RateLimited)
        );
        assert_eq!(
            submit_status(0x14),
            SubmitRefusal::Throttled(Reason::QueueOverflow)
        );
        assert_eq!(
            submit_status(0x0B),
            SubmitRefusal::Permanent(Reason::InvalidRecipient)
        );
        assert_eq!(
            submit_status(0x08),
            SubmitRefusal::Retryable(Reason::CarrierUnavailable)
        );
        assert_eq!(
            submit_status(0x401),
            SubmitRefusal::Permanent(Reason::UnknownCarrierError)
        );
    }
}
