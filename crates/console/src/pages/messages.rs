//! The message log (filters, keyset paging) and a message's page (timeline, why it failed).

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use sms_core::reason::Reason;
use sms_proto::v1::{
    Direction, GetMessageRequest, ListMessagesRequest, Message, MessageStatus, StatusEntry,
};

use super::given;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, input, next_page, page, status_badge, status_name, time};
use crate::session::{Session, Signed};
use crate::{AppState, PageError, PageResult};

/// The log's filters, as the query string carries them (named as the API's fields).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    status: Option<String>,
    direction: Option<String>,
    errors_only: Option<String>,
    our_number: Option<String>,
    contact_number: Option<String>,
    lead_id: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    created_after: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    created_before: Option<String>,
    page: Option<String>,
}

/// The statuses a filter offers (their API names, less the prefix).
const STATUSES: &[MessageStatus] = &[
    MessageStatus::Accepted,
    MessageStatus::Scheduled,
    MessageStatus::Queued,
    MessageStatus::Sending,
    MessageStatus::Sent,
    MessageStatus::Delivered,
    MessageStatus::Undelivered,
    MessageStatus::Failed,
    MessageStatus::Canceled,
    MessageStatus::Received,
];

/// A day typed in a filter, as the UTC midnight that starts it (`days` later).
fn day(
    field: &str,
    v: Option<&str>,
    days: i64,
    errors: &mut FormErrors,
) -> Option<prost_types::Timestamp> {
    let v = v?;
    let parsed = v
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.checked_add(jiff::Span::new().days(days)).ok())
        .and_then(|d| {
            jiff::tz::TimeZone::UTC
                .to_ambiguous_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .unambiguous()
                .ok()
        });
    match parsed {
        Some(t) => Some(prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: 0,
        }),
        None => {
            errors
                .fields
                .insert(field.to_owned(), "A day, as 2026-12-04 (UTC).".to_owned());
            None
        }
    }
}

