//! Signing in (API token, organization, user) and out.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sms_proto::v1::ListNumbersRequest;
use tonic::Code;

use crate::AppState;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, bare, input};
use crate::session::{
    CSRF_FIELD, SESSION_COOKIE, SIGNIN_COOKIE, Session, SignedForm, cookie_value, parse_form,
    random_token, tokens_match,
};

/// Longest organization or user id (the API's limit).
const MAX_ID: usize = 128;
/// Longest API token accepted.
const MAX_TOKEN: usize = 512;

/// `GET /signin` query.
#[derive(Debug, Deserialize)]
pub struct SigninQuery {
    expired: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    user_id: String,
    /// "Administrator" ticked.
    #[serde(default)]
    admin: Option<String>,
}

/// `GET /signin`.
pub async fn form(State(state): State<AppState>, Query(q): Query<SigninQuery>) -> Response {
    let notice = q
        .expired
        .is_some()
        .then_some("Your session ended. Sign in again.");
    render(
        &state,
        StatusCode::OK,
        &SigninForm::default(),
        &FormErrors::default(),
        notice,
    )
}

fn render(
    state: &AppState,
    status: StatusCode,
    f: &SigninForm,
    errors: &FormErrors,
    notice: Option<&str>,
) -> Response {
    // The form's CSRF token, paired with a cookie of its own (there is no session yet).
    let token = random_token();
    let mut r = bare(
        status,
        "Sign in",
        html! {
            @if let Some(n) = notice { p.notice { (n) } }
            (errors.top())
            form.stack method="post" action="/signin" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                label {
                    span { "API token" }
                    input type="password" name="token" id="token" autocomplete="off"
                        aria-invalid=[errors.fields.contains_key("token").then_some("true")];
                    (errors.at("token"))
                }
                (input("Organization", "organization_id", &f.organization_id, errors))
                (input("User", "user_id", &f.user_id, errors))
                label.inline { input type="checkbox" name="admin" id="admin" value="1" checked[f.admin.is_some()];
                    span { "I administer this organization (numbers, groups, opt-ins, replies, others' sends)" } }
                button type="submit" { "Sign in" }
            }
            p.muted { "The token is one of the platform's API tokens (SMS_API_TOKENS); \
                       leave it empty when the platform runs without authentication (development)." }
        },
    );
    if let Ok(v) = HeaderValue::from_str(&state.sessions.cookie(
        SIGNIN_COOKIE,
        &token,
        Some(Duration::from_secs(3600)),
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Checks an id typed at sign-in.
fn check_id(name: &str, label: &str, v: &str, errors: &mut FormErrors) {
    let why = if v.is_empty() {
        Some(format!("{label} is required."))
    } else if v.chars().count() > MAX_ID {
        Some(format!("{label} is at most {MAX_ID} characters."))
    } else if !v.bytes().all(|b| b.is_ascii_graphic()) {
        Some(format!(
            "{label} is letters, digits and punctuation, without spaces."
        ))
    } else {
        None
    };
    if let Some(why) = why {
        errors.fields.insert(name.to_owned(), why);
    }
}

/// `POST /signin`.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let pair = cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let sent = crate::session::form_csrf(&body).unwrap_or_default();
    if !tokens_match(&sent, &pair) {
        return crate::session::FormRejection::Csrf.into_response();
    }
    let f: SigninForm = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let f = SigninForm {
        token: f.token.trim().to_owned(),
        organization_id: f.organization_id.trim().to_owned(),
        user_id: f.user_id.trim().to_owned(),
        admin: f.admin,
    };
    let mut errors = FormErrors::default();
    check_id(
        "organization_id",
        "Organization",
        &f.organization_id,
        &mut errors,
    );
    check_id("user_id", "User", &f.user_id, &mut errors);
    if f.token.len() > MAX_TOKEN || !f.token.bytes().all(|b| b.is_ascii_graphic()) {
        errors
            .fields
            .insert("token".into(), "This is not an API token.".into());
    }
    if !errors.is_empty() {
        return render(&state, StatusCode::UNPROCESSABLE_ENTITY, &f, &errors, None);
    }
    // The API decides: a call as this session shows whether the token is good for the
    // organization.
    let trial = Session {
        token: f.token.clone(),
        organization_id: f.organization_id.clone(),
        user_id: f.user_id.clone(),
        admin: f.admin.is_some(),
        csrf: String::new(),
    };
    if let Err(s) = state
        .api
        .numbers()
        .list_numbers(call(&trial, ListNumbersRequest {}))
        .await
    {
        let e = ApiError::from(s);
        let errors = match e.code {
            Code::Unauthenticated => FormErrors::field("token", "This token is not accepted."),
            Code::PermissionDenied => FormErrors::field(
                "organization_id",
                "This token may not act for this organization.",
            ),
            _ => FormErrors::from_api(&e, &[]),
        };
        return render(&state, StatusCode::UNPROCESSABLE_ENTITY, &f, &errors, None);
    }
    let admin = f.admin.is_some();
    tracing::info!(organization_id = %f.organization_id, user_id = %f.user_id, admin, "console sign-in");
    let cookie = state
        .sessions
        .start(f.token, f.organization_id, f.user_id, admin);
    let mut r = Redirect::to("/messages").into_response();
    for c in [cookie, state.sessions.removal(SIGNIN_COOKIE)] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `POST /signout`.
pub async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedForm(_, super::Empty {}): SignedForm<super::Empty>,
) -> Response {
    if let Some(id) = cookie_value(&headers, SESSION_COOKIE) {
        state.sessions.end(&id);
    }
    let mut r = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&state.sessions.removal(SESSION_COOKIE)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
