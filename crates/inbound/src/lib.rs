//! The inbound receiver: the stateless HTTP edge where carriers call us.
//!
//! * `POST /webhooks/twilio/status`: Twilio status callbacks → `{ns}.status.<status>` events;
//! * `POST /webhooks/twilio/incoming`: incoming messages → `{ns}.inbound.received` events.
//!
//! Every request must carry a valid `X-Twilio-Signature` for the public URL the carrier called
//! (403 otherwise, and nothing is published). A request is acknowledged only once its event is
//! durably stored in JetStream; events have ids derived from the carrier's `MessageSid`, so a
//! carrier retrying a webhook cannot create a second event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sms_bus::Bus;
use sms_core::Status;
use sms_proto::events::v1::{
    InboundMedia, InboundReceived, NumberChanged, StatusChanged, StatusSource,
};
use sms_runtime::{CommonConfig, ConfigError, Env};
use sms_twilio::webhook::{self, IncomingMessage, StatusCallback};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Largest webhook body accepted. Twilio's are a few KB; 64 KiB leaves room for 10 media URLs.
pub const MAX_BODY_BYTES: usize = webhook::MAX_FORM_BYTES;

/// Inbound receiver settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus (the database settings are unused: this service keeps nothing).
    pub common: CommonConfig,
    /// `SMS_PUBLIC_URL`: the base URL carriers call, exactly as they sign it.
    pub public_url: String,
    /// Twilio accounts that may call us: `SMS_TWILIO_ACCOUNT_SID` / `SMS_TWILIO_AUTH_TOKEN`.
    pub twilio_accounts: HashMap<String, String>,
    /// `SMS_WEBHOOK_PATIENCE_MS`: how long a webhook keeps trying to store its event while the
    /// bus is unavailable (a JetStream leader election, a reconnect) before it answers 503.
    /// Within the carrier's read timeout (Twilio waits 15 s at most); default 8 s.
    pub patience: Duration,
}

impl Config {
    /// Reads the receiver's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let public_url = env.string_or("SMS_PUBLIC_URL", "http://127.0.0.1:8080");
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(ConfigError::new(
                "SMS_PUBLIC_URL",
                public_url,
                "expected an http(s) URL",
            ));
        }
        let twilio_accounts = sms_runtime::config::twilio_accounts(env)?;
        if twilio_accounts.is_empty() {
            return Err(ConfigError::new(
                "SMS_TWILIO_ACCOUNTS",
                "",
                "no Twilio account: set SMS_TWILIO_ACCOUNTS or SMS_TWILIO_ACCOUNT_SID and SMS_TWILIO_AUTH_TOKEN",
            ));
        }
        let patience = env.millis_or("SMS_WEBHOOK_PATIENCE_MS", Duration::from_secs(8))?;
        if patience > Duration::from_secs(14) {
            return Err(ConfigError::new(
                "SMS_WEBHOOK_PATIENCE_MS",
                patience.as_millis().to_string(),
                "carriers stop waiting after 15 s (Twilio's read timeout): use at most 14000",
            ));
        }
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            public_url,
            twilio_accounts,
            patience,
        })
    }
}

/// Counts a webhook of `kind` (`status`, `incoming`) by what became of it: `stored`,
/// `bad_signature`, `malformed`, `short_code`, `unknown_number`, `ignored`, `unavailable`.
fn count(kind: &'static str, outcome: &'static str) {
    metrics::counter!(sms_runtime::metrics::WEBHOOKS, "kind" => kind, "outcome" => outcome)
        .increment(1);
}

struct App {
    bus: Bus,
    /// Held numbers, a local copy of the state stream.
    numbers: sms_bus::Holders,
    public_url: String,
    accounts: HashMap<String, String>,
    patience: Duration,
}

