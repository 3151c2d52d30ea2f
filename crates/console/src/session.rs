//! Who is signed in: sessions kept in this process, found by an opaque cookie, each with its
//! CSRF token; and the extractors every page and form goes through.
//!
//! The cookie holds only a random id (256 bits): the API token stays on the server. Cookies are
//! `HttpOnly` and `SameSite=Strict` (and `Secure` unless configured off for plain-http
//! development). Every form carries the session's CSRF token, checked in constant time before
//! the form is read ([`SignedForm`]); the sign-in form, which has no session yet, carries a
//! token paired with a short-lived cookie of its own (double submit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sms_console_session";
/// The sign-in form's own cookie (its CSRF pair).
pub const SIGNIN_COOKIE: &str = "sms_console_signin";
/// The form field (and `X-CSRF-Token` header, for htmx requests) carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header htmx requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form accepted (a template body is 1,000 characters, 4 bytes each at worst, and
/// percent-encoding triples them).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Who a session acts as.
#[derive(Clone)]
pub struct Session {
    /// The API token (empty when the platform runs without authentication).
    pub token: String,
    /// The organization every call is scoped to.
    pub organization_id: String,
    /// The user the console acts as (sends, inbox).
    pub user_id: String,
    /// Whether the user signed in as an administrator of the organization (`x-user-role`):
    /// the console then shows what only administrators may do; the API decides either way.
    pub admin: bool,
    /// This session's CSRF token.
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("organization_id", &self.organization_id)
            .field("user_id", &self.user_id)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Unused this long, a session ends.
    pub idle: Duration,
    /// However used, a session ends this long after sign-in.
    pub absolute: Duration,
}

/// The sessions of this process.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    lifetimes: Lifetimes,
    /// Whether cookies are marked `Secure` (sent over https only).
    secure: bool,
}

/// A lookup's outcome.
enum Found {
    Live(Session),
    Expired,
    None,
}

impl Sessions {
    /// An empty store.
    pub fn new(lifetimes: Lifetimes, secure: bool) -> Self {
        Sessions {
            inner: Arc::new(Mutex::new(HashMap::new())),
            lifetimes,
            secure,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session; returns the cookie that names it.
    pub fn start(
        &self,
        token: String,
        organization_id: String,
        user_id: String,
        admin: bool,
    ) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.map();
        // Ended sessions are dropped as new ones begin, so the map stays the size of the
        // live ones.
        let lifetimes = self.lifetimes;
        map.retain(|_, e| !expired(e, now, lifetimes));
        map.insert(
            id.clone(),
            Entry {
                session: Session {
                    token,
                    organization_id,
                    user_id,
                    admin,
                    csrf: random_token(),
                },
                created: now,
                last_seen: now,
            },
        );
        self.cookie(SESSION_COOKIE, &id, None)
    }

    /// Ends the session `id` names.
    pub fn end(&self, id: &str) {
        self.map().remove(id);
    }

    fn find(&self, id: &str) -> Found {
        let now = Instant::now();
        let mut map = self.map();
        match map.get_mut(id) {
            None => Found::None,
            Some(e) if expired(e, now, self.lifetimes) => {
                map.remove(id);
                Found::Expired
            }
            Some(e) => {
                e.last_seen = now;
                Found::Live(e.session.clone())
            }
        }
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/`, `Secure` unless off.
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<Duration>) -> String {
        let mut c = Cookie::build((name.to_owned(), value.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure);
        if let Some(age) = max_age {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            c = c.max_age(cookie::time::Duration::seconds(secs));
        }
        c.build().to_string()
    }

    /// A `Set-Cookie` value that removes the cookie `name`.
    pub fn removal(&self, name: &str) -> String {
        self.cookie(name, "", Some(Duration::ZERO))
    }
}

fn expired(e: &Entry, now: Instant, l: Lifetimes) -> bool {
    now.duration_since(e.last_seen) > l.idle || now.duration_since(e.created) > l.absolute
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS's generator does not fail on the systems we run on; if it ever did, a fixed
    // token must not be used, so this aborts the request (and only it).
    getrandom::fill(&mut bytes).unwrap_or_else(|e| {
        tracing::error!(error = %e, "no randomness");
        std::process::abort()
    });
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in a request's headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Whether two tokens are equal, in constant time (and never for an empty one).
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A request from a signed-in user.
#[derive(Debug, Clone)]
pub struct Signed(pub Session);

/// Why a request has no session: it goes (back) to sign-in.
#[derive(Debug)]
pub struct SignIn {
    expired: bool,
    htmx: bool,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let to = if self.expired {
            "/signin?expired=1"
        } else {
            "/signin"
        };
        if self.htmx {
            // htmx follows this header with a full page load (a 303 would be swapped into
            // the fragment's place).
            let mut r = StatusCode::UNAUTHORIZED.into_response();
            r.headers_mut()
                .insert("hx-redirect", HeaderValue::from_static(to));
            return r;
        }
        Redirect::to(to).into_response()
    }
}

impl<S> FromRequestParts<S> for Signed
where
    S: Send + Sync,
    Sessions: FromRef<S>,
{
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let htmx = parts.headers.contains_key("hx-request");
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(SignIn {
                expired: false,
                htmx,
            });
        };
        match Sessions::from_ref(state).find(&id) {
            Found::Live(s) => Ok(Signed(s)),
            Found::Expired => Err(SignIn {
                expired: true,
                htmx,
            }),
            Found::None => Err(SignIn {
                // A cookie naming no session: this process restarted or the session ended.
                expired: true,
                htmx,
            }),
        }
    }
}

/// A form posted by a signed-in user, its CSRF token checked before anything is read.
#[derive(Debug)]
pub struct SignedForm<T>(pub Session, pub T);

/// Why a form was refused before it was read.
#[derive(Debug)]
pub enum FormRejection {
    /// No session: to sign-in.
    SignIn(SignIn),
    /// Missing or wrong CSRF token.
    Csrf,
    /// Not a form, too big, or fields that do not fit.
    Malformed(String),
}

impl<S, T> FromRequest<S> for SignedForm<T>
where
    S: Send + Sync,
    Sessions: FromRef<S>,
    T: DeserializeOwned + Send,
{
    type Rejection = FormRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Signed(session) = Signed::from_request_parts(&mut parts, state)
            .await
            .map_err(FormRejection::SignIn)?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| FormRejection::Malformed("larger than 64 KiB".into()))?;
        let sent = form_csrf(&bytes).or_else(|| {
            parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        if !sent.is_some_and(|t| tokens_match(&t, &session.csrf)) {
            tracing::warn!(path = %parts.uri.path(), "form refused: CSRF token missing or wrong");
            return Err(FormRejection::Csrf);
        }
        let form = parse_form(&bytes)?;
        Ok(SignedForm(session, form))
    }
}

/// The `csrf` field of a urlencoded form.
pub fn form_csrf(bytes: &[u8]) -> Option<String> {
    form_urlencoded::parse(bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
}

/// A urlencoded form as `T`.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormRejection> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| FormRejection::Malformed(e.to_string()))
}
