//! Phone numbers: parsing (E.164 and national formats), validity, region, number type, the
//! supported SMS and MMS countries, the same-calling-code rule and short codes.
//!
//! Parsing, validation and metadata come from `rlibphonenumber`, a port of Google's
//! libphonenumber that reads numbers exactly as libphonenumber does (checked against
//! libphonenumber's own readings in `tests/phone_vectors.rs`); this module refuses what a
//! person should not have typed (letters, extensions) and adds the product's rules on top.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, PhoneNumberType};
use serde::{Serialize, Serializer};

/// Longest input we try to parse; anything longer is not a phone number.
pub const MAX_INPUT_LEN: usize = 64;

/// Countries we send SMS to and from (ISO 3166-1 alpha-2).
pub const SMS_COUNTRIES: [&str; 17] = [
    "US", "CA", "GB", "DE", "AU", "FR", "BE", "DK", "IL", "PR", "ZA", "AT", "CH", "FI", "NL", "PL",
    "SE",
];

/// Countries where MMS is available, for both sender and recipient.
pub const MMS_COUNTRIES: [&str; 3] = ["US", "CA", "AU"];

/// A region (ISO 3166-1 alpha-2 country or territory code), e.g. `US`, `GB`, `GG`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

impl Region {
    /// The code as text, e.g. `"US"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII uppercase letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Whether we send SMS in this region.
    pub fn sms_supported(&self) -> bool {
        SMS_COUNTRIES.contains(&self.as_str())
    }

    /// Whether MMS is available in this region.
    pub fn mms_supported(&self) -> bool {
        MMS_COUNTRIES.contains(&self.as_str())
    }

    /// libphonenumber's region, when it has metadata for it.
    fn id(&self) -> Option<rlibphonenumber::enums::Region> {
        rlibphonenumber::enums::Region::from_code(self.as_str())
            .ok()
            .filter(|r| PHONE_NUMBER_UTIL.get_country_code_for_region(*r).is_some())
    }
}

impl FromStr for Region {
    type Err = PhoneError;

    /// Parses a two-letter region code, case-insensitively; it must be one libphonenumber knows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bytes: [u8; 2] = upper
            .as_bytes()
            .try_into()
            .map_err(|_| PhoneError::UnknownRegion(s.to_owned()))?;
        let region = Region(bytes);
        if !bytes.iter().all(u8::is_ascii_uppercase) || region.id().is_none() {
            return Err(PhoneError::UnknownRegion(s.to_owned()));
        }
        Ok(region)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether one of an organization's numbers is rented (it sends) or external (a user's own
/// phone, recorded for reference: it never sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "number_kind", rename_all = "snake_case")
)]
pub enum NumberKind {
    /// Rented from the carrier by the organization: may send.
    Internal,
    /// Not ours (a user's own phone): never sends.
    External,
}

impl NumberKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::Internal => "internal",
            NumberKind::External => "external",
        }
    }

    /// Messages go out only from rented numbers.
    pub fn can_send(self) -> bool {
        self == NumberKind::Internal
    }
}

/// What kind of line a number is, as far as the numbering plan tells (libphonenumber's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    /// A mobile number.
    Mobile,
    /// A fixed line (landline): cannot receive SMS.
    FixedLine,
    /// Either; the plan does not tell (the US and Canada, for instance).
    FixedLineOrMobile,
    /// A toll-free number.
    TollFree,
    /// A premium-rate number.
    PremiumRate,
    /// A shared-cost number.
    SharedCost,
    /// A personal number that may route anywhere.
    PersonalNumber,
    /// Voice over IP.
    Voip,
    /// A pager.
    Pager,
    /// A universal access (company) number.
    Uan,
    /// Voicemail access.
    Voicemail,
    /// The plan does not say.
    Unknown,
}

impl NumberType {
    /// Every type.
    pub const ALL: [NumberType; 12] = [
        NumberType::Mobile,
        NumberType::FixedLine,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::PersonalNumber,
        NumberType::Voip,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Unknown,
    ];

