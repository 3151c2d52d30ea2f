//! Carriers behind one small trait, and the first implementation: Twilio's Messages API.

use std::time::Duration;

use async_trait::async_trait;
use sms_core::Reason;
use sms_twilio::{ApiError, MessageResource};

/// A message as a carrier is asked to send it.
#[derive(Debug, Clone)]
pub struct CarrierMessage {
    /// Sender, E.164.
    pub from: String,
    /// Recipient, E.164.
    pub to: String,
    /// Body.
    pub body: String,
    /// Where the carrier reports status.
    pub status_callback: String,
    /// Public URLs of attachments.
    pub media_urls: Vec<String>,
    /// W3C trace context for the call.
    pub traceparent: Option<String>,
}

/// What the carrier said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The carrier's id (Twilio's `SM…`).
    pub carrier_sid: String,
}

/// Why a carrier call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Will never succeed; the message fails with `reason`.
    #[error("{reason} (carrier code {code:?}): {detail}")]
    Permanent {
        /// Our reason.
        reason: Reason,
        /// The carrier's code.
        code: Option<u32>,
        /// The carrier's words.
        detail: String,
    },
    /// Nothing was sent; trying later may work.
    #[error("{reason} (retryable): {detail}")]
    Retryable {
        /// Our reason, if it stays failing.
        reason: Reason,
        /// The carrier's code, if any.
        code: Option<u32>,
        /// What happened.
        detail: String,
        /// When the carrier asked us to come back.
        retry_after: Option<Duration>,
    },
    /// The call may or may not have reached the carrier (a timeout after sending). Sending
    /// again could text the contact twice, so the message is left for the carrier's callbacks.
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
}

/// A carrier that sends messages.
#[async_trait]
pub trait Carrier: Send + Sync {
    /// Sends one message.
    async fn send(&self, message: &CarrierMessage) -> Result<Receipt, CarrierError>;
}

/// Twilio's Messages API (or anything that speaks it, like the carrier simulator).
#[derive(Debug, Clone)]
pub struct Twilio {
    http: reqwest::Client,
    api_url: String,
    account_sid: String,
    auth_token: String,
}

impl Twilio {
    /// A client for `account_sid` at `api_url` (`https://api.twilio.com` in production).
    pub fn new(http: reqwest::Client, api_url: &str, account_sid: &str, auth_token: &str) -> Self {
        Twilio {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
        }
    }
}

#[async_trait]
impl Carrier for Twilio {
    async fn send(&self, m: &CarrierMessage) -> Result<Receipt, CarrierError> {
        let url = format!(
            "{}{}",
            self.api_url,
            sms_twilio::messages_path(&self.account_sid)
        );
        let mut form: Vec<(&str, &str)> = vec![
            ("To", &m.to),
            ("From", &m.from),
            ("Body", &m.body),
            ("StatusCallback", &m.status_callback),
        ];
        form.extend(m.media_urls.iter().map(|u| ("MediaUrl", u.as_str())));
        let mut request = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form);
        if let Some(tp) = &m.traceparent {
            request = request.header("traceparent", tp);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(transport_error(&e)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CarrierError::Ambiguous(format!("reading the reply failed: {e}")))?;
        if status.is_success() {
            let resource: MessageResource = serde_json::from_slice(&bytes).map_err(|e| {
                CarrierError::Ambiguous(format!(
                    "the carrier accepted but its reply is unreadable: {e}"
                ))
            })?;
            return Ok(Receipt {
                carrier_sid: resource.sid,
            });
        }
        let api_error: Option<ApiError> = serde_json::from_slice(&bytes).ok();
        let code = api_error.as_ref().map(|e| e.code);
        let detail = api_error
            .map(|e| e.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        if status.as_u16() == 429 {
            return Err(CarrierError::Retryable {
                reason: Reason::RateLimited,
                code,
                detail,
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(CarrierError::Retryable {
                reason: Reason::CarrierUnavailable,
                code,
                detail: format!("HTTP {status}: {detail}"),
                retry_after,
            });
        }
        let reason = code.map_or(Reason::UnknownCarrierError, sms_twilio::errors::reason);
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(CarrierError::Permanent {
                reason: Reason::AccountProblem,
                code,
                detail,
            });
        }
        if reason.is_retryable() {
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                retry_after,
            })
        } else {
            Err(CarrierError::Permanent {
                reason,
                code,
                detail,
            })
        }
    }
}

/// A request that failed before a reply: safe to retry only when it never left.
fn transport_error(e: &reqwest::Error) -> CarrierError {
    if e.is_connect() || e.is_builder() {
        CarrierError::Retryable {
            reason: Reason::CarrierUnavailable,
            code: None,
            detail: e.to_string(),
            retry_after: None,
        }
    } else {
        CarrierError::Ambiguous(e.to_string())
    }
}
