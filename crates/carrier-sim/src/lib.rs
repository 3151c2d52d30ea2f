//! A carrier simulator that speaks Twilio's wire format, so that the dispatcher's real Twilio
//! adapter and the inbound receiver's real webhook parser are what runs in development and tests.
//!
//! * `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form-encoded, HTTP Basic auth with
//!   the account SID and auth token, a Twilio-shaped JSON reply with an `SM…` sid;
//! * status callbacks (`queued` → `sent` → `delivered`, or `failed` / `undelivered` with Twilio
//!   error codes) POSTed to the `StatusCallback` URL, signed with `X-Twilio-Signature`;
//! * behaviours: landlines (30006), spam filtering (30007), unknown errors (30008), unreachable
//!   handsets (30003), carrier opt-outs (21610), latency, HTTP 429 and 5xx;
//! * `GET …/Messages.json?To=…&From=…` (newest first, paged) and `GET …/Messages/{Sid}.json`:
//!   the messages it took and where each one stands, as Twilio's API lists and fetches them;
//! * callbacks retried as Twilio's connection overrides in the URL's fragment say (`#rc=5&rp=5xx`);
//! * faults for resolution tests: the API's reply never arriving after the message was taken,
//!   lookups answering 503 or garbage;
//! * every request received is recorded, for tests (`GET /_sim/requests`).
//!
//! Its own control endpoints (`GET /_sim/requests`, `POST /_sim/reply`, `GET /_sim/hooks`)
//! take the Basic auth of any of its accounts, like its REST API: in development the platform
//! may fetch from the simulator's address (inbound media), and an attachment URL pointing at
//! them must not read every organization's messages back (it has no credentials to send).

mod hooks;
mod numbers;
mod smsc;
pub use hooks::ReceivedHook;
pub use smsc::{ReceiptIds, SmppBehaviour, SubmittedPart};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Serialize;
use sms_twilio::overrides::{Attempt, ConnectionOverrides};
use sms_twilio::webhook::{
    IncomingMessage, Media as TwilioMedia, MessageStatus as TwilioStatus, StatusCallback,
};
use sms_twilio::{API_VERSION, ApiError, MessageResource, SIGNATURE_HEADER};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the simulated carrier behaves. Number sets hold E.164 recipients.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Recipients that are landlines: `failed` with 30006.
    pub landlines: HashSet<String>,
    /// Recipients whose messages are filtered as spam: `undelivered` with 30007.
    pub spam: HashSet<String>,
    /// Recipients that hit an unexplained carrier error: `failed` with 30008.
    pub unknown_error: HashSet<String>,
    /// Recipients whose handset is off: `undelivered` with 30003.
    pub unreachable: HashSet<String>,
    /// Recipients who opted out at the carrier: the API call itself fails with 21610.
    pub carrier_opted_out: HashSet<String>,
    /// Recipients whose next N API calls fail with HTTP 503 (then succeed).
    pub transient_failures: HashMap<String, u32>,
    /// Recipients whose next N API calls fail with HTTP 500 (then succeed).
    pub server_errors: HashMap<String, u32>,
    /// Recipients whose next N API calls fail with HTTP 429 (then succeed).
    pub throttled: HashMap<String, u32>,
    /// Share of API calls answered with HTTP 429, at random (0.0 to 1.0).
    pub rate_429: f64,
    /// Share of API calls answered with HTTP 500, at random (0.0 to 1.0).
    pub rate_5xx: f64,
    /// Delay before each API reply.
    pub api_latency: Duration,
    /// Delay between status callbacks.
    pub callback_delay: Duration,
    /// Whether status callbacks are sent at all (the message goes through its statuses
    /// either way, as the API's reads show).
    pub callbacks: bool,
    /// Recipients whose messages are taken (and go on to be delivered) while the API's reply
    /// is held back for [`Behaviour::hang`]: the caller times out without knowing.
    pub taken_unanswered: HashSet<String>,
    /// How long a held-back reply is held.
    pub hang: Duration,
    /// Whether the message reads (list, fetch) answer HTTP 503.
    pub lookups_unavailable: bool,
    /// Whether the message reads answer 200 with a body that is not Twilio's JSON.
    pub lookups_garbled: bool,
    /// A contact who answers: every message taken (or each whose body contains the pattern)
    /// gets this reply from its recipient, after a moment.
    pub auto_reply: Option<AutoReply>,
    /// Whether the phone-number API (search, rent, list, configure, release) answers 503.
    pub numbers_unavailable: bool,
    /// Whether a rent takes the number but holds its answer back for [`Behaviour::hang`]
    /// (at least a second): the caller times out not knowing it bought it.
    pub rent_unanswered: bool,
    /// The SMSC's own behaviours (its share of the ones above: throttled, taken unanswered,
    /// landlines, spam, unknown errors, unreachable, latency, callback delay as receipt delay).
    pub smpp: SmppBehaviour,
}