/// Runs the receiver on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = Bus::connect(sms_runtime::service::bus_config(&config.common))
        .await
        .context("inbound bus")?;
    let numbers = sms_bus::Holders::default();
    let copy = numbers.clone();
    let mut follower = bus
        .follow_state(
            sms_bus::StateKind::Number,
            shutdown.clone(),
            move |e: NumberChanged| copy.apply(&e),
        )
        .await?;
    if !follower
        .wait_ready(std::time::Duration::from_secs(30))
        .await
    {
        tracing::warn!("number copy not caught up after 30 s; starting anyway");
    }
    let app = Arc::new(App {
        bus,
        numbers,
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        accounts: config.twilio_accounts,
        patience: config.patience,
    });
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "inbound receiver listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("inbound HTTP server")
}

fn router(app: Arc<App>) -> Router {
    let bus = app.bus.clone();
    let ready: sms_runtime::health::ReadyCheck = Arc::new(move || {
        let connected = bus.is_connected();
        Box::pin(async move {
            if connected {
                Ok(())
            } else {
                Err("NATS is not connected".to_owned())
            }
        })
    });
    Router::new()
        .route("/webhooks/twilio/status", post(status_callback))
        .route("/webhooks/twilio/incoming", post(incoming))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
        .merge(sms_runtime::health::router(ready))
}

/// A verified webhook: its form parameters and query.
struct Webhook {
    params: Vec<(String, String)>,
    query: HashMap<String, String>,
}

/// A refused request: its status and a short message for the caller.
type Rejection = (StatusCode, String);

/// A webhook refused: forbidden (bad signature) or malformed.
fn refused(kind: &'static str, (status, message): Rejection) -> Response {
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

fn malformed(e: impl std::fmt::Display) -> Rejection {
    (StatusCode::BAD_REQUEST, e.to_string())
}

impl App {
    /// Parses the form and checks the signature against the public URL the carrier called.
    fn verify(&self, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Webhook, Rejection> {
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

/// The message id and organization our status callback URL carries (`mid`, `org`).
fn callback_target(query: &HashMap<String, String>) -> Result<(String, String), Rejection> {
    let (Some(org), Some(mid)) = (query.get("org"), query.get("mid")) else {
        return Err(malformed("the callback URL lacks org and mid"));
    };
    sms_core::text::check(
        "org",
        org,
        sms_runtime::auth::MAX_ID_LEN,
        sms_core::text::Lines::Single,
    )
    .map_err(malformed)?;
    let mid = uuid::Uuid::parse_str(mid).map_err(|_| {
        malformed(format!(
            "mid {} is not a message id",
            sms_core::text::quote(mid)
        ))
    })?;
    Ok((org.clone(), mid.to_string()))
}

async fn status_callback(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = match app.verify(&uri, &headers, &body) {
        Ok(h) => h,
        Err(r) => return refused("status", r),
    };
    let span = tracing::info_span!(
        "twilio_status",
        otel.kind = "server",
        "http.route" = "/webhooks/twilio/status",
        message_id = %hook.query.get("mid").map_or("", String::as_str),
    );
    if let Some(tp) = hook.query.get("tp") {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.clone())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    async move {
        let (org, mid) = match callback_target(&hook.query) {
            Ok(t) => t,
            Err(r) => return refused("status", r),
        };
        let callback = match StatusCallback::from_form(&hook.params) {
            Ok(c) => c,
            Err(e) => return refused("status", malformed(e)),
        };
        let Some(status) = callback.status.ours() else {
            tracing::debug!(
                twilio = callback.status.as_str(),
                "ignoring a status we do not track"
            );
            count("status", "ignored");
            return StatusCode::OK.into_response();
        };
        let code = callback.error_code.unwrap_or(0);
        let reason = if code != 0 || status.is_error() {
            sms_twilio::errors::reason(code).as_str().to_owned()
        } else {
            String::new()
        };
        let event = StatusChanged {
            meta: Some(sms_bus::meta(
                sms_bus::carrier_status_event_id(
                    &callback.message_sid,
                    status,
                    &callback.account_sid,
                    &org,
                    &mid,
                ),
                &org,
                &mid,
            )),
            status: sms_bus::status_to_proto(status) as i32,
            reason,
            carrier_sid: callback.message_sid.clone(),
            carrier_error_code: code,
            detail: String::new(),
            contact_number: if status == Status::Failed {
                callback.to.clone()
            } else {
                String::new()
            },
            source: StatusSource::Carrier as i32,
            // Verified above: the account whose token signed this callback.
            carrier_account: callback.account_sid.clone(),
            ..Default::default()
        };
        app.publish("status", &event).await
    }
    .instrument(span)
    .await
}

async fn incoming(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = match app.verify(&uri, &headers, &body) {
        Ok(h) => h,
        Err(r) => return refused("incoming", r),
    };
    let message = match IncomingMessage::from_form(&hook.params) {
        Ok(m) => m,
        Err(e) => return refused("incoming", malformed(e)),
    };
    if sms_core::phone::is_short_code(&message.from) {
        count("incoming", "short_code");
        tracing::info!(
            from = %message.from,
            "inbound message from a short code: acknowledged, not delivered"
        );
        return twiml();
    }
    let Some(org) = app.holder(&message.to).await else {
        count("incoming", "unknown_number");
        tracing::warn!(
            to = %message.to,
            "inbound message to a number we do not hold: acknowledged, dropped"
        );
        return twiml();
    };
    // The contact's text is never refused: what cannot be stored is replaced, and said.
    let (body, replaced) = message.storable_body();
    if replaced > 0 {
        tracing::warn!(
            sid = %message.message_sid,
            replaced,
            "inbound text held characters that cannot be stored; replaced with U+FFFD"
        );
    }
    let event = InboundReceived {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&message.message_sid, "inbound"]),
            &org,
            "",
        )),
        from: message.from.clone(),
        to: message.to.clone(),
        body,
        carrier_sid: message.message_sid.clone(),
        media: message
            .media
            .iter()
            .map(|m| InboundMedia {
                url: m.url.clone(),
                content_type: m.content_type.clone(),
            })
            .collect(),
        num_segments: message.num_segments,
        account_sid: message.account_sid.clone(),
        replaced_characters: u32::try_from(replaced).unwrap_or(u32::MAX),
    };
    match app.publish("incoming", &event).await.status() {
        StatusCode::OK => twiml(),
        other => other.into_response(),
    }
}