    /// The snake_case name used in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::Mobile => "mobile",
            NumberType::FixedLine => "fixed_line",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Voip => "voip",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Unknown => "unknown",
        }
    }

    /// Whether this kind of line can send and receive SMS.
    ///
    /// Landlines, premium and shared-cost lines, pagers and service numbers cannot; toll-free
    /// and VoIP numbers can (toll-free messaging, VoIP carriers); where the plan cannot tell a
    /// mobile from a landline we allow it and let the carrier's landline error (30006) decide.
    pub fn sms_capable(self) -> bool {
        matches!(
            self,
            NumberType::Mobile
                | NumberType::FixedLineOrMobile
                | NumberType::Voip
                | NumberType::TollFree
        )
    }
}

impl FromStr for NumberType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NumberType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown number type {}", crate::text::quote(s)))
    }
}

impl From<PhoneNumberType> for NumberType {
    fn from(t: PhoneNumberType) -> Self {
        use PhoneNumberType as T;
        match t {
            T::FixedLine => NumberType::FixedLine,
            T::Mobile => NumberType::Mobile,
            T::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            T::TollFree => NumberType::TollFree,
            T::PremiumRate => NumberType::PremiumRate,
            T::SharedCost => NumberType::SharedCost,
            T::PersonalNumber => NumberType::PersonalNumber,
            T::VoIP => NumberType::Voip,
            T::Pager => NumberType::Pager,
            T::UAN => NumberType::Uan,
            T::VoiceMail => NumberType::Voicemail,
            T::Unknown => NumberType::Unknown,
        }
    }
}

/// Why a phone number could not be parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing was given.
    #[error("the phone number is empty")]
    Empty,
    /// The input is far too long to be a phone number.
    #[error("the phone number is longer than {MAX_INPUT_LEN} characters")]
    TooLong,
    /// A national-format number without a region to read it in.
    #[error("{} is not in international format (+<country code>…); give a region to read it", quote(.0))]
    NeedsRegion(String),
    /// The region code is not one libphonenumber knows.
    #[error("{} is not a known two-letter region code", quote(.0))]
    UnknownRegion(String),
    /// A letter where digits belong. Keypad letters (1-800-FLOWERS) are not converted: in a
    /// number typed by a person a letter is a mistake (`O` for `0`), and guessing would text
    /// someone else.
    #[error("{} contains the letter {letter:?}; a phone number is digits only", quote(.input))]
    Letters {
        /// What was given.
        input: String,
        /// The first letter.
        letter: char,
    },
    /// An extension (`ext. 12`, `x12`, `#12`, `;ext=12`): SMS cannot reach one.
    #[error("{} has an extension; SMS goes to the number alone", quote(.0))]
    Extension(String),
    /// A character that has no place in a phone number.
    #[error("{} contains {}, which has no place in a phone number", quote(.input), crate::text::quote(&.character.to_string()))]
    InvalidCharacter {
        /// What was given.
        input: String,
        /// The character.
        character: char,
    },
    /// The text is not a phone number at all.
    #[error("{} is not a phone number: {reason}", quote(.input))]
    NotANumber {
        /// What was given.
        input: String,
        /// What the parser said.
        reason: String,
    },
    /// The text parses but is not a valid number of its numbering plan.
    #[error("{0} is not a valid phone number in its numbering plan")]
    Invalid(String),
}

fn quote(s: &str) -> String {
    crate::text::quote(s)
}

/// Separators people type inside numbers (libphonenumber's punctuation, less `x`, which would
/// be an extension here).
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.'
                | '('
                | ')'
                | '/'
                | '['
                | ']'
                | '~'
                | '\u{2010}'..='\u{2015}'
                | '\u{2212}'
                | '\u{30FC}'
                | '\u{FF0D}'..='\u{FF0F}'
                | '\u{00AD}'
                | '\u{200B}'
                | '\u{2060}'
                | '\u{FF08}'
                | '\u{FF09}'
                | '\u{FF3B}'
                | '\u{FF3D}'
                | '\u{2053}'
                | '\u{223C}'
                | '\u{FF5E}'
        )
}

/// An ASCII digit, or a full-width one (as typed with an East Asian input method).
fn digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + u32::from(b'0')),
        _ => None,
    }
}

/// Extension markers libphonenumber recognises, lower case.
const EXTENSION_MARKERS: [&str; 7] = ["ext", "extn", "extension", "anexo", "x", "#", ";ext="];