/// `GET /messages`.
pub async fn list(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(f): Query<Filters>,
) -> PageResult {
    let mut errors = FormErrors::default();
    let status = match given(&f.status) {
        None => MessageStatus::Unspecified,
        Some(s) => match STATUSES.iter().find(|st| status_name(**st as i32) == s) {
            Some(st) => *st,
            None => {
                errors
                    .fields
                    .insert("status".into(), "Not a status.".into());
                MessageStatus::Unspecified
            }
        },
    };
    let direction = match given(&f.direction) {
        None => Direction::Unspecified,
        Some("outbound") => Direction::Outbound,
        Some("inbound") => Direction::Inbound,
        Some(_) => {
            errors
                .fields
                .insert("direction".into(), "Outbound or inbound.".into());
            Direction::Unspecified
        }
    };
    let after = day("created_after", given(&f.created_after), 0, &mut errors);
    let before = day("created_before", given(&f.created_before), 1, &mut errors);
    let mut messages = Vec::new();
    let mut next = String::new();
    if errors.is_empty() {
        let request = ListMessagesRequest {
            status: status as i32,
            direction: direction as i32,
            errors_only: f.errors_only.is_some(),
            our_number: given(&f.our_number).unwrap_or_default().to_owned(),
            contact_number: given(&f.contact_number).unwrap_or_default().to_owned(),
            lead_id: given(&f.lead_id).unwrap_or_default().to_owned(),
            created_after: after,
            created_before: before,
            page_token: given(&f.page).unwrap_or_default().to_owned(),
            page_size: 50,
        };
        match state
            .api
            .messaging()
            .list_messages(call(&session, request))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                messages = r.messages;
                next = r.next_page_token;
            }
            Err(s) => {
                let e = ApiError::from(s);
                if !e.code.eq(&tonic::Code::InvalidArgument) {
                    return Err(PageError::Api(e));
                }
                // The API's recipient and number are this form's contact and our number.
                errors = FormErrors::from_api_renamed(
                    &e,
                    &["contact_number", "our_number", "lead_id"],
                    &[("to", "contact_number"), ("number", "our_number")],
                );
            }
        }
    }
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let content = html! {
        form.filters method="get" action="/messages" {
            label { span { "Status" }
                select name="status" id="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        @let name = status_name(*s as i32);
                        option value=(name) selected[given(&f.status) == Some(name.as_str())] { (name) }
                    }
                }
                (errors.at("status"))
            }
            label { span { "Direction" }
                select name="direction" id="direction" {
                    option value="" { "both" }
                    option value="outbound" selected[given(&f.direction) == Some("outbound")] { "outbound" }
                    option value="inbound" selected[given(&f.direction) == Some("inbound")] { "inbound" }
                }
                (errors.at("direction"))
            }
            (input("Our number", "our_number", &v(&f.our_number), &errors))
            (input("Contact", "contact_number", &v(&f.contact_number), &errors))
            (input("Lead", "lead_id", &v(&f.lead_id), &errors))
            label { span { "From (UTC)" }
                input type="date" name="created_after" id="created_after" value=(v(&f.created_after));
                (errors.at("created_after"))
            }
            label { span { "To (UTC)" }
                input type="date" name="created_before" id="created_before" value=(v(&f.created_before));
                (errors.at("created_before"))
            }
            label.inline { input type="checkbox" name="errors_only" value="1" checked[f.errors_only.is_some()]; span { "Errors only" } }
            button type="submit" { "Filter" }
        }
        (errors.top())
        (table(&messages))
        (next_page("/messages", &[
            ("status", &v(&f.status)), ("direction", &v(&f.direction)),
            ("errors_only", &v(&f.errors_only)), ("our_number", &v(&f.our_number)),
            ("contact_number", &v(&f.contact_number)), ("lead_id", &v(&f.lead_id)),
            ("created_after", &v(&f.created_after)), ("created_before", &v(&f.created_before)),
        ], &next))
    };
    Ok(page(&session, "/messages", "Messages", content))
}

/// A body cut to `max` characters.
pub fn excerpt(body: &str, max: usize) -> String {
    if body.chars().count() <= max {
        return body.to_owned();
    }
    let mut s: String = body.chars().take(max).collect();
    s.push('…');
    s
}

/// Messages as a table: each row its status, encoding and segments.
pub fn table(messages: &[Message]) -> Markup {
    html! {
        @if messages.is_empty() {
            p.muted { "No messages." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "Created" } th { "" } th { "From" } th { "To" } th { "Status" }
                    th.hide-narrow { "Encoding" } th.num { "Segments" } th { "Body" }
                } }
                tbody {
                    @for m in messages {
                        tr data-id=(m.id) {
                            td { a href=(format!("/messages/{}", m.id)) { (time(m.created_at.as_ref())) } }
                            td title=(direction(m.direction)) { (arrow(m.direction)) }
                            td { (m.from) } td { (m.to) }
                            td { (status_badge(m.status))
                                @if !m.reason.is_empty() { " " span.muted { (m.reason) } } }
                            td.hide-narrow { (m.encoding) }
                            td.num { (m.segments) }
                            td.body { (excerpt(&m.body, 80)) }
                        }
                    }
                }
            } }
        }
    }
}

fn direction(d: i32) -> &'static str {
    match Direction::try_from(d) {
        Ok(Direction::Inbound) => "inbound",
        Ok(Direction::Outbound) => "outbound",
        _ => "",
    }
}

fn arrow(d: i32) -> &'static str {
    match Direction::try_from(d) {
        Ok(Direction::Inbound) => "←",
        _ => "→",
    }
}

/// A message of the session's organization.
async fn get(state: &AppState, session: &Session, id: String) -> Result<Message, PageError> {
    state
        .api
        .messaging()
        .get_message(call(session, GetMessageRequest { id }))
        .await
        .map_err(PageError::lookup)?
        .into_inner()
        .message
        .ok_or(PageError::NotFound)
}

