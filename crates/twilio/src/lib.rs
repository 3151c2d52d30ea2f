//! Twilio's wire format, shared by the carrier simulator, the dispatcher's Twilio adapter and
//! the inbound webhook receiver: request signatures, Messages API resources and errors,
//! webhook forms ([`webhook`]) and error codes in our words ([`errors`]).

pub mod create;
pub mod errors;
pub mod numbers;
pub mod overrides;
pub mod webhook;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub use create::CreateMessage;

/// The API version in every Messages URL.
pub const API_VERSION: &str = "2010-04-01";
/// The signature header on every webhook.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The carrier simulator's development account SID: a public, well-known credential, the
/// simulator's default (`SMS_SIM_ACCOUNT_SID`) and `smsd --dev`'s, never a real account.
pub const SIMULATOR_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
/// The carrier simulator's development auth token (`SMS_SIM_AUTH_TOKEN`'s default).
pub const SIMULATOR_AUTH_TOKEN: &str = "sim-auth-token";

/// The path of the Messages resource for an account.
pub fn messages_path(account_sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}/Messages.json")
}

/// The path of one Message resource (`GET` fetches it).
pub fn message_path(account_sid: &str, message_sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}.json")
}

/// Most messages per page of a list (Twilio's maximum `PageSize`).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The query of a Messages list (`GET …/Messages.json?To=…&From=…`): the messages between two
/// numbers, newest first. Twilio also filters by `DateSent`, but a message it has not sent yet
/// has no `date_sent` and would be missed, so a caller looking for a message of its own pages
/// back by `date_created` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// `To`.
    pub to: String,
    /// `From`.
    pub from: String,
    /// `PageSize`.
    pub page_size: u32,
}

impl ListQuery {
    /// The query parameters of the first page.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("To", self.to.clone()),
            ("From", self.from.clone()),
            ("PageSize", self.page_size.min(MAX_PAGE_SIZE).to_string()),
        ]
    }
}

/// One page of a Messages list, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// The messages, newest first.
    pub messages: Vec<MessageResource>,
    /// The next page's path and query, if there is one.
    pub next_page_uri: Option<String>,
    /// This page's number, from 0.
    pub page: u32,
    /// Messages per page.
    pub page_size: u32,
    /// This page's path and query.
    pub uri: String,
}

/// `X-Twilio-Signature` for a form POST: base64(HMAC-SHA1(auth token, URL + every distinct
/// parameter, sorted by name then value, as name followed by value)). Twilio's own libraries
/// drop repeated identical pairs, so we do too.
pub fn signature<'a, I>(auth_token: &str, url: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut params: Vec<(&str, &str)> = params.into_iter().collect();
    params.sort_unstable();
    params.dedup();
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (k, v) in params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `given` against the signature of `url` and `params`, in constant time. As Twilio's
/// own libraries do, the URL is also tried with its default port added (`:443` / `:80`) and
/// removed, because proxies differ in what they pass on.
pub fn verify<'a>(auth_token: &str, url: &str, params: &[(&'a str, &'a str)], given: &str) -> bool {
    url_variants(url).iter().any(|candidate| {
        let expected = signature(auth_token, candidate, params.iter().copied());
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    })
}

/// The URL as given, without its default port, and with it.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let (scheme, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        (("https://", rest), ":443")
    } else if let Some(rest) = url.strip_prefix("http://") {
        (("http://", rest), ":80")
    } else {
        return out;
    };
    let (prefix, rest) = scheme;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    // Userinfo (user:pass@host) stays as it is; the port is after the host.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let userinfo = &authority[..host_start];
    if let Some(host) = host_port.strip_suffix(default_port) {
        out.push(format!("{prefix}{userinfo}{host}{tail}"));
    } else if !host_port.contains(':') || host_port.ends_with(']') {
        out.push(format!("{prefix}{userinfo}{host_port}{default_port}{tail}"));
    }
    out
}

/// A Message resource, as the Messages API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResource {
    /// `SM…` (or `MM…` for MMS).
    pub sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Body.
    pub body: String,
    /// `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed`, …
    pub status: String,
    /// Segments, as a string (Twilio's choice).
    pub num_segments: String,
    /// Attachments, as a string.
    pub num_media: String,
    /// `outbound-api`.
    pub direction: String,
    /// Always `2010-04-01`.
    pub api_version: String,
    /// RFC 2822 date.
    pub date_created: String,
    /// RFC 2822 date.
    pub date_updated: String,
    /// Not sent yet.
    pub date_sent: Option<String>,
    /// Set when the message failed.
    pub error_code: Option<u32>,
    /// Set when the message failed.
    pub error_message: Option<String>,
    /// Not priced yet.
    pub price: Option<String>,
    /// `USD`.
    pub price_unit: String,
    /// The resource's own path.
    pub uri: String,
}

/// An error response of the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Twilio's error code, e.g. 21211.
    pub code: u32,
    /// What went wrong.
    pub message: String,
    /// A documentation link.
    #[serde(default)]
    pub more_info: String,
    /// The HTTP status.
    pub status: u16,
}

impl ApiError {
    /// An error with its documentation link.
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            more_info: format!("https://www.twilio.com/docs/errors/{code}"),
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PARAMS: [(&str, &str); 5] = [
        ("To", "+18005551212"),
        ("From", "+14158675309"),
        ("Digits", "1234"),
        ("Caller", "+14158675309"),
        ("CallSid", "CA1234567890ABCDE"),
    ];

    /// The example from Twilio's request-validation documentation and its libraries' tests.
    #[test]
    fn matches_twilios_published_vector() {
        assert_eq!(
            signature("12345", URL, PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify(
            "12345",
            URL,
            &PARAMS,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    /// Twilio's libraries' vector for repeated parameters: sorted by name, then value, deduplicated.
    #[test]
    fn repeated_parameters_sort_by_value() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            signature("12345", URL, params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn tampering_fails() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        let mut tampered = PARAMS;
        tampered[2] = ("Digits", "9999");
        assert!(!verify("12345", URL, &tampered, good));
        assert!(!verify("54321", URL, &PARAMS, good));
        assert!(!verify("12345", &format!("{URL}&x=1"), &PARAMS, good));
        assert!(!verify("12345", URL, &PARAMS, ""));
        assert!(!verify(
            "12345",
            URL,
            &PARAMS,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8"
        ));
    }

    #[test]
    fn default_ports_are_tried_both_ways() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let sig_with_port = signature("12345", with_port, PARAMS);
        assert!(verify("12345", URL, &PARAMS, &sig_with_port));
        assert!(verify(
            "12345",
            with_port,
            &PARAMS,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let http = "http://127.0.0.1:80/hook";
        assert_eq!(
            url_variants(http),
            vec![http.to_owned(), "http://127.0.0.1/hook".to_owned()]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:8080/hook"),
            vec!["http://127.0.0.1:8080/hook".to_owned()]
        );
    }

    #[test]
    fn api_error_json() {
        let e = ApiError::new(400, 21211, "The 'To' number is not a valid phone number.");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], 21211);
        assert_eq!(v["more_info"], "https://www.twilio.com/docs/errors/21211");
    }
}
