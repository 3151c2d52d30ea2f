//! Phone numbers: parsing (E.164 and national formats), validity, region, number type, the
//! supported SMS and MMS countries, the same-calling-code rule and short codes.
//!
//! Parsing and metadata come from the `phonenumber` crate (Google's libphonenumber data); this
//! module adds the product's rules on top.

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use serde::{Serialize, Serializer};

/// Longest input we try to parse; anything longer is not a phone number.
const MAX_INPUT_LEN: usize = 64;

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

    fn id(&self) -> Option<phonenumber::country::Id> {
        self.as_str().parse().ok()
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

/// What kind of line a number is, as far as the numbering plan tells.
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
    /// An emergency number.
    Emergency,
    /// Voicemail access.
    Voicemail,
    /// An abbreviated number.
    ShortCode,
    /// A standard-rate service number.
    StandardRate,
    /// A carrier-specific service number.
    CarrierSpecific,
    /// A number that cannot be dialled internationally.
    NoInternational,
    /// The plan does not say.
    Unknown,
}

impl NumberType {
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
            NumberType::Emergency => "emergency",
            NumberType::Voicemail => "voicemail",
            NumberType::ShortCode => "short_code",
            NumberType::StandardRate => "standard_rate",
            NumberType::CarrierSpecific => "carrier_specific",
            NumberType::NoInternational => "no_international",
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

impl From<phonenumber::Type> for NumberType {
    fn from(t: phonenumber::Type) -> Self {
        use phonenumber::Type as T;
        match t {
            T::FixedLine => NumberType::FixedLine,
            T::Mobile => NumberType::Mobile,
            T::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            T::TollFree => NumberType::TollFree,
            T::PremiumRate => NumberType::PremiumRate,
            T::SharedCost => NumberType::SharedCost,
            T::PersonalNumber => NumberType::PersonalNumber,
            T::Voip => NumberType::Voip,
            T::Pager => NumberType::Pager,
            T::Uan => NumberType::Uan,
            T::Emergency => NumberType::Emergency,
            T::Voicemail => NumberType::Voicemail,
            T::ShortCode => NumberType::ShortCode,
            T::StandardRate => NumberType::StandardRate,
            T::Carrier => NumberType::CarrierSpecific,
            T::NoInternational => NumberType::NoInternational,
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
    #[error("{0:?} is not in international format (+<country code>…); give a region to read it")]
    NeedsRegion(String),
    /// The region code is not one libphonenumber knows.
    #[error("{0:?} is not a known two-letter region code")]
    UnknownRegion(String),
    /// The text is not a phone number at all.
    #[error("{input:?} is not a phone number: {reason}")]
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
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.chars().count() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let international = trimmed.starts_with('+') || trimmed.starts_with("tel:");
        if !international && default_region.is_none() {
            return Err(PhoneError::NeedsRegion(trimmed.to_owned()));
        }
        let parsed =
            phonenumber::parse(default_region.and_then(|r| r.id()), trimmed).map_err(|e| {
                PhoneError::NotANumber {
                    input: trimmed.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let valid = parsed.is_valid_with(&DATABASE);
        let region = parsed
            .country()
            .id()
            .and_then(|id| id.as_ref().parse::<Region>().ok());
        Ok(PhoneNumber {
            e164: parsed.format().mode(phonenumber::Mode::E164).to_string(),
            calling_code: parsed.code().value(),
            region,
            number_type: parsed.number_type(&DATABASE).into(),
            valid,
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