/// `GET /messages/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> PageResult {
    let m = get(&state, &session, id).await?;
    let inbound = m.direction == Direction::Inbound as i32;
    let (ours, contact) = if inbound {
        (&m.to, &m.from)
    } else {
        (&m.from, &m.to)
    };
    let thread = super::conversations::thread_link(ours, contact);
    let content = html! {
        (live(&m))
        h2 { "Body" }
        div.preview { (m.body) }
        @if !m.attachments.is_empty() {
            h2 { "Attachments" }
            (super::conversations::attachments(&m.attachments))
        }
        p { a href=(thread) { "Open the conversation" } }
    };
    Ok(page(&session, "/messages", "Message", content))
}

/// A message's facts and timeline; until its status is final, htmx asks for them again every
/// second, so the page follows the message by itself.
fn live(m: &Message) -> Markup {
    let facts = html! {
        @if !m.reason.is_empty() { (why(&m.reason, m.carrier_error_code)) }
        div.card { dl.facts {
            dt { "Status" } dd #live { (status_badge(m.status)) }
            dt { "Direction" } dd { (direction(m.direction)) }
            dt { "From" } dd { (m.from) }
            dt { "To" } dd { (m.to) }
            dt { "Encoding" } dd { (m.encoding) }
            dt { "Segments" } dd { (m.segments) " (" (m.characters) " units)" }
            @if m.send_at.is_some() { dt { "Send at" } dd { (time(m.send_at.as_ref())) } }
            @if !m.lead_id.is_empty() { dt { "Lead" } dd { a href=(format!("/messages?lead_id={}", urlencode(&m.lead_id))) { (m.lead_id) } } }
            @if !m.contact_id.is_empty() { dt { "Contact" } dd { (m.contact_id) } }
            @if !m.user_id.is_empty() { dt { "User" } dd { (m.user_id) } }
            @if !m.carrier_sid.is_empty() { dt { "Carrier id" } dd { (m.carrier_sid) } }
            dt { "Id" } dd { (m.id) }
        } }
        h2 { "Timeline" }
        ol.timeline {
            @for h in &m.history { (entry(h)) }
        }
    };
    html! {
        @if is_final(m.status) {
            div #message { (facts) }
        } @else {
            div #message hx-get=(format!("/messages/{}/status", m.id)) hx-trigger="every 1s"
                hx-swap="outerHTML" { (facts) }
        }
    }
}

fn urlencode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Whether a status will not change again.
fn is_final(status: i32) -> bool {
    matches!(
        MessageStatus::try_from(status),
        Ok(MessageStatus::Delivered
            | MessageStatus::Undelivered
            | MessageStatus::Failed
            | MessageStatus::Canceled
            | MessageStatus::Received)
    )
}

/// `GET /messages/{id}/status` (htmx): the facts and timeline, for the message's page to
/// follow.
pub async fn status(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> PageResult {
    let m = get(&state, &session, id).await?;
    Ok(crate::html::fragment(live(&m)))
}

/// Why a message failed, in plain words, with the carrier's code.
fn why(reason: &str, code: u32) -> Markup {
    let explained = Reason::parse(reason).map(Reason::explanation);
    html! {
        div.card.why {
            strong { "Why: " (reason.replace('_', " ")) }
            @if let Some(text) = explained { p { (text) } }
            @if code != 0 { p.muted { "Carrier error code " (code) "." } }
        }
    }
}

fn entry(h: &StatusEntry) -> Markup {
    html! {
        li {
            (status_badge(h.status)) " " span.muted { (time(h.at.as_ref())) }
            @if !h.reason.is_empty() { " · " (h.reason) }
            @if h.carrier_error_code != 0 { " · carrier code " (h.carrier_error_code) }
            @if !h.detail.is_empty() { br; span.muted { (h.detail) } }
        }
    }
}