/// `text` without a leading `tel:` (a link copied from a web page).
fn strip_tel(text: &str) -> &str {
    match text.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tel:") => &text[4..],
        _ => text,
    }
}

/// Whether the number was typed with `+`, and its ASCII digits; or why the text is not one.
fn normalize(input: &str) -> Result<(bool, String), PhoneError> {
    let text = strip_tel(input.trim());
    let lower = text.to_lowercase();
    // An extension: a marker after some digits, then digits to the end.
    for marker in EXTENSION_MARKERS {
        if let Some(at) = lower.rfind(marker) {
            let before = &lower[..at];
            let after = lower[at + marker.len()..].trim_start_matches(['.', ':', ' ', '=']);
            if before.chars().any(|c| digit(c).is_some())
                && !after.is_empty()
                && after.chars().all(|c| digit(c).is_some() || c == ' ')
            {
                return Err(PhoneError::Extension(input.to_owned()));
            }
        }
    }
    let mut plus = false;
    let mut digits = String::with_capacity(text.len());
    for c in text.chars() {
        if let Some(d) = digit(c) {
            digits.push(d);
        } else if c == '+' || c == '\u{FF0B}' {
            // Only before the first digit, once.
            if plus || !digits.is_empty() {
                return Err(PhoneError::NotANumber {
                    input: input.to_owned(),
                    reason: "a + belongs before the country code only".into(),
                });
            }
            plus = true;
        } else if is_separator(c) {
        } else if c.is_alphabetic() {
            return Err(PhoneError::Letters {
                input: input.to_owned(),
                letter: c,
            });
        } else if matches!(c, '#' | ',' | ';' | '*') {
            // Pauses and extensions (`,`, `;`, `#`) or a service code (`*`).
            return Err(PhoneError::Extension(input.to_owned()));
        } else {
            return Err(PhoneError::InvalidCharacter {
                input: input.to_owned(),
                character: c,
            });
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::NotANumber {
            input: input.to_owned(),
            reason: "there are no digits".into(),
        });
    }
    Ok((plus, digits))
}

/// A parsed phone number with what the numbering plan tells about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    calling_code: u16,
    region: Option<Region>,
    number_type: NumberType,
    valid: bool,
}

impl PhoneNumber {
    /// Parses `input` in E.164 / international format, or in national format for
    /// `default_region`. The result may be invalid; see [`PhoneNumber::parse_valid`].
    ///
    /// A number in international form (`+…`, or the hint region's international dialling
    /// prefix: `011` in the US, `00` in most of Europe) is read by its own country's rules,
    /// never the hint's; national forms use the hint. The reading is libphonenumber's (the
    /// vectors in `tests/phone_vectors.rs` come from libphonenumber itself). Letters (no keypad
    /// conversion: `+1201555O123` is a typo, not a vanity number) and extensions are refused.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.chars().count() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let (plus, _digits) = normalize(trimmed)?;
        let hint = match default_region {
            Some(r) => Some(
                r.id()
                    .ok_or_else(|| PhoneError::UnknownRegion(r.to_string()))?,
            ),
            // Without a hint, only the international form can be read (libphonenumber would
            // say "invalid country code"; this says what to do about it).
            None if !plus => return Err(PhoneError::NeedsRegion(trimmed.to_owned())),
            None => None,
        };
        // The text as typed (checked above): libphonenumber's reading of it is the reference.
        let text = strip_tel(trimmed);
        let parsed = PHONE_NUMBER_UTIL
            .parse(text, hint)
            .map_err(|e| PhoneError::NotANumber {
                input: trimmed.to_owned(),
                reason: e.to_string(),
            })?;
        let region = parsed
            .get_region_code()
            .and_then(|r| r.to_string().parse::<Region>().ok());
        let calling_code = u16::try_from(parsed.country_code).unwrap_or(0);
        Ok(PhoneNumber {
            e164: parsed.format_as(PhoneNumberFormat::E164).into_owned(),
            calling_code,
            region,
            number_type: parsed.get_type().into(),
            valid: parsed.is_valid(),
        })
    }

    /// Parses `input` and requires it to be a valid number.
    pub fn parse_valid(input: &str, default_region: Option<Region>) -> Result<Self, PhoneError> {
        let n = Self::parse(input, default_region)?;
        if n.valid {
            Ok(n)
        } else {
            Err(PhoneError::Invalid(n.e164))
        }
    }

    /// The number in E.164, e.g. `+14155550100`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The national significant number's digits: the E.164 digits after the calling code
    /// (`4155550100` for `+14155550100`).
    pub fn national_digits(&self) -> String {
        let code_len = self.calling_code.to_string().len();
        self.e164
            .trim_start_matches('+')
            .chars()
            .skip(code_len)
            .collect()
    }

    /// The country calling code, e.g. 1 or 44.
    pub fn calling_code(&self) -> u16 {
        self.calling_code
    }

    /// The region (territory) the number belongs to, e.g. `GG` rather than `GB` for Guernsey.
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The kind of line.
    pub fn number_type(&self) -> NumberType {
        self.number_type
    }

    /// Whether the number is valid in its numbering plan.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Whether we can send SMS to (or from) this number: valid, in a supported country, and a
    /// kind of line that takes SMS.
    pub fn sms_supported(&self) -> bool {
        self.valid
            && self.region.is_some_and(|r| r.sms_supported())
            && self.number_type.sms_capable()
    }

    /// Whether MMS is available for this number: SMS-capable and in an MMS country.
    pub fn mms_supported(&self) -> bool {
        self.sms_supported() && self.region.is_some_and(|r| r.mms_supported())
    }
}

