//! The operator console: the platform in a browser, for the people who run it.
//!
//! Server-rendered HTML over the public gRPC APIs (the console is a client like any other: it
//! keeps nothing but sessions), with htmx, vendored into the binary, for the live parts (the
//! segment counter, marking inbox messages done). Pages: messages and their timelines,
//! conversations and the inbox with replies, templates with the live segment counter and
//! compose, scheduled sends, numbers and groups, opt-outs, usage.
//!
//! Sign-in takes an API token, an organization and a user; every call is made as them, so
//! every page is scoped to that organization by the API itself. Sessions live in this process
//! (a restart signs everyone out; run one replica, or sticky sessions).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sms_runtime::{ConfigError, Env};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod api;
mod assets;
pub mod html;
mod pages;
pub mod session;

use api::{Api, ApiError};
use session::{Lifetimes, Sessions};

/// Default listen address.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    8082,
);

/// Console settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SMS_CONSOLE_API_URL`: the platform's gRPC endpoint (the composer).
    pub api_url: String,
    /// `SMS_CONSOLE_OPTOUT_URL`: the opt-out registry's gRPC endpoint.
    pub optout_url: String,
    /// `SMS_CONSOLE_SESSION_IDLE_SECS` (default 30 minutes) and
    /// `SMS_CONSOLE_SESSION_MAX_SECS` (default 12 hours).
    pub lifetimes: Lifetimes,
    /// `SMS_CONSOLE_SECURE_COOKIES`: mark cookies `Secure` (default true; false only for plain
    /// http in development, which `smsd --dev` sets).
    pub secure_cookies: bool,
}

impl Config {
    /// Reads the console's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let url = |var: &str, default: &str| {
            let v = env.string_or(var, default);
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(v)
            } else {
                Err(ConfigError::new(var, v, "expected an http(s) URL"))
            }
        };
        let secs = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let s: u64 = env.parse_or(var, default)?;
            if s == 0 {
                return Err(ConfigError::new(var, "0", "a session must last a while"));
            }
            Ok(Duration::from_secs(s))
        };
        Ok(Config {
            api_url: url("SMS_CONSOLE_API_URL", "http://127.0.0.1:50051")?,
            optout_url: url("SMS_CONSOLE_OPTOUT_URL", "http://127.0.0.1:50052")?,
            lifetimes: Lifetimes {
                idle: secs("SMS_CONSOLE_SESSION_IDLE_SECS", 30 * 60)?,
                absolute: secs("SMS_CONSOLE_SESSION_MAX_SECS", 12 * 3600)?,
            },
            secure_cookies: env.bool_or("SMS_CONSOLE_SECURE_COOKIES", true)?,
        })
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The platform's APIs.
    pub api: Api,
    /// Who is signed in.
    pub sessions: Sessions,
}

impl axum::extract::FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Sessions {
        state.sessions.clone()
    }
}

impl AppState {
    /// State for `config`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(AppState {
            api: Api::new(&config.api_url, &config.optout_url).context("console API endpoints")?,
            sessions: Sessions::new(config.lifetimes, config.secure_cookies),
        })
    }
}

/// Every route of the console.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/messages") }))
        .route(assets::HTMX_PATH, get(assets::htmx))
        .route(assets::CSS_PATH, get(assets::css))
        .route(
            "/signin",
            get(pages::signin::form).post(pages::signin::submit),
        )
        .route("/signout", post(pages::signin::signout))
        .route("/messages", get(pages::messages::list))
        .route("/messages/{id}", get(pages::messages::show))
        .route("/messages/{id}/status", get(pages::messages::status))
        .route("/media/{id}", get(pages::conversations::media))
        .route("/conversations", get(pages::conversations::list))
        .route("/conversation", get(pages::conversations::show))
        .route("/conversation/reply", post(pages::conversations::reply))
        .route("/inbox", get(pages::conversations::inbox))
        .route("/inbox/{id}/done", post(pages::conversations::done))
        .route(
            "/compose",
            get(pages::compose::form).post(pages::compose::send),
        )
        .route("/preview", post(pages::compose::preview))
        .route(
            "/templates",
            get(pages::templates::list).post(pages::templates::create),
        )
        .route("/templates/new", get(pages::templates::new))
        .route(
            "/templates/{id}",
            get(pages::templates::edit).post(pages::templates::update),
        )
        .route("/templates/{id}/delete", post(pages::templates::delete))
        .route("/scheduled", get(pages::scheduled::list))
        .route("/scheduled/{id}/cancel", post(pages::scheduled::cancel))
        .route(
            "/scheduled/{id}/reschedule",
            post(pages::scheduled::reschedule),
        )
        .route("/numbers", get(pages::numbers::list))
        .route("/optouts", get(pages::optouts::list))
        .route("/optouts/add", post(pages::optouts::add))
        .route("/optouts/remove", post(pages::optouts::remove))
        .route("/optouts/replies", post(pages::optouts::replies))
        .route("/usage", get(pages::usage::show))
        .fallback(|| async {
            html::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
        })
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every response: a strict content security policy (scripts and styles from this
/// console only, no inline code), no framing, no sniffing, no caching of pages.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Serves the console on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState::new(&config)?;
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, api = %config.api_url, "console listening");
    // `/healthz`, `/readyz` and `/metrics` beside the pages. The console keeps nothing, so it
    // is ready once it listens; pages say so when the platform is not answering.
    let ready: sms_runtime::health::ReadyCheck = std::sync::Arc::new(|| Box::pin(async { Ok(()) }));
    let app = router(state).merge(sms_runtime::health::router(ready));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("console HTTP server")
}

/// A page handler's failure, as a page.
#[derive(Debug)]
pub enum PageError {
    /// The API refused or failed.
    Api(ApiError),
    /// Something a user asked for that is not there.
    NotFound,
}

impl PageError {
    /// A lookup's failure: an id that is not even an id (INVALID_ARGUMENT) names nothing
    /// here either, so both are "not found".
    pub fn lookup(s: tonic::Status) -> PageError {
        match ApiError::from(s) {
            e if e.code == tonic::Code::InvalidArgument => PageError::NotFound,
            e => PageError::Api(e),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

impl From<tonic::Status> for PageError {
    fn from(s: tonic::Status) -> Self {
        PageError::Api(s.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use tonic::Code;
        let e = match self {
            PageError::NotFound => {
                return html::error_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such thing in this organization.",
                );
            }
            PageError::Api(e) => e,
        };
        let (status, title) = match e.code {
            // The token was revoked or the organization is no longer allowed: sign in again.
            Code::Unauthenticated => return Redirect::to("/signin?expired=1").into_response(),
            Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "Not allowed"),
            Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "Not accepted"),
            Code::FailedPrecondition | Code::AlreadyExists => {
                (StatusCode::CONFLICT, "Not possible now")
            }
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "Limit reached"),
            Code::Unavailable | Code::DeadlineExceeded => {
                (StatusCode::SERVICE_UNAVAILABLE, "Not answering")
            }
            _ => (StatusCode::BAD_GATEWAY, "The platform failed"),
        };
        html::error_page(status, title, &e.message)
    }
}

/// What a page handler returns.
pub type PageResult = Result<Response, PageError>;
