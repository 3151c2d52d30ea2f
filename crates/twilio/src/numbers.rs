//! Twilio's phone-number resources: `AvailablePhoneNumbers` (searching what can be rented)
//! and `IncomingPhoneNumbers` (the numbers an account holds: rent, fetch, configure, release).

use serde::{Deserialize, Serialize};

use crate::API_VERSION;

/// Twilio's code for "the phone number requested is not available" (renting a number
/// someone else took meanwhile).
pub const UNAVAILABLE: u32 = 21422;
/// Twilio's code for "the requested resource was not found" (a country or a type it does
/// not offer, an unknown sid).
pub const NOT_FOUND: u32 = 20404;

/// The kinds of number Twilio sells, each a subresource of `AvailablePhoneNumbers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Geographic numbers (`Local`).
    Local,
    /// Mobile numbers (`Mobile`).
    Mobile,
    /// Toll-free numbers (`TollFree`).
    TollFree,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 3] = [Category::Local, Category::Mobile, Category::TollFree];

    /// The subresource's name in the path.
    pub fn resource(self) -> &'static str {
        match self {
            Category::Local => "Local",
            Category::Mobile => "Mobile",
            Category::TollFree => "TollFree",
        }
    }

    /// The category a subresource name names.
    pub fn from_resource(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.resource() == name)
    }
}

/// The path of an `AvailablePhoneNumbers` search.
pub fn available_path(account_sid: &str, country: &str, category: Category) -> String {
    format!(
        "/{API_VERSION}/Accounts/{account_sid}/AvailablePhoneNumbers/{country}/{}.json",
        category.resource()
    )
}

/// The path of the account's `IncomingPhoneNumbers` list (`POST` rents, `GET` lists).
pub fn incoming_numbers_path(account_sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers.json")
}

/// The path of one held number (`GET` fetches, `POST` configures, `DELETE` releases).
pub fn incoming_number_path(account_sid: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json")
}

/// What a number can do. Twilio writes the keys in lower case on held numbers and, in some
/// answers, `SMS` / `MMS` in upper case on available ones: both are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Calls.
    #[serde(default)]
    pub voice: bool,
    /// Text messages.
    #[serde(default, alias = "SMS")]
    pub sms: bool,
    /// Picture messages.
    #[serde(default, alias = "MMS")]
    pub mms: bool,
}

/// The query of an `AvailablePhoneNumbers` search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// `AreaCode` (US and Canada).
    pub area_code: Option<String>,
    /// `Contains`: digits (and letters, as on a keypad) the number must contain, `*` for any
    /// one digit.
    pub contains: Option<String>,
    /// `SmsEnabled`.
    pub sms: Option<bool>,
    /// `MmsEnabled`.
    pub mms: Option<bool>,
    /// `VoiceEnabled`.
    pub voice: Option<bool>,
    /// `PageSize`.
    pub page_size: u32,
}

impl SearchQuery {
    /// The query parameters.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(a) = &self.area_code {
            out.push(("AreaCode", a.clone()));
        }
        if let Some(c) = &self.contains {
            out.push(("Contains", c.clone()));
        }
        for (name, v) in [
            ("SmsEnabled", self.sms),
            ("MmsEnabled", self.mms),
            ("VoiceEnabled", self.voice),
        ] {
            if let Some(v) = v {
                out.push((name, v.to_string()));
            }
        }
        out.push(("PageSize", self.page_size.to_string()));
        out
    }

    /// The query as a carrier reads it back from its parameters; `None` for a value that is
    /// not Twilio's (a boolean that is not `true` / `false`, a page size that is no number).
    pub fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let mut q = SearchQuery {
            page_size: 50,
            ..SearchQuery::default()
        };
        let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        for (k, v) in params {
            match k {
                "AreaCode" => q.area_code = Some(v.to_owned()),
                "Contains" => q.contains = Some(v.to_owned()),
                "SmsEnabled" => q.sms = Some(flag(v)?),
                "MmsEnabled" => q.mms = Some(flag(v)?),
                "VoiceEnabled" => q.voice = Some(flag(v)?),
                "PageSize" => q.page_size = v.parse().ok()?,
                _ => {}
            }
        }
        Some(q)
    }
}

/// Whether `number` (E.164) matches a `Contains` pattern: the pattern's letters read as the
/// keypad's digits, `*` as any one digit, matched anywhere in the number's digits.
pub fn contains_matches(pattern: &str, number: &str) -> bool {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    let want: Vec<Option<u8>> = pattern
        .chars()
        .filter(|c| *c != '+')
        .map(|c| if c == '*' { None } else { keypad(c) })
        .collect();
    if want.is_empty() || want.len() > digits.len() {
        return false;
    }
    digits
        .windows(want.len())
        .any(|w| w.iter().zip(&want).all(|(d, p)| p.is_none_or(|p| p == *d)))
}

/// The keypad digit of a pattern character (`2` for `a`, `b`, `c`, …).
fn keypad(c: char) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    let digit = match c {
        '0'..='9' => return Some(c as u8),
        'a'..='c' => b'2',
        'd'..='f' => b'3',
        'g'..='i' => b'4',
        'j'..='l' => b'5',
        'm'..='o' => b'6',
        'p'..='s' => b'7',
        't'..='v' => b'8',
        'w'..='z' => b'9',
        _ => b'x',
    };
    Some(digit)
}