/// Where a message comes from or goes to: a phone number, or another address a carrier gave
/// for a contact (an alphanumeric sender id, a number its plan does not know), kept as it
/// came. Our numbers and the recipients we send to are always numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A valid phone number.
    Number(PhoneNumber),
    /// Anything else, as given.
    Other(String),
}

impl Address {
    /// Reads an address as a carrier gave it or as it was stored: a valid number in
    /// international form is a number, anything else stays as it is.
    pub fn read(text: &str) -> Address {
        match PhoneNumber::parse_valid(text, None) {
            Ok(n) => Address::Number(n),
            Err(_) => Address::Other(text.to_owned()),
        }
    }

    /// The phone number, when it is one.
    pub fn number(&self) -> Option<&PhoneNumber> {
        match self {
            Address::Number(n) => Some(n),
            Address::Other(_) => None,
        }
    }

    /// The text: E.164 for a number.
    pub fn as_str(&self) -> &str {
        match self {
            Address::Number(n) => n.e164(),
            Address::Other(text) => text,
        }
    }
}

impl From<PhoneNumber> for Address {
    fn from(n: PhoneNumber) -> Self {
        Address::Number(n)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

/// The no-international rule: sender and recipient share a country calling code
/// (+1 spans the US, Canada and Puerto Rico).
pub fn same_calling_code(a: &PhoneNumber, b: &PhoneNumber) -> bool {
    a.calling_code == b.calling_code
}

/// Whether a sender address is a short code: 3 to 8 digits, not in E.164.
///
/// Inbound messages from short codes are refused: they are carrier and marketing services,
/// not leads.
pub fn is_short_code(sender: &str) -> bool {
    let s = sender.trim();
    (3..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(s: &str) -> Region {
        s.parse().unwrap()
    }

    #[test]
    fn parses_e164_and_national_formats() {
        let a = PhoneNumber::parse_valid("+1 (415) 555-2671", None).unwrap();
        let b = PhoneNumber::parse_valid("(415) 555-2671", Some(region("us"))).unwrap();
        assert_eq!(a.e164(), "+14155552671");
        assert_eq!(a, b);
        assert_eq!(a.region(), Some(region("US")));
        assert_eq!(a.number_type(), NumberType::FixedLineOrMobile);
        assert!(a.sms_supported() && a.mms_supported());
    }

    #[test]
    fn an_address_is_a_number_when_it_is_a_valid_one_and_kept_as_given_otherwise() {
        let n = Address::read("+14155552671");
        assert_eq!(n.number().map(PhoneNumber::e164), Some("+14155552671"));
        assert_eq!(n.as_str(), "+14155552671");
        // What a carrier gives for a contact that is not a number stays as it came.
        for other in ["ACME", "+1415555", "4155552671", ""] {
            let a = Address::read(other);
            assert_eq!(a, Address::Other(other.to_owned()));
            assert_eq!(a.to_string(), other);
        }
    }

    #[test]
    fn national_format_needs_a_region() {
        assert_eq!(
            PhoneNumber::parse("020 7946 0018", None),
            Err(PhoneError::NeedsRegion("020 7946 0018".into()))
        );
        let gb = PhoneNumber::parse_valid("020 7946 0018", Some(region("GB"))).unwrap();
        assert_eq!(gb.e164(), "+442079460018");
        assert_eq!(gb.number_type(), NumberType::FixedLine);
        assert!(!gb.sms_supported(), "a UK landline cannot take SMS");
    }

    #[test]
    fn territories_are_told_apart() {
        let gg = PhoneNumber::parse_valid("+44 7781 123456", None).unwrap();
        assert_eq!(gg.region(), Some(region("GG")));
        assert!(
            !gg.sms_supported(),
            "Guernsey is not one of the supported countries"
        );
        let gb = PhoneNumber::parse_valid("+44 7400 123456", None).unwrap();
        assert_eq!(gb.region(), Some(region("GB")));
        assert_eq!(gb.number_type(), NumberType::Mobile);
        assert!(gb.sms_supported() && !gb.mms_supported());
    }

    #[test]
    fn plus_one_spans_us_ca_pr() {
        let us = PhoneNumber::parse_valid("+12125550123", None).unwrap();
        let ca = PhoneNumber::parse_valid("+16135550123", None).unwrap();
        let pr = PhoneNumber::parse_valid("+17875550123", None).unwrap();
        let uk = PhoneNumber::parse_valid("+447400123456", None).unwrap();
        assert_eq!(
            (us.region(), ca.region(), pr.region()),
            (Some(region("US")), Some(region("CA")), Some(region("PR")))
        );
        assert!(same_calling_code(&ca, &us) && same_calling_code(&pr, &us));
        assert!(!same_calling_code(&uk, &us));
        assert!(pr.sms_supported() && !pr.mms_supported());
    }

    #[test]
    fn every_supported_country_has_a_valid_mobile_example() {
        let examples = [
            "+12015550123",
            "+15062345678",
            "+447400123456",
            "+4915123456789",
            "+61412345678",
            "+33612345678",
            "+32470123456",
            "+4520123456",
            "+972502345678",
            "+17872345678",
            "+27711234567",
            "+436641234567",
            "+41781234567",
            "+358412345678",
            "+31612345678",
            "+48512345678",
            "+46701234567",
        ];
        let mut regions: Vec<String> = examples
            .iter()
            .map(|e| {
                let n = PhoneNumber::parse_valid(e, None).unwrap();
                assert!(
                    n.sms_supported(),
                    "{e} ({:?}) should take SMS",
                    n.number_type()
                );
                n.region().unwrap().to_string()
            })
            .collect();
        regions.sort();
        let mut expected: Vec<String> = SMS_COUNTRIES.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(regions, expected);
    }

    #[test]
    fn unsupported_country_and_bad_input() {
        let jp = PhoneNumber::parse_valid("+819012345678", None).unwrap();
        assert!(!jp.sms_supported());
        assert!(matches!(
            PhoneNumber::parse("hello", Some(region("US"))),
            Err(PhoneError::Letters { letter: 'h', .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("--", Some(region("US"))),
            Err(PhoneError::NotANumber { .. })
        ));
        assert_eq!(PhoneNumber::parse("  ", None), Err(PhoneError::Empty));
        assert_eq!(
            PhoneNumber::parse(&"1".repeat(65), None),
            Err(PhoneError::TooLong)
        );
        assert!(matches!(
            PhoneNumber::parse_valid("+1 555 0000", None),
            Err(PhoneError::Invalid(_)) | Err(PhoneError::NotANumber { .. })
        ));
        assert!("XX".parse::<Region>().is_err());
        assert!("USA".parse::<Region>().is_err());
    }

    /// Typed in international form with a hint region, each of these lost a digit after the
    /// country code (the hint's national prefix was stripped): another person's number.
    #[test]
    fn international_form_ignores_the_hint() {
        let cases = [
            ("+49 151 12345678", "+4915112345678", "DE"),
            ("+33 1 42 68 53 00", "+33142685300", "FR"),
            ("+44 1481 712345", "+441481712345", "GG"),
            ("+48 12 345 67 89", "+48123456789", "PL"),
            ("+86 138 0013 8000", "+8613800138000", "CN"),
            ("011 49 151 12345678", "+4915112345678", "DE"),
        ];
        for hint in ["US", "GB", "DE", "FR", "CN"] {
            for (typed, e164, home) in cases {
                if typed.starts_with("011") && hint != "US" {
                    continue;
                }
                let n = PhoneNumber::parse_valid(typed, Some(region(hint))).unwrap();
                assert_eq!(
                    (n.e164(), n.region()),
                    (e164, Some(region(home))),
                    "{typed} with hint {hint}"
                );
            }
        }
        // The region's own dialling prefix: 00 from Germany, 011 from the US.
        let de = PhoneNumber::parse_valid("0033 1 42 68 53 00", Some(region("DE"))).unwrap();
        assert_eq!(de.e164(), "+33142685300");
        // National forms use the hint.
        let us = PhoneNumber::parse_valid("(201) 555-0123", Some(region("US"))).unwrap();
        assert_eq!(us.e164(), "+12015550123");
        let gb = PhoneNumber::parse_valid("07400 123456", Some(region("GB"))).unwrap();
        assert_eq!(gb.e164(), "+447400123456");
    }

    #[test]
    fn letters_and_extensions_are_refused() {
        assert_eq!(
            PhoneNumber::parse("+1201555O123", None),
            Err(PhoneError::Letters {
                input: "+1201555O123".into(),
                letter: 'O'
            })
        );
        assert!(matches!(
            PhoneNumber::parse("1-800-FLOWERS", Some(region("US"))),
            Err(PhoneError::Letters { letter: 'F', .. })
        ));
        for typed in [
            "+1 201 555 0123 ext. 12",
            "+1 201 555 0123 x12",
            "+1 201 555 0123#12",
            "+1 201 555 0123 ;ext=12",
            "+12015550123,,12",
            "tel:+1-201-555-0123;ext=12",
        ] {
            assert!(
                matches!(
                    PhoneNumber::parse(typed, None),
                    Err(PhoneError::Extension(_))
                ),
                "{typed}: {:?}",
                PhoneNumber::parse(typed, None)
            );
        }
        assert!(matches!(
            PhoneNumber::parse("+1 201 555 0123\0", None),
            Err(PhoneError::InvalidCharacter {
                character: '\0',
                ..
            })
        ));
        assert!(matches!(
            PhoneNumber::parse("+1 201 + 555", None),
            Err(PhoneError::NotANumber { .. })
        ));
        // A tel: link and full-width digits are numbers.
        assert_eq!(
            PhoneNumber::parse_valid("tel:+1-201-555-0123", None)
                .unwrap()
                .e164(),
            "+12015550123"
        );
        assert_eq!(
            PhoneNumber::parse_valid("＋１ ２０１ ５５５ ０１２３", None)
                .unwrap()
                .e164(),
            "+12015550123"
        );
    }

    #[test]
    fn errors_quote_at_most_a_little_of_the_input() {
        let long = format!("+1{}", "-".repeat(60));
        let e = PhoneNumber::parse(&format!("{long}x"), None).unwrap_err();
        assert!(e.to_string().len() < 160, "{e}");
        let e = PhoneNumber::parse(&"9".repeat(65), None).unwrap_err();
        assert_eq!(e, PhoneError::TooLong);
    }

    #[test]
    fn toll_free_is_sms_capable() {
        let tf = PhoneNumber::parse_valid("+18005550199", None).unwrap();
        assert_eq!(tf.number_type(), NumberType::TollFree);
        assert!(tf.sms_supported());
    }

    #[test]
    fn short_codes() {
        for s in ["123", "12345", "87654321", " 55555 "] {
            assert!(is_short_code(s), "{s}");
        }
        for s in ["12", "123456789", "+12345", "12a45", "", "+14155552671"] {
            assert!(!is_short_code(s), "{s}");
        }
    }
}