/// The scripted contact's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReply {
    /// What the contact texts back.
    pub text: String,
    /// Only to messages whose body contains this (case-insensitive); every message when `None`.
    pub when_contains: Option<String>,
    /// How long the contact takes.
    pub delay: Duration,
}

impl AutoReply {
    /// Whether it answers `body`.
    pub fn answers(&self, body: &str) -> bool {
        self.when_contains
            .as_ref()
            .is_none_or(|p| body.to_lowercase().contains(&p.to_lowercase()))
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accounts: SID → auth token.
    pub accounts: HashMap<String, String>,
    /// Initial behaviour (can be changed while running).
    pub behaviour: Behaviour,
    /// Where contacts' messages are delivered (the platform's incoming-message webhook), as a
    /// number's "A message comes in" URL is set at Twilio.
    pub incoming_url: Option<String>,
    /// SMPP accounts: system id → password (no SMPP binds are taken when empty).
    pub smpp_accounts: HashMap<String, String>,
    /// How the SMSC reads and writes GSM-7 (`SMS_SIM_SMPP_GSM7`: unpacked or packed).
    pub smpp_gsm7: sms_smpp::parts::Gsm7Packing,
}

impl SimConfig {
    /// One account, delivering everything, callbacks on.
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        SimConfig {
            accounts: HashMap::from([(account_sid.to_owned(), auth_token.to_owned())]),
            behaviour: Behaviour {
                callbacks: true,
                callback_delay: Duration::from_millis(5),
                ..Behaviour::default()
            },
            incoming_url: None,
            smpp_accounts: HashMap::from([(
                DEFAULT_SMPP_SYSTEM_ID.to_owned(),
                DEFAULT_SMPP_PASSWORD.to_owned(),
            )]),
            smpp_gsm7: sms_smpp::parts::Gsm7Packing::Unpacked,
        }
    }
}

/// The SMSC's default system id (development only).
pub const DEFAULT_SMPP_SYSTEM_ID: &str = "sim";
/// The SMSC's default password (development only).
pub const DEFAULT_SMPP_PASSWORD: &str = "simpass";

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

struct Inner {
    config: SimConfig,
    behaviour: RwLock<Behaviour>,
    requests: Mutex<Vec<RecordedRequest>>,
    callbacks_sent: AtomicU64,
    callbacks_failed: AtomicU64,
    http: reqwest::Client,
    /// Hosted inbound media: id → (content type, bytes).
    media: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Every message taken, as the API shows it now, in the order taken.
    messages: Mutex<Messages>,
    /// Message reads (lists and fetches) received.
    lookups: AtomicU64,
    /// Where contacts' messages go.
    incoming_url: RwLock<Option<String>>,
    /// This simulator's own base URL (for hosted media), once it serves.
    public_url: RwLock<Option<String>>,
    /// Webhooks the platform delivered to the development endpoint.
    hooks: Mutex<Vec<hooks::ReceivedHook>>,
    /// The numbers for sale and those held.
    numbers: Mutex<numbers::Numbers>,
    /// The SMSC.
    smsc: smsc::Smsc,
}

