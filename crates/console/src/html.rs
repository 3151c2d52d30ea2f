//! The page around every page, and the small pieces pages share. Everything is built with
//! `maud`, which escapes every value it is given: nothing a user or the API sent is ever
//! written unescaped.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use sms_proto::v1::MessageStatus;

use crate::api::ApiError;
use crate::session::{FormRejection, Session};

/// The sections of the console, in the navigation's order: (path, label).
pub const SECTIONS: &[(&str, &str)] = &[
    ("/messages", "Messages"),
    ("/conversations", "Conversations"),
    ("/inbox", "Inbox"),
    ("/compose", "Compose"),
    ("/templates", "Templates"),
    ("/scheduled", "Scheduled"),
    ("/numbers", "Numbers"),
    ("/optouts", "Opt-outs"),
    ("/usage", "Usage"),
];

/// A whole page for a signed-in user; `active` is the section's path.
pub fn page(session: &Session, active: &str, title: &str, content: Markup) -> Response {
    let csrf_header = format!(r#"{{"x-csrf-token": "{}"}}"#, session.csrf);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(csrf_header) {
                header.top {
                    a.brand href="/messages" { "SMS console" }
                    nav {
                        @for (path, label) in SECTIONS {
                            a href=(path) class=[(*path == active).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        span title="Organization" { (session.organization_id) }
                        " · "
                        span title="User" { (session.user_id) }
                        @if session.admin { " " span.badge title="Signed in as an administrator" { "admin" } }
                        form method="post" action="/signout" {
                            (csrf(session))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx must not add an inline style element: the CSP allows none.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
            title { (title) " · SMS console" }
            link rel="stylesheet" href=(crate::assets::CSS_PATH);
            script src=(crate::assets::HTMX_PATH) defer {}
        }
    }
}

/// A page without the navigation (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, content: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { h1 { (title) } (content) } }
        }
    };
    html_response(status, markup)
}

/// An error page: what went wrong, in words, and a way back.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    bare(
        status,
        title,
        html! {
            p.error { (message) }
            p { a href="/messages" { "Back to the console" } }
        },
    )
}

/// HTML with the console's headers.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A fragment for htmx to swap in.
pub fn fragment(markup: Markup) -> Response {
    html_response(StatusCode::OK, markup)
}

/// The hidden CSRF field every form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name=(crate::session::CSRF_FIELD) value=(session.csrf); }
}

/// A UTC time from the API, to the second.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A message status as a word (`delivered`).
pub fn status_name(status: i32) -> String {
    MessageStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MESSAGE_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A status badge, coloured by what it means.
pub fn status_badge(status: i32) -> Markup {
    let name = status_name(status);
    let class = match MessageStatus::try_from(status) {
        Ok(MessageStatus::Delivered | MessageStatus::Received) => "badge ok",
        Ok(MessageStatus::Failed | MessageStatus::Undelivered) => "badge bad",
        Ok(MessageStatus::Canceled) => "badge off",
        _ => "badge",
    };
    html! { span class=(class) data-status=(name) { (name) } }
}

/// A form's errors: per field, and for the form as a whole.
#[derive(Debug, Default, Clone)]
pub struct FormErrors {
    /// The whole form's error.
    pub general: Option<String>,
    /// Each field's error.
    pub fields: HashMap<String, String>,
}

impl FormErrors {
    /// An API refusal placed on its field, when the form has that field.
    pub fn from_api(e: &ApiError, form_fields: &[&str]) -> Self {
        Self::from_api_renamed(e, form_fields, &[])
    }

    /// [`FormErrors::from_api`] for a form that names some of the API's fields otherwise:
    /// `renames` pairs the API's name (as [`crate::api::field_of`] gives it) with the form's.
    pub fn from_api_renamed(e: &ApiError, form_fields: &[&str], renames: &[(&str, &str)]) -> Self {
        let field = e.field.as_deref().map(|f| {
            renames
                .iter()
                .find(|(api, _)| *api == f)
                .map_or(f, |(_, form)| *form)
        });
        let mut errors = FormErrors::default();
        match field.filter(|f| form_fields.contains(f)) {
            Some(f) => {
                errors.fields.insert(f.to_owned(), e.message.clone());
            }
            None => errors.general = Some(e.message.clone()),
        }
        errors
    }

    /// One field's error.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut errors = FormErrors::default();
        errors.fields.insert(name.to_owned(), message.into());
        errors
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.general.is_none() && self.fields.is_empty()
    }

    /// The error shown next to field `name`.
    pub fn at(&self, name: &str) -> Markup {
        html! {
            @if let Some(m) = self.fields.get(name) {
                span.field-error id=(format!("{name}-error")) role="alert" { (m) }
            }
        }
    }

    /// The form's own error, above it.
    pub fn top(&self) -> Markup {
        html! {
            @if let Some(m) = &self.general {
                p.error role="alert" { (m) }
            }
        }
    }
}

/// A labelled text input with its error.
pub fn input(label: &str, name: &str, value: &str, errors: &FormErrors) -> Markup {
    html! {
        label {
            span { (label) }
            input type="text" name=(name) id=(name) value=(value)
                aria-invalid=[errors.fields.contains_key(name).then_some("true")];
            (errors.at(name))
        }
    }
}

/// Links to the next page of a list, keeping its filters.
pub fn next_page(path: &str, query: &[(&str, &str)], token: &str) -> Markup {
    if token.is_empty() {
        return html! {};
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    q.append_pair("page", token);
    html! { p.pager { a href=(format!("{path}?{}", q.finish())) rel="next" { "Older →" } } }
}

/// A form refused before it was read, as a page.
impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            FormRejection::SignIn(s) => s.into_response(),
            FormRejection::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not come from this console, or it is from an earlier session. \
                 Reload the page and try again.",
            ),
            FormRejection::Malformed(why) => error_page(
                StatusCode::BAD_REQUEST,
                "Form refused",
                &format!("The form could not be read: {why}"),
            ),
        }
    }
}
