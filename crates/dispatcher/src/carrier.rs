//! Carriers behind one small trait, and the first implementation: Twilio's Messages API.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sms_core::{Reason, Status};
use sms_twilio::{ApiError, MessagePage, MessageResource};

/// A message as a carrier is asked to send it.
#[derive(Debug, Clone)]
pub struct CarrierMessage {
    /// Sender, E.164.
    pub from: String,
    /// Recipient, E.164.
    pub to: String,
    /// Body.
    pub body: String,
    /// Where the carrier reports statuses, for a carrier whose statuses come by callback
    /// ([`StatusSource::Callbacks`]).
    pub status_callback: Option<String>,
    /// Public URLs of attachments.
    pub media_urls: Vec<String>,
    /// How long the carrier may keep trying to deliver it, in seconds (Twilio's
    /// `ValidityPeriod`).
    pub validity_seconds: u32,
    /// W3C trace context for the call.
    pub traceparent: Option<String>,
}

/// What the carrier said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The carrier's id (Twilio's `SM…`; over SMPP, the first part's).
    pub carrier_sid: String,
    /// Over SMPP, every part's id, in order: receipts come per part.
    pub parts: Vec<sms_smpp::SmscId>,
}

/// Where what a carrier sends on its own connection goes (SMPP's `deliver_sm`: receipts and
/// contacts' messages). `Ok` only once it is durably stored: the carrier is answered after.
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Stores (and applies) what came on `connection`; `reason` is a receipt's error in our
    /// words (the connection's error map read it).
    async fn delivered(
        &self,
        connection: &str,
        delivered: sms_smpp::pdu::Delivered,
        reason: Option<Reason>,
    ) -> Result<(), String>;
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
    /// The carrier could not be reached (no connection) or said it is unavailable (HTTP 502,
    /// 503, 504): nothing was sent, and nothing is wrong with the message. It waits, backing
    /// off, for as long as its validity lasts, whatever the number of calls.
    #[error("the carrier cannot be reached: {detail}")]
    Unreachable {
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

/// A message as the carrier's records show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierRecord {
    /// The carrier's id.
    pub sid: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Body.
    pub body: String,
    /// Where it stands, in our words; `None` while the carrier has it queued (or in a state
    /// we do not track).
    pub status: Option<Status>,
    /// The carrier's error code, when it failed.
    pub error_code: Option<u32>,
    /// Why it failed, in our words.
    pub reason: Option<Reason>,
    /// When the carrier took it.
    pub created_at: DateTime<Utc>,
}

/// Why the carrier's records could not be read. Never taken to mean "no such message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No answer, or an answer saying to come back later.
    #[error("carrier unreachable: {0}")]
    Unreachable(String),
    /// An answer that is not what the carrier's API returns.
    #[error("unreadable carrier answer: {0}")]
    Malformed(String),
}

/// How a carrier lets us learn whether it took a message whose call ended in doubt (it timed
/// out after the request left, or the dispatcher died during it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its records can be listed by sender and recipient (Twilio's Messages list): a send in
    /// doubt is looked for ([`Carrier::find`]), bound to the carrier's message when found, and
    /// sent again only when provably absent. At most once, whatever fails.
    ListByPair,
    /// Its records can be read only under the id it gave (SMPP's `query_sm`,
    /// [`Carrier::fetch`]): a call whose answer never came has no id to ask about, and
    /// `unanswered` decides, per connection.
    ById {
        /// What becomes of a send whose answer never came.
        unanswered: Unanswered,
    },
}

/// What becomes of a send in doubt that cannot be looked for: a policy the operator picks per
/// carrier connection, documented with its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Sent again (at least once): the contact may get it twice, never not at all.
    Resend,
    /// Failed as `unknown_carrier_error` (at most once): the contact may not get it, never twice.
    Fail,
}

/// Where a carrier's statuses for our messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    /// HTTP callbacks to the URL each message names (Twilio's `StatusCallback`), signed by the
    /// account, received by the inbound service.
    Callbacks,
    /// Delivery receipts on the carrier's own connection (SMPP's `deliver_sm`), received by the
    /// adapter: a message names no callback.
    Receipts,
}