/// How long a message to a number this receiver's copy does not know waits for the copy to
/// catch up (a number added a moment ago) before it is dropped.
const UNKNOWN_NUMBER_PATIENCE: Duration = Duration::from_secs(2);

impl App {
    /// The organization holding `number` (waiting a moment for a number the copy does not
    /// know yet).
    async fn holder(&self, number: &str) -> Option<String> {
        self.numbers.holder(number, UNKNOWN_NUMBER_PATIENCE).await
    }

    /// Publishes and waits for JetStream to store the event: only then may the carrier stop
    /// retrying. While the bus is unavailable (a stream leader being elected, a reconnect) it
    /// keeps trying, with jittered back-off, for the receiver's patience; then it answers 503 and
    /// the carrier's own retries take over (the dispatcher asks Twilio for them in the callback
    /// URL's connection overrides).
    async fn publish<E: sms_bus::Event>(&self, kind: &'static str, event: &E) -> Response {
        let backoff =
            sms_runtime::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let deadline = Instant::now() + self.patience;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, self.bus.publish_durably(event)).await {
                Ok(Ok(())) => {
                    count(kind, "stored");
                    return StatusCode::OK.into_response();
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no acknowledgement in time".to_owned(),
            };
            let pause = backoff.delay(attempt);
            if Instant::now() + pause >= deadline {
                count(kind, "unavailable");
                tracing::error!(attempts = attempt, %error, "could not store a webhook event; the carrier will retry");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
            }
            tracing::warn!(attempt, %error, "storing a webhook event failed; trying again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// An empty TwiML reply: nothing to send back.
fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}
