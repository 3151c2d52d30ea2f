//! Compose (send now or later) and the live segment counter both it and the template editor
//! use: the counting is the platform's own (`Preview`), so the console never disagrees with
//! what will be billed.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sms_proto::v1::{
    Contact, Lead, ListNumbersRequest, LocalDateTime, NumberKind, Organization, PreviewRequest,
    SendMessageRequest, TemplateContext, User, preview_request,
};

use crate::api::{ApiError, call};
use crate::html::{FormErrors, csrf, fragment, input, page};
use crate::session::{Session, Signed, SignedForm, random_token};
use crate::{AppState, PageResult};

/// The values a preview fills the CRM tags with.
pub fn sample_context() -> TemplateContext {
    TemplateContext {
        lead: Some(Lead {
            display_name: "Acme Corp".into(),
            name: "Acme Corp".into(),
            primary_contact_name: "Jane Doe".into(),
            status_label: "Potential".into(),
            ..Default::default()
        }),
        contact: Some(Contact {
            name: "Jane Doe".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            title: "Head of Sales".into(),
            phone: "+14155550123".into(),
            email: "jane@acme.example".into(),
            ..Default::default()
        }),
        user: Some(User {
            full_name: "Sam Seller".into(),
            first_name: "Sam".into(),
            last_name: "Seller".into(),
            email: "sam@example.com".into(),
            ..Default::default()
        }),
        organization: Some(Organization {
            name: "Example Co".into(),
        }),
    }
}

/// The sample values, as the editor lists them.
pub fn sample_note() -> Markup {
    html! {
        p.muted { "Preview values: lead “Acme Corp”, contact Jane Doe (first name “Jane”), \
                   user Sam Seller, organization “Example Co”." }
    }
}

/// The preview form: a body (with CRM tags).
#[derive(Debug, Deserialize)]
pub struct PreviewForm {
    #[serde(default)]
    body: String,
}

/// `POST /preview` (htmx): the counter and preview for a body being typed.
pub async fn preview(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<PreviewForm>,
) -> Response {
    fragment(counter(&state, &session, &f.body).await)
}

