//! The simulator's state and its handle, [`Sim`]: what it took, what it recorded, how it
//! decides a message's fate, and who may call it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use sms_twilio::{ApiError, MessageResource};

use crate::config::{Behaviour, SimConfig, first_key};

/// One Messages API request the simulator received.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// The account in the URL.
    pub account_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Body`.
    pub body: String,
    /// `StatusCallback`.
    pub status_callback: String,
    /// `MediaUrl` parameters.
    pub media_urls: Vec<String>,
    /// `ValidityPeriod`, in seconds, when given.
    pub validity_period: Option<u32>,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The W3C `traceparent` header, if sent.
    pub traceparent: Option<String>,
    /// Sizes of the attachments fetched from the `MediaUrl`s.
    pub media_sizes: Vec<u64>,
    /// The HTTP status answered.
    pub http_status: u16,
    /// The sid given, when the message was accepted.
    pub sid: Option<String>,
}

/// A webhook the endpoint received.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReceivedHook {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: String,
    /// Whether the signature is the secret's, when one was given to the listing.
    pub signature_valid: Option<bool>,
}

pub(crate) struct Inner {
    pub(crate) config: SimConfig,
    pub(crate) behaviour: RwLock<Behaviour>,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) callbacks_sent: AtomicU64,
    pub(crate) callbacks_failed: AtomicU64,
    pub(crate) http: reqwest::Client,
    /// Hosted inbound media: id → (content type, bytes).
    pub(crate) media: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Every message taken, as the API shows it now, in the order taken.
    pub(crate) messages: Mutex<Messages>,
    /// Message reads (lists and fetches) received.
    pub(crate) lookups: AtomicU64,
    /// Where contacts' messages go.
    pub(crate) incoming_url: RwLock<Option<String>>,
    /// This simulator's own base URL (for hosted media), once it serves.
    pub(crate) public_url: RwLock<Option<String>>,
    /// Webhooks the platform delivered to the development endpoint.
    pub(crate) hooks: Mutex<Vec<ReceivedHook>>,
    /// The numbers for sale and those held.
    pub(crate) numbers: Mutex<crate::stock::Numbers>,
    /// The SMSC.
    pub(crate) smsc: crate::smsc_state::Smsc,
}

/// The messages the simulated carrier took.
#[derive(Default)]
pub(crate) struct Messages {
    pub(crate) all: Vec<MessageResource>,
    pub(crate) by_sid: HashMap<String, usize>,
}

/// A running (or runnable) simulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

impl Sim {
    /// A simulator with `config`.
    pub fn new(config: SimConfig) -> anyhow::Result<Sim> {
        let incoming_url = config.incoming_url.clone();
        Ok(Sim {
            inner: Arc::new(Inner {
                behaviour: RwLock::new(config.behaviour.clone()),
                config,
                requests: Mutex::new(Vec::new()),
                callbacks_sent: AtomicU64::new(0),
                callbacks_failed: AtomicU64::new(0),
                http: sms_runtime::http_client(Duration::from_secs(10))?,
                media: Mutex::new(HashMap::new()),
                messages: Mutex::new(Messages::default()),
                lookups: AtomicU64::new(0),
                incoming_url: RwLock::new(incoming_url),
                public_url: RwLock::new(None),
                hooks: Mutex::default(),
                numbers: Mutex::new(crate::stock::Numbers::stocked()),
                smsc: crate::smsc_state::Smsc::default(),
            }),
        })
    }

    /// Sets where contacts' messages are delivered.
    pub fn set_incoming_url(&self, url: &str) {
        *self
            .inner
            .incoming_url
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(url.to_owned());
    }

    pub(crate) fn incoming_url(&self) -> Option<String> {
        self.inner
            .incoming_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The account contacts' messages come through: the first configured.
    pub(crate) fn first_account(&self) -> String {
        first_key(&self.inner.config.accounts).unwrap_or_default()
    }

    /// A contact texts one of our numbers: delivered to the incoming-message URL (with
    /// attachments hosted here). Returns the webhook's HTTP status and the message's sid.
    pub async fn reply(
        &self,
        from: &str,
        to: &str,
        body: &str,
        media: Vec<(String, Vec<u8>)>,
    ) -> Result<(u16, String), String> {
        // A number whose messages come over SMPP gets them on a bind.
        if self.receives_over_smpp(to) {
            if !media.is_empty() {
                return Err("SMPP carries no attachments".into());
            }
            return self.smpp_reply(from, to, body).await;
        }
        // A held number sends its messages where its holder said; a number of the inventory
        // nobody holds receives nothing; any other number uses the general incoming URL.
        let url = match self.route_incoming(to)? {
            Some(url) => url,
            None => self.incoming_url().ok_or_else(|| {
                "no incoming-message URL is set (SMS_SIM_INCOMING_URL)".to_owned()
            })?,
        };
        let account = self.first_account();
        let base = self
            .inner
            .public_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        let media = media
            .into_iter()
            .map(|(content_type, data)| {
                let url = self.host_media(&base, &account, &content_type, data);
                (url, content_type)
            })
            .collect();
        let message = Incoming {
            from: from.to_owned(),
            to: to.to_owned(),
            body: body.to_owned(),
            media,
            sid: None,
        };
        self.send_incoming(&url, &account, &message).await
    }

    /// Changes the behaviour while running.
    pub fn update(&self, change: impl FnOnce(&mut Behaviour)) {
        let mut b = self
            .inner
            .behaviour
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut b);
    }

    /// Every Messages API request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_requests().clone()
    }

    /// Status callbacks delivered (answered 2xx) and given up on.
    pub fn callback_counts(&self) -> (u64, u64) {
        (
            self.inner.callbacks_sent.load(Ordering::Relaxed),
            self.inner.callbacks_failed.load(Ordering::Relaxed),
        )
    }

    /// Message reads (lists and fetches) received so far, answered or not.
    pub fn lookups(&self) -> u64 {
        self.inner.lookups.load(Ordering::Relaxed)
    }

    /// The message `sid` as the API shows it now.
    pub fn message(&self, sid: &str) -> Option<MessageResource> {
        let messages = self.lock_messages();
        messages.by_sid.get(sid).map(|&i| messages.all[i].clone())
    }

    pub(crate) fn lock_messages(&self) -> std::sync::MutexGuard<'_, Messages> {
        self.inner
            .messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves message `sid` to `status` (with `error_code` when it ends in an error).
    pub(crate) fn set_status(&self, sid: &str, status: &str, error_code: Option<u32>) {
        let mut messages = self.lock_messages();
        let Some(&i) = messages.by_sid.get(sid) else {
            return;
        };
        let m = &mut messages.all[i];
        let now = chrono::Utc::now().to_rfc2822();
        m.status = status.to_owned();
        m.date_updated = now.clone();
        if status == "sent" {
            m.date_sent = Some(now);
        }
        if error_code.is_some() {
            m.error_code = error_code;
            m.error_message = error_code.map(|c| sms_twilio::errors::reason(c).as_str().to_owned());
        }
    }

    pub(crate) fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_hooks(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedHook>> {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The behaviour as it is now, read in place: it holds sets of thousands of numbers (the
    /// chaos run's), and a copy per call made the simulator itself the slow carrier under
    /// load. Never held across an `.await` (the guard is not `Send`, so the compiler says so).
    pub(crate) fn behaviour(&self) -> std::sync::RwLockReadGuard<'_, Behaviour> {
        self.inner
            .behaviour
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches a message's `MediaUrl`s and checks them with the MMS rules; `None` when fine.
    pub(crate) async fn check_media(&self, record: &mut RecordedRequest) -> Option<ApiError> {
        let mut files = Vec::new();
        for url in &record.media_urls {
            let fetched = match self.inner.http.get(url).send().await {
                Ok(r) if r.status().is_success() => {
                    let declared = r
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    r.bytes().await.map(|b| (declared, b.to_vec())).ok()
                }
                _ => None,
            };
            match fetched {
                Some(file) => files.push(file),
                None => {
                    return Some(ApiError::new(
                        400,
                        21620,
                        format!("Invalid media URL: {url}"),
                    ));
                }
            }
        }
        record.media_sizes = files.iter().map(|(_, b)| b.len() as u64).collect();
        match sms_core::mms::check_attachments(
            files.iter().map(|(t, b)| (t.as_str(), b.as_slice())),
        ) {
            Ok(_) => None,
            Err(
                sms_core::mms::MmsError::TypeMismatch { .. }
                | sms_core::mms::MmsError::TypeNotAllowed { .. }
                | sms_core::mms::MmsError::Unrecognized { .. },
            ) => Some(ApiError::new(400, 12300, "Invalid Content-Type")),
            Err(e) => Some(ApiError::new(
                400,
                30019,
                format!("Content size exceeds carrier limit: {e}"),
            )),
        }
    }

    /// Hosts a file the way Twilio hosts inbound media (behind the account's Basic auth) and
    /// returns its URL on `base` (this simulator's base URL).
    pub fn host_media(
        &self,
        base: &str,
        account_sid: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> String {
        let id = format!("ME{}", uuid::Uuid::new_v4().simple());
        self.inner
            .media
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (content_type.to_owned(), data));
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/Media/{id}",
            base.trim_end_matches('/')
        )
    }

    /// Decides whether an API call fails before a message is created.
    pub(crate) fn api_failure(&self, to: &str) -> Option<(StatusCode, ApiError)> {
        let mut b = self
            .inner
            .behaviour
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = b.throttled.get_mut(to).filter(|n| **n > 0) {
            *n -= 1;
            return Some(too_many_requests());
        }
        if let Some(n) = b.server_errors.get_mut(to).filter(|n| **n > 0) {
            *n -= 1;
            return Some((
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError::new(500, 20500, "Internal Server Error"),
            ));
        }
        if let Some(n) = b.transient_failures.get_mut(to).filter(|n| **n > 0) {
            *n -= 1;
            return Some((
                StatusCode::SERVICE_UNAVAILABLE,
                ApiError::new(503, 20503, "Service Unavailable"),
            ));
        }
        if b.rate_429 > 0.0 && fastrand::f64() < b.rate_429 {
            return Some(too_many_requests());
        }
        if b.rate_5xx > 0.0 && fastrand::f64() < b.rate_5xx {
            return Some((
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiError::new(500, 20500, "Internal Server Error"),
            ));
        }
        if b.carrier_opted_out.contains(to) {
            return Some((
                StatusCode::BAD_REQUEST,
                ApiError::new(400, 21610, "Attempt to send to unsubscribed recipient"),
            ));
        }
        None
    }

    /// The statuses a message goes through after it is accepted, with the error code of the
    /// final one.
    pub(crate) fn fate(&self, to: &str) -> (&'static [&'static str], Option<u32>) {
        let b = self.behaviour();
        if b.landlines.contains(to) {
            (&["queued", "failed"], Some(30006))
        } else if b.spam.contains(to) {
            (&["queued", "sent", "undelivered"], Some(30007))
        } else if b.unknown_error.contains(to) {
            (&["queued", "failed"], Some(30008))
        } else if b.unreachable.contains(to) {
            (&["queued", "sent", "undelivered"], Some(30003))
        } else {
            (&["queued", "sent", "delivered"], None)
        }
    }
}

pub(crate) fn too_many_requests() -> (StatusCode, ApiError) {
    (
        StatusCode::TOO_MANY_REQUESTS,
        ApiError::new(429, 20429, "Too Many Requests"),
    )
}

pub(crate) fn api_error(status: StatusCode, error: ApiError) -> Response {
    (status, Json(error)).into_response()
}

/// The answer to a control request without an account's credentials.
pub(crate) fn control_refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Basic realm=\"carrier-sim\"")],
        "the simulator's control endpoints take an account's Basic auth",
    )
        .into_response()
}

impl Sim {
    /// Whether `headers` carry the Basic auth of one of the simulator's accounts.
    pub(crate) fn controlled_by(&self, headers: &HeaderMap) -> bool {
        self.inner
            .config
            .accounts
            .keys()
            .any(|account| authorized(self, account, headers))
    }
}

/// Checks HTTP Basic auth against the account in the path.
/// The answer to an API call without the account's credentials.
pub(crate) fn unauthorized() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        ApiError::new(401, 20003, "Authentication Error - invalid username"),
    )
}

pub(crate) fn authorized(sim: &Sim, account_sid: &str, headers: &HeaderMap) -> bool {
    let Some(token) = sim.inner.config.accounts.get(account_sid) else {
        return false;
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    given.as_deref() == Some(format!("{account_sid}:{token}").as_str())
}

/// An incoming message the simulated carrier delivers to our webhook.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The contact (or a short code).
    pub from: String,
    /// Our number.
    pub to: String,
    /// Text.
    pub body: String,
    /// Attachments: (URL, content type).
    pub media: Vec<(String, String)>,
    /// The carrier's id; a fresh one when `None`. Reuse one to replay a webhook.
    pub sid: Option<String>,
}