/// The messages the simulated carrier took.
#[derive(Default)]
struct Messages {
    all: Vec<MessageResource>,
    by_sid: HashMap<String, usize>,
}

/// A running (or runnable) simulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
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
                numbers: Mutex::new(numbers::Numbers::stocked()),
                smsc: smsc::Smsc::default(),
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

    fn incoming_url(&self) -> Option<String> {
        self.inner
            .incoming_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The account contacts' messages come through: the first configured.
    fn first_account(&self) -> String {
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

    fn lock_messages(&self) -> std::sync::MutexGuard<'_, Messages> {
        self.inner
            .messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves message `sid` to `status` (with `error_code` when it ends in an error).
    fn set_status(&self, sid: &str, status: &str, error_code: Option<u32>) {
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

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_hooks(&self) -> std::sync::MutexGuard<'_, Vec<hooks::ReceivedHook>> {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The behaviour as it is now, read in place: it holds sets of thousands of numbers (the
    /// chaos run's), and a copy per call made the simulator itself the slow carrier under
    /// load. Never held across an `.await` (the guard is not `Send`, so the compiler says so).
    fn behaviour(&self) -> std::sync::RwLockReadGuard<'_, Behaviour> {
        self.inner
            .behaviour
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches a message's `MediaUrl`s and checks them with the MMS rules; `None` when fine.
    async fn check_media(&self, record: &mut RecordedRequest) -> Option<ApiError> {
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

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Media/{media_id}",
                get(get_media),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(create_message).get(list_messages),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}",
                get(fetch_message),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/AvailablePhoneNumbers/{country}/{resource}",
                get(numbers::search),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json",
                post(numbers::rent).get(numbers::list_held),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}",
                get(numbers::fetch_held)
                    .post(numbers::update_held)
                    .delete(numbers::release),
            )
            .route("/_sim/requests", get(list_requests))
            .route("/_sim/reply", post(post_reply))
            .route("/_sim/hooks", post(hooks::receive).get(hooks::list))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            *self
                .inner
                .public_url
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(format!("http://{addr}"));
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }

    /// Decides whether an API call fails before a message is created.
    fn api_failure(&self, to: &str) -> Option<(StatusCode, ApiError)> {
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
    fn fate(&self, to: &str) -> (&'static [&'static str], Option<u32>) {
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

fn too_many_requests() -> (StatusCode, ApiError) {
    (
        StatusCode::TOO_MANY_REQUESTS,
        ApiError::new(429, 20429, "Too Many Requests"),
    )
}

fn api_error(status: StatusCode, error: ApiError) -> Response {
    (status, Json(error)).into_response()
}

async fn get_media(
    State(sim): State<Sim>,
    Path((account_sid, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&sim, &account_sid, &headers) {
        return unauthorized();
    }
    let found = sim
        .inner
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&media_id)
        .cloned();
    match found {
        Some((content_type, data)) => {
            ([(axum::http::header::CONTENT_TYPE, content_type)], data).into_response()
        }
        None => api_error(
            StatusCode::NOT_FOUND,
            ApiError::new(404, 20404, "Not found"),
        ),
    }
}

async fn list_requests(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    if !sim.controlled_by(&headers) {
        return control_refused();
    }
    Json(sim.requests()).into_response()
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

fn authorized(sim: &Sim, account_sid: &str, headers: &HeaderMap) -> bool {
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

async fn create_message(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    let latency = sim.behaviour().api_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // What arrived is recorded as it came, a form Twilio would refuse included; the reading
    // that decides is `CreateMessage`'s (sms-twilio), the dispatcher's own writer's.
    let form = sms_twilio::CreateMessage::from_params(&params);
    let first = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut record = RecordedRequest {
        account_sid: account_sid.clone(),
        from: first("From"),
        to: first("To"),
        body: first("Body"),
        status_callback: first("StatusCallback"),
        validity_period: form.as_ref().ok().and_then(|f| f.validity_period),
        received_at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
        media_urls: params
            .iter()
            .filter(|(k, _)| k == "MediaUrl")
            .map(|(_, v)| v.clone())
            .collect(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        media_sizes: Vec::new(),
        http_status: 0,
        sid: None,
    };
    // Like a carrier, fetch the attachments and check them before accepting the message.
    let response = if !authorized(&sim, &account_sid, &headers) {
        unauthorized()
    } else {
        match form {
            Err(error) => api_error(StatusCode::BAD_REQUEST, error),
            Ok(form) => {
                let media_error = if form.media_urls.is_empty() {
                    None
                } else {
                    sim.check_media(&mut record).await
                };
                match media_error {
                    Some(error) => api_error(StatusCode::BAD_REQUEST, error),
                    None => respond(&sim, &account_sid, &form, &mut record),
                }
            }
        }
    };
    record.http_status = response.status().as_u16();
    let answer = sim
        .behaviour()
        .auto_reply
        .clone()
        .filter(|a| a.answers(&record.body));
    if record.sid.is_some()
        && let Some(answer) = answer
    {
        // The contact answers from the number we texted, to the number that texted them.
        let (sim, from, to) = (sim.clone(), record.to.clone(), record.from.clone());
        tokio::spawn(async move {
            tokio::time::sleep(answer.delay).await;
            if let Err(e) = sim.reply(&from, &to, &answer.text, Vec::new()).await {
                tracing::warn!(error = %e, "scripted reply not delivered");
            }
        });
    }
    let hang = record.sid.is_some() && sim.behaviour().taken_unanswered.contains(&record.to);
    sim.lock_requests().push(record);
    if hang {
        // Taken, but the caller hears nothing until it gives up.
        let hang = sim.behaviour().hang;
        tokio::time::sleep(hang).await;
    }
    response
}

/// Answers a message read: `None` to go on, or the failure the behaviour asks for.
fn lookup_fault(sim: &Sim, account_sid: &str, headers: &HeaderMap) -> Option<Response> {
    if !authorized(sim, account_sid, headers) {
        return Some(unauthorized());
    }
    sim.inner.lookups.fetch_add(1, Ordering::Relaxed);
    let b = sim.behaviour();
    if b.lookups_unavailable {
        return Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::new(503, 20503, "Service Unavailable"),
        ));
    }
    b.lookups_garbled
        .then(|| (StatusCode::OK, "<html>upstream proxy error</html>").into_response())
}

/// `GET …/Messages.json?To=…&From=…&PageSize=…&Page=…`: newest first.
async fn list_messages(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = lookup_fault(&sim, &account_sid, &headers) {
        return fault;
    }
    let filter = |name: &str| query.get(name).filter(|v| !v.is_empty());
    let page_size = query
        .get("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, sms_twilio::MAX_PAGE_SIZE as usize);
    let page = query
        .get("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let matching: Vec<MessageResource> = sim
        .lock_messages()
        .all
        .iter()
        .rev()
        .filter(|m| m.account_sid == account_sid)
        .filter(|m| filter("To").is_none_or(|to| *to == m.to))
        .filter(|m| filter("From").is_none_or(|from| *from == m.from))
        .cloned()
        .collect();
    let uri = |page: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for name in ["To", "From"] {
            if let Some(v) = filter(name) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("PageSize", &page_size.to_string());
        q.append_pair("Page", &page.to_string());
        format!("{}?{}", sms_twilio::messages_path(&account_sid), q.finish())
    };
    let messages: Vec<MessageResource> = matching
        .iter()
        .skip(page * page_size)
        .take(page_size)
        .cloned()
        .collect();
    let more = matching.len() > (page + 1) * page_size;
    Json(sms_twilio::MessagePage {
        messages,
        next_page_uri: more.then(|| uri(page + 1)),
        page: u32::try_from(page).unwrap_or(u32::MAX),
        page_size: u32::try_from(page_size).unwrap_or(u32::MAX),
        uri: uri(page),
    })
    .into_response()
}

/// `GET …/Messages/{Sid}.json`.
async fn fetch_message(
    State(sim): State<Sim>,
    Path((account_sid, message_sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = lookup_fault(&sim, &account_sid, &headers) {
        return fault;
    }
    let sid = message_sid.strip_suffix(".json").unwrap_or(&message_sid);
    match sim.message(sid).filter(|m| m.account_sid == account_sid) {
        Some(m) => Json(m).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            ApiError::new(
                404,
                20404,
                format!(
                    "The requested resource {} was not found",
                    sms_twilio::message_path(&account_sid, sid)
                ),
            ),
        ),
    }
}

/// Answers a Create-Message call whose form is good (the account's credentials checked).
fn respond(
    sim: &Sim,
    account_sid: &str,
    form: &sms_twilio::CreateMessage,
    r: &mut RecordedRequest,
) -> Response {
    if sms_core::PhoneNumber::parse_valid(&form.to, None).is_err() {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(
                400,
                21211,
                format!("The 'To' number {} is not a valid phone number.", form.to),
            ),
        );
    }
    if !sim.may_send_from(account_sid, &form.from) {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(
                400,
                21606,
                format!(
                    "The From phone number {} is not a valid, SMS-capable inbound phone number \
                     or short code for your account.",
                    form.from
                ),
            ),
        );
    }
    if let Some((status, error)) = sim.api_failure(&form.to) {
        return api_error(status, error);
    }
    let prefix = if form.media_urls.is_empty() {
        "SM"
    } else {
        "MM"
    };
    let sid = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().to_rfc2822();
    let resource = MessageResource {
        sid: sid.clone(),
        account_sid: account_sid.to_owned(),
        from: form.from.clone(),
        to: form.to.clone(),
        body: form.body.clone(),
        status: "queued".into(),
        num_segments: sms_core::count(&form.body).segments.max(1).to_string(),
        num_media: form.media_urls.len().to_string(),
        direction: "outbound-api".into(),
        api_version: API_VERSION.into(),
        date_created: now.clone(),
        date_updated: now,
        date_sent: None,
        error_code: None,
        error_message: None,
        price: None,
        price_unit: "USD".into(),
        uri: format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"),
    };
    r.sid = Some(sid.clone());
    {
        let mut messages = sim.lock_messages();
        let index = messages.all.len();
        messages.all.push(resource.clone());
        messages.by_sid.insert(sid, index);
    }
    spawn_progress(
        sim.clone(),
        resource.clone(),
        form.status_callback.clone().unwrap_or_default(),
    );
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// Takes the message through its statuses (as the API's reads show them) and posts a signed
/// status callback for each, when callbacks are on and a `StatusCallback` was given.
fn spawn_progress(sim: Sim, message: MessageResource, url: String) {
    let (callback_delay, callbacks) = {
        let b = sim.behaviour();
        (b.callback_delay, b.callbacks)
    };
    let token = sim
        .inner
        .config
        .accounts
        .get(&message.account_sid)
        .cloned()
        .unwrap_or_default();
    let (statuses, error_code) = sim.fate(&message.to);
    tokio::spawn(async move {
        for (i, status) in statuses.iter().enumerate() {
            tokio::time::sleep(callback_delay).await;
            let last = i + 1 == statuses.len();
            let error_code = if last { error_code } else { None };
            sim.set_status(&message.sid, status, error_code);
            if !callbacks || url.is_empty() {
                continue;
            }
            let callback = StatusCallback {
                message_sid: message.sid.clone(),
                account_sid: message.account_sid.clone(),
                status: TwilioStatus::parse(status),
                error_code,
                from: message.from.clone(),
                to: message.to.clone(),
            };
            let params = callback.to_form();
            let delivered = sim
                .post_webhook(&url, &token, params.iter().map(|(k, v)| (*k, v.as_str())))
                .await;
            let counter = if delivered.is_ok_and(|s| (200..300).contains(&s)) {
                &sim.inner.callbacks_sent
            } else {
                &sim.inner.callbacks_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
}

impl Sim {
    /// POSTs a signed webhook as Twilio does: the URL without its fragment is requested and
    /// signed; the fragment's connection overrides set the timeouts and which failures are
    /// retried how often (once on a failed connection, by default). Returns the last HTTP
    /// status, or why no answer came.
    pub async fn post_webhook<'a>(
        &self,
        url: &str,
        auth_token: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<u16, String> {
        let (url, overrides) = ConnectionOverrides::split(url);
        let params: Vec<(&str, &str)> = params.into_iter().collect();
        let signature = sms_twilio::signature(auth_token, url, params.iter().copied());
        let deadline = tokio::time::Instant::now() + overrides.total_time;
        let mut outcome = Err("no attempt made".to_owned());
        for attempt in 0..=overrides.retries {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let sent = self
                .inner
                .http
                .post(url)
                .header(SIGNATURE_HEADER, &signature)
                .form(&params)
                .timeout(left.min(overrides.connect_timeout + overrides.read_timeout))
                .send()
                .await;
            let ended = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    outcome = Ok(status);
                    Attempt::Status(status)
                }
                Err(e) if e.is_connect() => {
                    outcome = Err(format!("connection failed: {e}"));
                    Attempt::ConnectFailed
                }
                Err(e) => {
                    outcome = Err(format!("no answer: {e}"));
                    Attempt::ReadTimedOut
                }
            };
            if !overrides.retries_after(ended) {
                break;
            }
            tracing::debug!(%url, attempt, ?ended, "webhook attempt failed; retrying");
        }
        if !matches!(outcome, Ok(200..=299)) {
            tracing::warn!(%url, ?outcome, "webhook not delivered");
        }
        outcome
    }
}

/// `POST /_sim/reply`: a contact texts one of our numbers.
#[derive(Debug, serde::Deserialize)]
struct ReplyRequest {
    from: String,
    to: String,
    #[serde(default)]
    body: String,
    /// Attachments: content type and bytes (standard base64).
    #[serde(default)]
    media: Vec<ReplyMedia>,
}

#[derive(Debug, serde::Deserialize)]
struct ReplyMedia {
    content_type: String,
    data: String,
}

async fn post_reply(
    State(sim): State<Sim>,
    headers: HeaderMap,
    axum::Json(r): axum::Json<ReplyRequest>,
) -> Response {
    use base64::Engine as _;
    if !sim.controlled_by(&headers) {
        return control_refused();
    }
    let bad = |why: String| (StatusCode::BAD_REQUEST, why).into_response();
    if r.from.trim().is_empty() || r.to.trim().is_empty() {
        return bad("from and to are required".into());
    }
    if r.body.is_empty() && r.media.is_empty() {
        return bad("a body or an attachment is required".into());
    }
    let mut media = Vec::with_capacity(r.media.len());
    for m in r.media {
        match base64::engine::general_purpose::STANDARD.decode(m.data.as_bytes()) {
            Ok(data) => media.push((m.content_type, data)),
            Err(e) => return bad(format!("an attachment is not base64: {e}")),
        }
    }
    match sim.reply(r.from.trim(), r.to.trim(), &r.body, media).await {
        Ok((status, sid)) => {
            axum::Json(serde_json::json!({"sid": sid, "webhook_status": status})).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, e).into_response(),
    }
}

/// Reads `SMS_SIM_*` variables (see the binary's documentation).
pub fn config_from_env(env: &sms_runtime::Env<'_>) -> Result<SimConfig, sms_runtime::ConfigError> {
    let set = |var: &str| -> HashSet<String> {
        env.raw(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let rate = |var: &str| -> Result<f64, sms_runtime::ConfigError> {
        let r: f64 = env.parse_or(var, 0.0)?;
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(sms_runtime::ConfigError::new(
                var,
                r.to_string(),
                "expected a share between 0 and 1",
            ))
        }
    };
    let mut config = SimConfig::new(
        &env.string_or("SMS_SIM_ACCOUNT_SID", DEFAULT_ACCOUNT_SID),
        &env.string_or("SMS_SIM_AUTH_TOKEN", DEFAULT_AUTH_TOKEN),
    );
    let b = &mut config.behaviour;
    b.landlines = set("SMS_SIM_LANDLINES");
    b.spam = set("SMS_SIM_SPAM");
    b.unknown_error = set("SMS_SIM_UNKNOWN_ERROR");
    b.unreachable = set("SMS_SIM_UNREACHABLE");
    b.carrier_opted_out = set("SMS_SIM_OPTED_OUT");
    b.api_latency = env.millis_or("SMS_SIM_LATENCY_MS", Duration::ZERO)?;
    b.callback_delay = env.millis_or("SMS_SIM_CALLBACK_DELAY_MS", Duration::from_millis(5))?;
    b.rate_429 = rate("SMS_SIM_RATE_429")?;
    b.rate_5xx = rate("SMS_SIM_RATE_5XX")?;
    b.auto_reply = env.raw("SMS_SIM_AUTO_REPLY").map(|text| AutoReply {
        text,
        when_contains: env.raw("SMS_SIM_AUTO_REPLY_WHEN"),
        delay: Duration::from_millis(500),
    });
    config.incoming_url = env.raw("SMS_SIM_INCOMING_URL");
    config.smpp_accounts = HashMap::from([(
        env.string_or("SMS_SIM_SMPP_SYSTEM_ID", DEFAULT_SMPP_SYSTEM_ID),
        env.string_or("SMS_SIM_SMPP_PASSWORD", DEFAULT_SMPP_PASSWORD),
    )]);
    config.smpp_gsm7 = match env.string_or("SMS_SIM_SMPP_GSM7", "unpacked").as_str() {
        "unpacked" => sms_smpp::parts::Gsm7Packing::Unpacked,
        "packed" => sms_smpp::parts::Gsm7Packing::Packed,
        other => {
            return Err(sms_runtime::ConfigError::new(
                "SMS_SIM_SMPP_GSM7",
                other,
                "expected unpacked or packed",
            ));
        }
    };
    config.behaviour.smpp.all_numbers = env.raw("SMS_SIM_SMPP_MO").as_deref() == Some("all");
    Ok(config)
}

/// The simulator's default account SID (development only).
pub const DEFAULT_ACCOUNT_SID: &str = sms_twilio::SIMULATOR_ACCOUNT_SID;
/// The simulator's default auth token (development only).
pub const DEFAULT_AUTH_TOKEN: &str = sms_twilio::SIMULATOR_AUTH_TOKEN;

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

impl Sim {
    /// Delivers `message` to `url` as Twilio delivers an incoming message: a form POST signed
    /// with the account's auth token, retried as the URL's connection overrides say (see
    /// [`Sim::post_webhook`]). Returns the last HTTP status and the sid used, or why no
    /// answer came.
    pub async fn send_incoming(
        &self,
        url: &str,
        account_sid: &str,
        message: &Incoming,
    ) -> Result<(u16, String), String> {
        let token = self
            .inner
            .config
            .accounts
            .get(account_sid)
            .cloned()
            .unwrap_or_default();
        let sid = message
            .sid
            .clone()
            .unwrap_or_else(|| format!("SM{}", uuid::Uuid::new_v4().simple()));
        let params = IncomingMessage {
            message_sid: sid.clone(),
            account_sid: account_sid.to_owned(),
            from: message.from.clone(),
            to: message.to.clone(),
            body: message.body.clone(),
            num_segments: u32::try_from(sms_core::count(&message.body).segments.max(1))
                .unwrap_or(u32::MAX),
            media: message
                .media
                .iter()
                .map(|(url, content_type)| TwilioMedia {
                    url: url.clone(),
                    content_type: content_type.clone(),
                })
                .collect(),
        }
        .to_form();
        let status = self
            .post_webhook(
                url,
                &token,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .await?;
        Ok((status, sid))
    }
}

/// The first of an account map's keys, in order (the account the simulator speaks as).
fn first_key(accounts: &HashMap<String, String>) -> Option<String> {
    accounts.keys().min().cloned()
}
