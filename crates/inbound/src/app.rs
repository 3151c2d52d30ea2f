//! What every webhook goes through: the receiver's state, the signature check against the
//! public URL the carrier called, and how a refusal is answered and counted.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sms_bus::Bus;
use sms_twilio::webhook::{self};

/// Counts a webhook of `kind` (`status`, `incoming`) by what became of it: `stored`,
/// `bad_signature`, `malformed`, `short_code`, `unknown_number`, `ignored`, `unavailable`.
pub(crate) fn count(kind: &'static str, outcome: &'static str) {
    metrics::counter!(sms_runtime::metrics::WEBHOOKS, "kind" => kind, "outcome" => outcome)
        .increment(1);
}

pub(crate) struct App {
    pub(crate) bus: Bus,
    /// Held numbers, a local copy of the state stream.
    pub(crate) numbers: sms_bus::Holders,
    pub(crate) public_url: String,
    pub(crate) accounts: HashMap<String, String>,
    pub(crate) patience: Duration,
}

/// A verified webhook: its form parameters and query.
pub(crate) struct Webhook {
    pub(crate) params: Vec<(String, String)>,
    pub(crate) query: HashMap<String, String>,
}

/// A refused request: its status and a short message for the caller.
pub(crate) type Rejection = (StatusCode, String);

/// A webhook refused: forbidden (bad signature) or malformed.
pub(crate) fn refused(kind: &'static str, (status, message): Rejection) -> Response {
    count(
        kind,
        if status == StatusCode::FORBIDDEN {
            "bad_signature"
        } else {
            "malformed"
        },
    );
    (status, message).into_response()
}

pub(crate) fn malformed(e: impl std::fmt::Display) -> Rejection {
    (StatusCode::BAD_REQUEST, e.to_string())
}

impl App {
    /// Parses the form and checks the signature against the public URL the carrier called.
    pub(crate) fn verify(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Webhook, Rejection> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected application/x-www-form-urlencoded".into(),
            ));
        }
        let params = webhook::parse_form(body).map_err(malformed)?;
        let query: HashMap<String, String> = uri
            .query()
            .map(|q| webhook::parse_form(q.as_bytes()))
            .transpose()
            .map_err(malformed)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let account = params
            .iter()
            .find(|(k, _)| k == "AccountSid")
            .map_or("", |(_, v)| v.as_str());
        let signature = headers
            .get(sms_twilio::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let url = format!(
            "{}{}",
            self.public_url,
            uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
        );
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let valid = !signature.is_empty()
            && self
                .accounts
                .get(account)
                .is_some_and(|token| sms_twilio::verify(token, &url, &pairs, signature));
        if !valid {
            tracing::warn!(
                url = %sms_core::text::quote(&url),
                account = %sms_core::text::quote(account),
                "webhook refused: bad or missing signature"
            );
            return Err((StatusCode::FORBIDDEN, "invalid X-Twilio-Signature".into()));
        }
        Ok(Webhook { params, query })
    }
}