/// The counter and preview of `body`: encoding, segments, characters left in this segment,
/// the characters forcing UCS-2 (highlighted), what smart encoding would save.
pub async fn counter(state: &AppState, session: &Session, body: &str) -> Markup {
    let r = state
        .api
        .templates()
        .preview(call(
            session,
            PreviewRequest {
                source: Some(preview_request::Source::Body(body.to_owned())),
                context: Some(sample_context()),
            },
        ))
        .await;
    let p = match r {
        Ok(r) => r.into_inner(),
        Err(s) => {
            let e = ApiError::from(s);
            return html! { div.counter #counter { span.error #counter-error role="alert" { (e.message) } } };
        }
    };
    let ucs2 = p.encoding_type == sms_proto::v1::Encoding::Ucs2 as i32;
    html! {
        div #counter {
            div.counter {
                span { "Encoding " b #encoding { (p.encoding) } }
                span { "Segments " b #segments { (p.segments) } }
                span { "Left in this segment " b #left { (p.left_in_segment) } }
                span { "Characters " b #length { (p.length) } " / " (sms_core::MAX_BODY_CHARS) }
                @if p.too_long { span.error { "Too long: at most " (sms_core::MAX_BODY_CHARS) " characters." } }
            }
            @if ucs2 && !p.non_gsm.is_empty() {
                p.warning #non-gsm {
                    "Sent as UCS-2 (70 characters a segment) because of: "
                    @for (i, c) in p.non_gsm.iter().enumerate() {
                        @if i > 0 { " " }
                        mark.ucs2 { (c) }
                    }
                }
                @if p.segments_saved > 0 {
                    p #smart { "Smart encoding (replacing look-alike characters) would send it as "
                        (p.smart_encoding) " in " (p.smart_segments) " segment(s), saving "
                        b { (p.segments_saved) } "." }
                }
            }
            div.preview #preview { (highlighted(&p.body, &p.non_gsm)) }
        }
    }
}

/// The body field, with its counter below: as the body changes, htmx asks `/preview` for a
/// new counter (150 ms after typing stops).
pub fn counted_body(label: &str, body: &str, errors: &FormErrors, counter: Markup) -> Markup {
    html! {
        label { span { (label) }
            textarea name="body" id="body" maxlength="1000"
                hx-post="/preview" hx-trigger="input changed delay:150ms" hx-target="#counter"
                hx-swap="outerHTML"
                aria-invalid=[errors.fields.contains_key("body").then_some("true")] { (body) }
            (errors.at("body"))
        }
        (counter)
    }
}

/// `body` with each character that forces UCS-2 marked.
fn highlighted(body: &str, non_gsm: &[String]) -> Markup {
    html! {
        @for c in body.chars() {
            @if non_gsm.iter().any(|n| n.chars().eq(std::iter::once(c))) {
                mark.ucs2 { (c) }
            } @else { (c) }
        }
    }
}

/// `GET /compose` query.
#[derive(Debug, Deserialize, Default)]
pub struct ComposeQuery {
    to: Option<String>,
}

/// The compose form.
#[derive(Debug, Deserialize, Default)]
pub struct ComposeForm {
    #[serde(default)]
    to: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    smart_encoding: Option<String>,
    /// `now` or `later`.
    #[serde(default)]
    when: String,
    /// `YYYY-MM-DDTHH:MM`, local time in `time_zone`.
    #[serde(default)]
    send_at: String,
    #[serde(default)]
    time_zone: String,
    /// An idempotency key made when the form was shown.
    #[serde(default)]
    key: String,
}

/// `GET /compose`.
pub async fn form(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<ComposeQuery>,
) -> PageResult {
    let f = ComposeForm {
        to: q.to.unwrap_or_default(),
        when: "now".into(),
        ..Default::default()
    };
    render(&state, &session, &f, &FormErrors::default()).await
}

async fn render(
    state: &AppState,
    session: &Session,
    f: &ComposeForm,
    errors: &FormErrors,
) -> PageResult {
    let numbers = state
        .api
        .numbers()
        .list_numbers(call(session, ListNumbersRequest {}))
        .await?
        .into_inner()
        .numbers;
    let senders: Vec<_> = numbers
        .iter()
        .filter(|n| n.kind == NumberKind::Internal as i32 && n.sms_capable)
        .collect();
    let counter = counter(state, session, &f.body).await;
    let later = f.when == "later";
    let content = html! {
        (errors.top())
        form.stack method="post" action="/compose" {
            (csrf(session))
            input type="hidden" name="key" value=(random_token());
            div.row {
                (input("To", "to", &f.to, errors))
                label { span { "From" }
                    select name="from" id="from" aria-invalid=[errors.fields.contains_key("from").then_some("true")] {
                        option value="" { "Automatic (my number for the country)" }
                        @for n in &senders {
                            option value=(n.number) selected[n.number == f.from] { (n.number) " (" (n.region) ")" }
                        }
                    }
                    (errors.at("from"))
                }
            }
            (counted_body("Message", &f.body, errors, counter))
            label.inline { input type="checkbox" name="smart_encoding" value="1" checked[f.smart_encoding.is_some()];
                span { "Smart encoding (replace look-alike characters to stay in GSM-7)" } }
            fieldset {
                legend { "When" }
                label.inline { input type="radio" name="when" value="now" checked[!later]; span { "Now" } }
                label.inline { input type="radio" name="when" value="later" checked[later]; span { "Later, at a local time" } }
                div.row {
                    label { span { "Date and time" }
                        input type="datetime-local" name="send_at" id="send_at" value=(f.send_at)
                            aria-invalid=[errors.fields.contains_key("send_at").then_some("true")];
                        (errors.at("send_at"))
                    }
                    label { span { "Time zone" }
                        input type="text" name="time_zone" id="time_zone" value=(f.time_zone)
                            list="zones" placeholder="America/New_York"
                            aria-invalid=[errors.fields.contains_key("time_zone").then_some("true")];
                        (errors.at("time_zone"))
                    }
                }
                (zones())
            }
            div { button type="submit" { "Send" } }
        }
        (sample_note())
    };
    let mut r = page(session, "/compose", "Compose", content);
    if !errors.is_empty() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

/// The time zones the platform knows, for the zone field's suggestions.
pub fn zones() -> Markup {
    let mut names: Vec<String> = jiff::tz::db()
        .available()
        .map(|n| n.to_string())
        .filter(|n| n.contains('/') && !n.starts_with("Etc/"))
        .collect();
    names.sort();
    html! { datalist #zones { @for n in &names { option value=(n); } } }
}

/// The local send time of a form, when it sends later.
pub fn local_time(
    when: &str,
    send_at: &str,
    time_zone: &str,
) -> Result<Option<LocalDateTime>, FormErrors> {
    match when {
        "later" => {
            if send_at.trim().is_empty() {
                return Err(FormErrors::field(
                    "send_at",
                    "Pick the date and time to send at.",
                ));
            }
            if time_zone.trim().is_empty() {
                return Err(FormErrors::field(
                    "time_zone",
                    "Name the time zone, e.g. America/New_York.",
                ));
            }
            Ok(Some(LocalDateTime {
                date_time: send_at.trim().to_owned(),
                time_zone: time_zone.trim().to_owned(),
            }))
        }
        _ => Ok(None),
    }
}

/// `POST /compose`.
pub async fn send(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<ComposeForm>,
) -> PageResult {
    let local = match local_time(&f.when, &f.send_at, &f.time_zone) {
        Ok(l) => l,
        Err(errors) => return render(&state, &session, &f, &errors).await,
    };
    let sent = state
        .api
        .messaging()
        .send_message(call(
            &session,
            SendMessageRequest {
                to: f.to.clone(),
                from: f.from.clone(),
                body: f.body.clone(),
                idempotency_key: f.key.clone(),
                smart_encoding: f.smart_encoding.is_some(),
                send_at_local: local,
                ..Default::default()
            },
        ))
        .await;
    match sent {
        Ok(r) => {
            let id = r.into_inner().message.map(|m| m.id).unwrap_or_default();
            Ok(Redirect::to(&format!("/messages/{id}")).into_response())
        }
        Err(s) => {
            let e = ApiError::from(s);
            if matches!(
                e.code,
                tonic::Code::Unauthenticated | tonic::Code::Unavailable
            ) {
                return Err(e.into());
            }
            let errors = FormErrors::from_api(&e, &["to", "from", "body", "send_at", "time_zone"]);
            render(&state, &session, &f, &errors).await
        }
    }
}
