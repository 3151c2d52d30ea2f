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
use sms_core::{Reason, Status};
use sms_proto::events::v1::{InboundMedia, InboundReceived, NumberChanged, StatusChanged};
use sms_runtime::{CommonConfig, ConfigError, Env};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Largest webhook body accepted. Twilio's are a few KB; 64 KiB leaves room for 10 media URLs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Inbound receiver settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus (the database settings are unused: this service keeps nothing).
    pub common: CommonConfig,
    /// `SMS_PUBLIC_URL`: the base URL carriers call, exactly as they sign it.
    pub public_url: String,
    /// Twilio accounts that may call us: `SMS_TWILIO_ACCOUNT_SID` / `SMS_TWILIO_AUTH_TOKEN`.
    pub twilio_accounts: HashMap<String, String>,
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
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            public_url,
            twilio_accounts,
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
    /// Held number → organization, a local copy of the state stream.
    numbers: Arc<std::sync::RwLock<HashMap<String, String>>>,
    public_url: String,
    accounts: HashMap<String, String>,
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
    let numbers = Arc::new(std::sync::RwLock::new(HashMap::new()));
    let copy = numbers.clone();
    let mut follower = bus
        .follow_state(
            sms_bus::StateKind::Number,
            shutdown.clone(),
            move |e: NumberChanged| {
                let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
                let mut map = copy.write().unwrap_or_else(|p| p.into_inner());
                if e.active {
                    map.insert(e.number, org);
                } else if map.get(&e.number) == Some(&org) {
                    map.remove(&e.number);
                }
            },
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

impl Webhook {
    fn get(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A refused request: its status and a short message for the caller.
type Rejection = (StatusCode, &'static str);

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
    reject(status, message)
}

fn reject(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
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
                "expected application/x-www-form-urlencoded",
            ));
        }
        let params: Vec<(String, String)> = serde_urlencoded_pairs(body)
            .ok_or((StatusCode::BAD_REQUEST, "the body is not a valid form"))?;
        let query: HashMap<String, String> = uri
            .query()
            .and_then(|q| serde_urlencoded_pairs(q.as_bytes()))
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
            tracing::warn!(%url, account, "webhook refused: bad or missing signature");
            return Err((StatusCode::FORBIDDEN, "invalid X-Twilio-Signature"));
        }
        Ok(Webhook { params, query })
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs; `None` unless the bytes are UTF-8 once
/// decoded (a carrier never sends anything else).
fn serde_urlencoded_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(bytes).ok()?;
    Some(
        form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

/// Our status for a Twilio `MessageStatus`; `None` for statuses we do not track.
///
/// Twilio's `queued` is not tracked: the dispatcher reports `queued` itself when it takes the
/// message on, before calling the carrier, so the callback would only repeat it (one event and
/// one status write per message, for nothing).
pub fn twilio_status(s: &str) -> Option<Status> {
    Some(match s {
        "sending" => Status::Sending,
        "sent" => Status::Sent,
        "delivered" | "read" => Status::Delivered,
        "undelivered" => Status::Undelivered,
        "failed" => Status::Failed,
        "canceled" => Status::Canceled,
        _ => return None,
    })
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
    let span = tracing::info_span!("twilio_status", message_id = %hook.query.get("mid").map_or("", String::as_str));
    if let Some(tp) = hook.query.get("tp") {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.clone())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    async move {
        let (Some(org), Some(mid)) = (hook.query.get("org"), hook.query.get("mid")) else {
            return refused(
                "status",
                (
                    StatusCode::BAD_REQUEST,
                    "the callback URL lacks org and mid",
                ),
            );
        };
        let twilio = hook.get("MessageStatus");
        let Some(status) = twilio_status(twilio) else {
            tracing::debug!(twilio, "ignoring a status we do not track");
            count("status", "ignored");
            return StatusCode::OK.into_response();
        };
        let code: u32 = hook.get("ErrorCode").parse().unwrap_or(0);
        let reason = if code != 0 || status.is_error() {
            Reason::from_twilio_code(code).as_str().to_owned()
        } else {
            String::new()
        };
        let sid = hook.get("MessageSid");
        let event = StatusChanged {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[sid, status.as_str()]),
                org,
                mid,
            )),
            status: sms_bus::status_to_proto(status) as i32,
            reason,
            carrier_sid: sid.to_owned(),
            carrier_error_code: code,
            detail: String::new(),
            contact_number: if status == Status::Failed {
                hook.get("To").to_owned()
            } else {
                String::new()
            },
            ..Default::default()
        };
        publish("status", &app.bus, &event).await
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
    let from = hook.get("From");
    if sms_core::phone::is_short_code(from) {
        count("incoming", "short_code");
        tracing::info!(
            from,
            "inbound message from a short code: acknowledged, not delivered"
        );
        return twiml();
    }
    let num_media: usize = hook.get("NumMedia").parse().unwrap_or(0).min(10);
    let media = (0..num_media)
        .map(|i| InboundMedia {
            url: hook.get(&format!("MediaUrl{i}")).to_owned(),
            content_type: hook.get(&format!("MediaContentType{i}")).to_owned(),
        })
        .filter(|m| !m.url.is_empty())
        .collect();
    let to = hook.get("To");
    let org = app
        .numbers
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(to)
        .cloned();
    let Some(org) = org else {
        count("incoming", "unknown_number");
        tracing::warn!(
            to,
            "inbound message to a number we do not hold: acknowledged, dropped"
        );
        return twiml();
    };
    let sid = hook.get("MessageSid");
    if sid.is_empty() {
        return refused(
            "incoming",
            (StatusCode::BAD_REQUEST, "MessageSid is required"),
        );
    }
    let event = InboundReceived {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[sid, "inbound"]),
            &org,
            "",
        )),
        from: from.to_owned(),
        to: to.to_owned(),
        body: hook.get("Body").to_owned(),
        carrier_sid: sid.to_owned(),
        media,
        num_segments: hook.get("NumSegments").parse().unwrap_or(1),
        account_sid: hook.get("AccountSid").to_owned(),
        replaced_characters: 0,
    };
    match publish("incoming", &app.bus, &event).await.status() {
        StatusCode::OK => twiml(),
        other => other.into_response(),
    }
}

/// Publishes and waits for JetStream to store the event: only then may the carrier stop retrying.
async fn publish<E: sms_bus::Event>(kind: &'static str, bus: &Bus, event: &E) -> Response {
    match bus.publish_durably(event).await {
        Ok(()) => {
            count(kind, "stored");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            count(kind, "unavailable");
            tracing::error!(error = %e, "could not store a webhook event; the carrier will retry");
            reject(StatusCode::SERVICE_UNAVAILABLE, "try again later")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses() {
        assert_eq!(twilio_status("delivered"), Some(Status::Delivered));
        assert_eq!(twilio_status("undelivered"), Some(Status::Undelivered));
        assert_eq!(twilio_status("accepted"), None);
        assert_eq!(twilio_status("queued"), None);
    }
}