/// One number a search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableNumber {
    /// E.164.
    pub phone_number: String,
    /// The number as people write it.
    #[serde(default)]
    pub friendly_name: String,
    /// Its city or town, when known.
    #[serde(default)]
    pub locality: Option<String>,
    /// Its state or province (US and Canada).
    #[serde(default)]
    pub region: Option<String>,
    /// ISO country code.
    pub iso_country: String,
    /// `none`, `any`, `local` or `foreign`.
    #[serde(default)]
    pub address_requirements: Option<String>,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailablePage {
    /// The numbers found.
    pub available_phone_numbers: Vec<AvailableNumber>,
    /// This page's path.
    #[serde(default)]
    pub uri: String,
}

/// A number the account holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingNumber {
    /// `PN…`.
    pub sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// E.164.
    pub phone_number: String,
    /// A label.
    #[serde(default)]
    pub friendly_name: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Where incoming messages are POSTed ("A message comes in").
    #[serde(default)]
    pub sms_url: Option<String>,
    /// `POST` or `GET`.
    #[serde(default)]
    pub sms_method: Option<String>,
    /// Where call status is POSTed.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// RFC 2822 date.
    #[serde(default)]
    pub date_created: String,
    /// `2010-04-01`.
    #[serde(default)]
    pub api_version: String,
    /// The resource's own path.
    #[serde(default)]
    pub uri: String,
}

/// A page of the account's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingPage {
    /// The numbers.
    pub incoming_phone_numbers: Vec<IncomingNumber>,
    /// The next page's path and query, if there is one.
    #[serde(default)]
    pub next_page_uri: Option<String>,
    /// This page's path.
    #[serde(default)]
    pub uri: String,
}

/// How a held number is set up: the form of a rent (`POST IncomingPhoneNumbers.json` with
/// the number) and of a configuration (`POST IncomingPhoneNumbers/{Sid}.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberSetup {
    /// `PhoneNumber`: the number to rent (absent when configuring a held one).
    pub phone_number: Option<String>,
    /// `SmsUrl`: where incoming messages go.
    pub sms_url: String,
    /// `StatusCallback`.
    pub status_callback: String,
    /// `FriendlyName`.
    pub friendly_name: Option<String>,
}

impl NumberSetup {
    /// The form parameters.
    pub fn to_form(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = &self.phone_number {
            out.push(("PhoneNumber", n.clone()));
        }
        out.push(("SmsUrl", self.sms_url.clone()));
        out.push(("SmsMethod", "POST".to_owned()));
        out.push(("StatusCallback", self.status_callback.clone()));
        out.push(("StatusCallbackMethod", "POST".to_owned()));
        if let Some(f) = &self.friendly_name {
            out.push(("FriendlyName", f.clone()));
        }
        out
    }

    /// The setup a form carries; unknown parameters are ignored, as Twilio ignores them.
    pub fn from_form<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = NumberSetup::default();
        for (k, v) in params {
            match k {
                "PhoneNumber" => s.phone_number = Some(v.to_owned()),
                "SmsUrl" => s.sms_url = v.to_owned(),
                "StatusCallback" => s.status_callback = v.to_owned(),
                "FriendlyName" => s.friendly_name = Some(v.to_owned()),
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_reads_letters_as_keypad_digits() {
        assert!(contains_matches("510", "+15105550123"));
        assert!(contains_matches("5**5", "+15105550123"));
        assert!(contains_matches("0123", "+15105550123"));
        assert!(contains_matches("JK", "+15105550123"), "J=5 K=5");
        assert!(!contains_matches("999", "+15105550123"));
        assert!(!contains_matches("", "+15105550123"));
        assert!(!contains_matches("1234567890123", "+15105"));
    }

    #[test]
    fn search_query_round_trips() {
        let q = SearchQuery {
            area_code: Some("510".into()),
            contains: Some("55".into()),
            sms: Some(true),
            mms: None,
            voice: Some(false),
            page_size: 20,
        };
        let params = q.params();
        let back = SearchQuery::from_params(params.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, q);
        assert!(SearchQuery::from_params([("SmsEnabled", "yes")]).is_none());
    }

    #[test]
    fn capabilities_read_both_casings() {
        let upper: Capabilities =
            serde_json::from_str(r#"{"voice":true,"SMS":true,"MMS":false}"#).unwrap();
        let lower: Capabilities =
            serde_json::from_str(r#"{"voice":true,"sms":true,"mms":false,"fax":false}"#).unwrap();
        assert_eq!(upper, lower);
        assert!(upper.sms && upper.voice && !upper.mms);
    }

    #[test]
    fn setup_form_round_trips() {
        let s = NumberSetup {
            phone_number: Some("+15105550123".into()),
            sms_url: "https://x/webhooks/twilio/incoming".into(),
            status_callback: "https://x/webhooks/twilio/status".into(),
            friendly_name: Some("org-1".into()),
        };
        let form = s.to_form();
        assert_eq!(
            NumberSetup::from_form(form.iter().map(|(k, v)| (*k, v.as_str()))),
            s
        );
    }
}
