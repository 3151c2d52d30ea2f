//! Message ids as an SMSC gives them (`submit_sm_resp`) and quotes them (a receipt's `id:` or
//! its `receipted_message_id`), which are often not the same text: one SMSC answers in hex and
//! quotes in decimal, another pads with zeros or changes the case.
//!
//! Two ids match, in this order of preference:
//! 1. **the same text**, ignoring ASCII case and leading zeros (`0A1b` and `a1B`);
//! 2. **hex answered, decimal quoted**: the answered id read as hexadecimal is the quoted one
//!    read as decimal (`1F` and `31`);
//! 3. **decimal answered, hex quoted**: the reverse.
//!
//! A receipt is matched to the best kind of match among the messages of its connection; the
//! store keeps every id's [`IdForms`] so that each kind is one indexed lookup. Ids longer than
//! 32 hex digits (38 decimal) match only as text.

use std::fmt;

/// Longest id we take (SMPP 3.4 gives `message_id` 65 octets with its NUL).
pub const MAX_ID_LEN: usize = 64;

/// A message id from an SMSC: 1 to 64 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmscId(String);

/// Why a message id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing there.
    #[error("the message id is empty")]
    Empty,
    /// Longer than [`MAX_ID_LEN`].
    #[error("the message id has {0} characters (at most {MAX_ID_LEN})")]
    TooLong(usize),
    /// A space, a control character or one that is not ASCII.
    #[error("the message id {0} holds a character an id may not")]
    BadCharacter(String),
}

/// How a quoted id matched an answered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdMatch {
    /// The same text (case and leading zeros aside).
    Same,
    /// Answered in hexadecimal, quoted in decimal.
    HexAsDecimal,
    /// Answered in decimal, quoted in hexadecimal.
    DecimalAsHex,
}

/// The forms an id is looked up by: its text, and its value read in either base (`None` when
/// it is not a number in that base, or too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdForms {
    /// ASCII lowercase, without leading zeros (`"0"` for all zeros).
    pub text: String,
    /// Its value read as hexadecimal, in decimal digits.
    pub hex_value: Option<String>,
    /// Its value read as decimal, in decimal digits.
    pub decimal_value: Option<String>,
}

impl SmscId {
    /// An id as it came in a PDU.
    pub fn parse(s: &str) -> Result<SmscId, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let len = s.chars().count();
        if len > MAX_ID_LEN {
            return Err(IdError::TooLong(len));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::BadCharacter(sms_core::text::quote(s)));
        }
        Ok(SmscId(s.to_owned()))
    }

    /// The id as the SMSC wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The forms it is stored and looked up by.
    pub fn forms(&self) -> IdForms {
        IdForms {
            text: normalized(&self.0),
            hex_value: value(&self.0, 16).map(|v| v.to_string()),
            decimal_value: value(&self.0, 10).map(|v| v.to_string()),
        }
    }

    /// How `quoted` (from a receipt) names this id (from `submit_sm_resp`), if it does.
    pub fn matched_by(&self, quoted: &SmscId) -> Option<IdMatch> {
        let (ours, theirs) = (self.forms(), quoted.forms());
        if ours.text == theirs.text {
            Some(IdMatch::Same)
        } else if ours.hex_value.is_some() && ours.hex_value == theirs.decimal_value {
            Some(IdMatch::HexAsDecimal)
        } else if ours.decimal_value.is_some() && ours.decimal_value == theirs.hex_value {
            Some(IdMatch::DecimalAsHex)
        } else {
            None
        }
    }
}

impl From<u64> for SmscId {
    /// The number in decimal: always an id.
    fn from(n: u64) -> SmscId {
        SmscId(n.to_string())
    }
}

impl fmt::Display for SmscId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn normalized(s: &str) -> String {
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_ascii_lowercase()
    }
}

/// `s` as a number in `radix`, when every character is a digit of it and it fits in 128 bits.
fn value(s: &str, radix: u32) -> Option<u128> {
    if !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u128::from_str_radix(s, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SmscId {
        SmscId::parse(s).unwrap()
    }

    #[test]
    fn every_form_an_smsc_quotes_matches_its_answer() {
        // Answered in hex, quoted in hex, decimal, zero-padded, other case.
        let answered = id("6B3A9F2C");
        assert_eq!(answered.matched_by(&id("6B3A9F2C")), Some(IdMatch::Same));
        assert_eq!(answered.matched_by(&id("6b3a9f2c")), Some(IdMatch::Same));
        assert_eq!(answered.matched_by(&id("006B3A9F2C")), Some(IdMatch::Same));
        assert_eq!(
            answered.matched_by(&id(&0x6B3A_9F2C_u64.to_string())),
            Some(IdMatch::HexAsDecimal)
        );
        assert_eq!(
            answered.matched_by(&id(&format!("{:020}", 0x6B3A_9F2C_u64))),
            Some(IdMatch::HexAsDecimal)
        );
        // Answered in decimal, quoted in hex.
        let answered = id("1800000123");
        assert_eq!(
            answered.matched_by(&id(&format!("{:x}", 1_800_000_123_u64))),
            Some(IdMatch::DecimalAsHex)
        );
        assert_eq!(
            answered.matched_by(&id(&format!("{:X}", 1_800_000_123_u64))),
            Some(IdMatch::DecimalAsHex)
        );
        // Ids that are not numbers match as text only.
        let answered = id("msg-00ab-Z");
        assert_eq!(answered.matched_by(&id("MSG-00AB-z")), Some(IdMatch::Same));
        assert_eq!(answered.matched_by(&id("msg-0ab-z")), None);
    }

    #[test]
    fn other_ids_do_not_match() {
        assert_eq!(id("1F").matched_by(&id("32")), None);
        assert_eq!(id("1F").matched_by(&id("1E")), None);
        assert_eq!(id("0").matched_by(&id("000")), Some(IdMatch::Same));
        assert_eq!(id("10").matched_by(&id("16")), Some(IdMatch::HexAsDecimal));
        // Past 128 bits only the text counts.
        let long = "f".repeat(40);
        assert_eq!(id(&long).forms().hex_value, None);
        assert_eq!(
            id(&long).matched_by(&id(&long.to_uppercase())),
            Some(IdMatch::Same)
        );
    }

    #[test]
    fn the_preferred_match_is_the_same_text() {
        // "10" answered could be quoted as "10" (same) or "16" (hex as decimal): the same text
        // ranks first, so a receipt quoting "10" goes to the message answered "10", not "A".
        assert!(IdMatch::Same < IdMatch::HexAsDecimal);
        assert_eq!(id("10").matched_by(&id("10")), Some(IdMatch::Same));
        assert_eq!(id("A").matched_by(&id("10")), Some(IdMatch::HexAsDecimal));
    }

    #[test]
    fn ids_that_are_not_ids_are_refused() {
        assert_eq!(SmscId::parse(""), Err(IdError::Empty));
        assert_eq!(SmscId::parse(&"1".repeat(65)), Err(IdError::TooLong(65)));
        assert!(matches!(
            SmscId::parse("12 34"),
            Err(IdError::BadCharacter(_))
        ));
        assert!(matches!(
            SmscId::parse("12\u{0}"),
            Err(IdError::BadCharacter(_))
        ));
        assert!(matches!(
            SmscId::parse("１２"),
            Err(IdError::BadCharacter(_))
        ));
        assert!(SmscId::parse(&"9".repeat(64)).is_ok());
    }
}