/// A carrier that sends messages, and whose records can be read back.
#[async_trait]
pub trait Carrier: Send + Sync {
    /// The account (or connection) messages go through: the carrier's status callbacks for
    /// them are signed by it, and apply to them only when they are.
    fn account(&self) -> &str;

    /// How a send in doubt is resolved with this carrier.
    fn resolution(&self) -> Resolution;

    /// Where its statuses come from.
    fn statuses(&self) -> StatusSource;

    /// Sends one message.
    async fn send(&self, message: &CarrierMessage) -> Result<Receipt, CarrierError>;

    /// The messages the carrier took from `from` to `to` since `since` (or a little before),
    /// newest first. Asked only of a carrier whose [`Carrier::resolution`] is
    /// [`Resolution::ListByPair`].
    async fn find(
        &self,
        from: &str,
        to: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<CarrierRecord>, LookupError>;

    /// One message by its sid (or id); `None` when the carrier says it has no such message.
    async fn fetch(&self, sid: &str) -> Result<Option<CarrierRecord>, LookupError>;

    /// Calls this carrier takes at once, if it bounds them (SMPP: its binds' windows): a
    /// message is claimed only once it holds one, so that a replica killed holds few calls
    /// without an outcome.
    fn admission(&self) -> Option<&tokio::sync::Semaphore> {
        None
    }

    /// Runs what the carrier needs running (SMPP's binds) until the context's shutdown,
    /// handing what it receives to its deliveries; `None` for a carrier with nothing to run
    /// (Twilio).
    fn start(&self, _context: CarrierContext) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// What a carrier that runs on its own ([`Carrier::start`]) is given.
#[derive(Clone)]
pub struct CarrierContext {
    /// Where what it receives goes.
    pub deliveries: std::sync::Arc<dyn Deliveries>,
    /// The connections it may hold, shared with the other replicas (none: as configured).
    pub slots: Option<std::sync::Arc<dyn Slots>>,
    /// When to stop.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Connection slots shared by the dispatcher replicas (SMPP binds an SMSC allows a system
/// id): a connection is opened only on a slot leased, and closed before the lease lapses.
#[async_trait]
pub trait Slots: Send + Sync {
    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;
    /// Leases a free slot of `connection`'s `total`, if this replica is below its share.
    async fn take(&self, connection: &str, total: usize) -> Result<Option<i32>, String>;
    /// Renews `slot`; `false` when it must be given back (lost, or above the share).
    async fn renew(&self, connection: &str, slot: i32, total: usize) -> Result<bool, String>;
    /// Gives `slot` back.
    async fn free(&self, connection: &str, slot: i32);
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

impl Twilio {
    /// `POST …/Messages.json`.
    async fn create(&self, m: &CarrierMessage) -> Result<Receipt, CarrierError> {
        let url = format!(
            "{}{}",
            self.api_url,
            sms_twilio::messages_path(&self.account_sid)
        );
        let form = sms_twilio::CreateMessage {
            to: m.to.clone(),
            from: m.from.clone(),
            body: m.body.clone(),
            status_callback: m.status_callback.clone(),
            validity_period: Some(m.validity_seconds),
            media_urls: m.media_urls.clone(),
        }
        .params();
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
                parts: Vec::new(),
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
        // Its front door saying it is down: the message waits. Any other server error may be
        // about this request: tried again a number of times.
        if matches!(status.as_u16(), 502..=504) {
            return Err(CarrierError::Unreachable {
                detail: format!("HTTP {status}: {detail}"),
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

/// Pages read at most when looking for a message between two numbers.
const MAX_PAGES: usize = 20;
/// Messages per page when looking.
const PAGE_SIZE: u32 = 100;

impl Twilio {
    /// A GET on the API (lists and fetches); `None` for a 404.
    async fn get(&self, path_and_query: &str) -> Result<Option<bytes::Bytes>, LookupError> {
        let url = format!("{}{path_and_query}", self.api_url);
        let response = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .map_err(|e| LookupError::Unreachable(causes(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| LookupError::Unreachable(format!("reading the answer: {e}")))?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            let detail = serde_json::from_slice::<ApiError>(&body)
                .map(|e| format!("{} {}", e.code, e.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(LookupError::Unreachable(format!("HTTP {status}: {detail}")));
        }
        Ok(Some(body))
    }
}

/// A Message resource in our words.
fn record(m: MessageResource) -> Result<CarrierRecord, LookupError> {
    let created_at = DateTime::parse_from_rfc2822(&m.date_created)
        .map_err(|e| {
            LookupError::Malformed(format!(
                "date_created {}: {e}",
                sms_core::text::quote(&m.date_created)
            ))
        })?
        .with_timezone(&Utc);
    let status = sms_twilio::webhook::MessageStatus::parse(&m.status).ours();
    let error_code = m.error_code.filter(|c| *c != 0);
    let reason = (error_code.is_some() || status.is_some_and(Status::is_error))
        .then(|| sms_twilio::errors::reason(error_code.unwrap_or(0)));
    Ok(CarrierRecord {
        status,
        reason,
        sid: m.sid,
        from: m.from,
        to: m.to,
        body: m.body,
        error_code,
        created_at,
    })
}

fn malformed(e: serde_json::Error) -> LookupError {
    LookupError::Malformed(e.to_string())
}

#[async_trait]
impl Carrier for Twilio {
    fn account(&self) -> &str {
        &self.account_sid
    }
    fn resolution(&self) -> Resolution {
        Resolution::ListByPair
    }
    fn statuses(&self) -> StatusSource {
        StatusSource::Callbacks
    }
    async fn send(&self, m: &CarrierMessage) -> Result<Receipt, CarrierError> {
        self.create(m).await
    }

    async fn find(
        &self,
        from: &str,
        to: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<CarrierRecord>, LookupError> {
        let query = sms_twilio::ListQuery {
            to: to.to_owned(),
            from: from.to_owned(),
            page_size: PAGE_SIZE,
        };
        let mut next = Some(format!(
            "{}?{}",
            sms_twilio::messages_path(&self.account_sid),
            sms_twilio::webhook::build_form(query.params().iter().map(|(k, v)| (*k, v.as_str())))
        ));
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(path) = next.take() else { break };
            let Some(body) = self.get(&path).await? else {
                return Err(LookupError::Malformed(
                    "the message list is not there (404)".into(),
                ));
            };
            let page: MessagePage = serde_json::from_slice(&body).map_err(malformed)?;
            let mut older = false;
            for m in page.messages {
                let r = record(m)?;
                if r.created_at < since {
                    older = true;
                } else {
                    found.push(r);
                }
            }
            // Newest first: a page that reaches back past `since` is the last one needed.
            if !older {
                next = page.next_page_uri.filter(|uri| uri.starts_with('/'));
            }
        }
        Ok(found)
    }

    async fn fetch(&self, sid: &str) -> Result<Option<CarrierRecord>, LookupError> {
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(LookupError::Malformed(format!(
                "{} is not a message sid",
                sms_core::text::quote(sid)
            )));
        }
        let path = sms_twilio::message_path(&self.account_sid, sid);
        match self.get(&path).await? {
            None => Ok(None),
            Some(body) => {
                let m: MessageResource = serde_json::from_slice(&body).map_err(malformed)?;
                if m.sid != sid {
                    return Err(LookupError::Malformed(format!(
                        "asked for {sid}, the carrier answered with {}",
                        sms_core::text::quote(&m.sid)
                    )));
                }
                record(m).map(Some)
            }
        }
    }
}

/// A request that failed before a reply: safe to retry only when it never left.
fn transport_error(e: &reqwest::Error) -> CarrierError {
    if e.is_connect() || e.is_builder() {
        CarrierError::Unreachable {
            detail: causes(e),
            retry_after: None,
        }
    } else {
        CarrierError::Ambiguous(causes(e))
    }
}

/// An error with every cause under it: reqwest's own words ("error sending request") say
/// nothing of what went wrong (a reset, a closed connection, a timeout).
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
