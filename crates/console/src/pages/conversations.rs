//! Conversations (one per number of ours and contact), a thread with its reply box, the inbox
//! with "done", and attachments.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;
use sms_proto::v1::{
    Attachment, AttachmentState, Direction, GetConversationRequest, GetMediaRequest,
    ListConversationsRequest, ListInboxRequest, MarkInboxDoneRequest, Message, SendMessageRequest,
};

use super::given;
use super::messages::excerpt;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, csrf, fragment, input, next_page, page, status_badge, time};
use crate::session::{Session, Signed, SignedForm, random_token};
use crate::{AppState, PageError, PageResult};

/// The link to a thread.
pub fn thread_link(ours: &str, contact: &str) -> String {
    format!(
        "/conversation?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("ours", ours)
            .append_pair("contact", contact)
            .finish()
    )
}

/// `GET /conversations` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    our_number: Option<String>,
    page: Option<String>,
}

/// `GET /conversations`.
pub async fn list(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let ours = given(&q.our_number).unwrap_or_default().to_owned();
    let result = state
        .api
        .messaging()
        .list_conversations(call(
            &session,
            ListConversationsRequest {
                our_number: ours.clone(),
                page_size: 50,
                page_token: given(&q.page).unwrap_or_default().to_owned(),
            },
        ))
        .await;
    let (conversations, next, errors) = match result {
        Ok(r) => {
            let r = r.into_inner();
            (r.conversations, r.next_page_token, FormErrors::default())
        }
        Err(s) => {
            let e = ApiError::from(s);
            if e.code != tonic::Code::InvalidArgument {
                return Err(e.into());
            }
            let errors =
                FormErrors::from_api_renamed(&e, &["our_number"], &[("number", "our_number")]);
            (Vec::new(), String::new(), errors)
        }
    };
    let content = html! {
        form.filters method="get" action="/conversations" {
            (input("Our number", "our_number", &ours, &errors))
            button type="submit" { "Filter" }
        }
        (errors.top())
        @if conversations.is_empty() { p.muted { "No conversations." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Contact" } th { "Our number" } th { "Last message" }
                    th.num { "Messages" } th.num { "Open" } } }
                tbody { @for c in &conversations {
                    tr {
                        td { a href=(thread_link(&c.our_number, &c.contact_number)) { (c.contact_number) } }
                        td { (c.our_number) }
                        td.body { @if let Some(m) = &c.last_message {
                            span.muted { (time(m.created_at.as_ref())) } br;
                            (if m.direction == Direction::Inbound as i32 { "← " } else { "→ " })
                            (excerpt(&m.body, 80))
                        } }
                        td.num { (c.messages) }
                        td.num { (c.open_inbound) }
                    }
                } }
            } }
        }
        (next_page("/conversations", &[("our_number", &ours)], &next))
    };
    Ok(page(&session, "/conversations", "Conversations", content))
}

/// `GET /conversation` query.
#[derive(Debug, Deserialize)]
pub struct ThreadQuery {
    ours: String,
    contact: String,
}

/// The most messages a thread page shows.
const THREAD_PAGES: usize = 5;

/// `GET /conversation?ours=…&contact=…`.
pub async fn show(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<ThreadQuery>,
) -> PageResult {
    thread(
        &state,
        &session,
        &q.ours,
        &q.contact,
        "",
        &FormErrors::default(),
    )
    .await
}

async fn thread(
    state: &AppState,
    session: &Session,
    ours: &str,
    contact: &str,
    draft: &str,
    errors: &FormErrors,
) -> PageResult {
    let mut messages: Vec<Message> = Vec::new();
    let mut token = String::new();
    for _ in 0..THREAD_PAGES {
        let r = state
            .api
            .messaging()
            .get_conversation(call(
                session,
                GetConversationRequest {
                    our_number: ours.to_owned(),
                    contact_number: contact.to_owned(),
                    page_size: 100,
                    page_token: token,
                },
            ))
            .await
            .map_err(PageError::lookup)?
            .into_inner();
        messages.extend(r.messages);
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let content = html! {
        p.muted { "Our number " (ours) " · contact " (contact) " · "
            a href=(format!("/messages?contact_number={}", urlencode(contact))) { "all messages" } }
        div.thread {
            @if messages.is_empty() { p.muted { "No messages yet." } }
            @for m in &messages { (bubble(m)) }
        }
        @if !token.is_empty() { p.muted { "Older messages are shown first; the newest are in the message log." } }
        h2 { "Reply" }
        (errors.top())
        form.stack method="post" action="/conversation/reply" {
            (csrf(session))
            input type="hidden" name="ours" value=(ours);
            input type="hidden" name="contact" value=(contact);
            input type="hidden" name="key" value=(random_token());
            label { span { "Message" }
                textarea name="body" id="body" required maxlength="1000"
                    aria-invalid=[errors.fields.contains_key("body").then_some("true")] { (draft) }
                (errors.at("body"))
            }
            (errors.at("to")) (errors.at("from"))
            div { button type="submit" { "Send" } }
        }
    };
    let mut r = page(
        session,
        "/conversations",
        &format!("Conversation with {contact}"),
        content,
    );
    *r.status_mut() = status;
    Ok(r)
}

fn urlencode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn bubble(m: &Message) -> Markup {
    let inbound = m.direction == Direction::Inbound as i32;
    html! {
        div class=(if inbound { "bubble inbound" } else { "bubble outbound" }) data-id=(m.id) {
            (m.body)
            (attachments(&m.attachments))
            span.meta {
                a href=(format!("/messages/{}", m.id)) { (time(m.created_at.as_ref())) }
                " " (status_badge(m.status))
                @if !m.reason.is_empty() { " " (m.reason) }
            }
        }
    }
}

/// Content types shown inline (raster images only: an SVG could carry script).
fn inline_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    )
}

/// Attachments: images inline, every file downloadable.
pub fn attachments(files: &[Attachment]) -> Markup {
    html! {
        @for a in files {
            @let stored = a.attachment_state == AttachmentState::Stored as i32;
            @if inline_image(&a.content_type) && stored {
                img src=(format!("/media/{}", a.id)) alt=(a.file_name);
            }
            span.meta {
                @if stored {
                    a href=(format!("/media/{}?download=1", a.id)) { "⤓ " (a.file_name) }
                } @else { (a.file_name) }
                " · " (a.content_type) " · " (a.size) " bytes"
                @if !a.error.is_empty() { " · " span.error { (a.error) } }
            }
        }
    }
}

/// `GET /media/{id}` query.
#[derive(Debug, Deserialize)]
pub struct MediaQuery {
    download: Option<String>,
}

/// `GET /media/{id}`: an attachment's bytes. Only raster images are shown inline; everything
/// else is a download of opaque bytes, sandboxed, so a file can never run as this console.
pub async fn media(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Query(q): Query<MediaQuery>,
) -> PageResult {
    let r = state
        .api
        .messaging()
        .get_media(call(&session, GetMediaRequest { id }))
        .await
        .map_err(PageError::lookup)?
        .into_inner();
    let a = r.attachment.unwrap_or_default();
    let inline = q.download.is_none() && inline_image(&a.content_type);
    let content_type = if inline {
        a.content_type.clone()
    } else {
        "application/octet-stream".to_owned()
    };
    // The file name as a token a header can carry: unusual characters become `_`.
    let name: String = a
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        if name.is_empty() { "attachment" } else { &name }
    );
    let mut response = r.data.into_response();
    let h = response.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_DISPOSITION, disposition),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".to_owned(),
        ),
        (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    Ok(response)
}

/// The reply form.
#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    ours: String,
    contact: String,
    body: String,
    /// An idempotency key made when the form was shown: a form sent twice sends once.
    key: String,
}

/// `POST /conversation/reply`.
pub async fn reply(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<ReplyForm>,
) -> PageResult {
    let sent = state
        .api
        .messaging()
        .send_message(call(
            &session,
            SendMessageRequest {
                from: f.ours.clone(),
                to: f.contact.clone(),
                body: f.body.clone(),
                idempotency_key: f.key.clone(),
                ..Default::default()
            },
        ))
        .await;
    match sent {
        Ok(_) => Ok(Redirect::to(&thread_link(&f.ours, &f.contact)).into_response()),
        Err(s) => {
            let e = ApiError::from(s);
            if e.code == tonic::Code::Unauthenticated || e.code == tonic::Code::Unavailable {
                return Err(e.into());
            }
            let errors = FormErrors::from_api(&e, &["body"]);
            thread(&state, &session, &f.ours, &f.contact, &f.body, &errors).await
        }
    }
}

/// `GET /inbox` query.
#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    include_done: Option<String>,
    page: Option<String>,
}

/// `GET /inbox`: messages received on the user's numbers.
pub async fn inbox(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<InboxQuery>,
) -> PageResult {
    let include_done = q.include_done.is_some();
    let r = state
        .api
        .messaging()
        .list_inbox(call(
            &session,
            ListInboxRequest {
                include_done,
                page_size: 50,
                page_token: given(&q.page).unwrap_or_default().to_owned(),
            },
        ))
        .await?
        .into_inner();
    let content = html! {
        form.filters method="get" action="/inbox" {
            label.inline { input type="checkbox" name="include_done" value="1" checked[include_done]; span { "Show done" } }
            button.secondary type="submit" { "Show" }
        }
        @if r.messages.is_empty() { p.muted { "Nothing waiting." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Received" } th { "From" } th { "On" } th { "Message" } th { "" } } }
                tbody { @for m in &r.messages { (inbox_row(&session, m)) } }
            } }
        }
        (next_page("/inbox", &[("include_done", if include_done { "1" } else { "" })], &r.next_page_token))
    };
    Ok(page(&session, "/inbox", "Inbox", content))
}

fn inbox_row(session: &Session, m: &Message) -> Markup {
    html! {
        tr data-id=(m.id) {
            td { a href=(format!("/messages/{}", m.id)) { (time(m.created_at.as_ref())) } }
            td { a href=(thread_link(&m.to, &m.from)) { (m.from) } }
            td { (m.to) }
            td.body { (excerpt(&m.body, 120)) }
            td {
                form method="post" action=(format!("/inbox/{}/done", m.id))
                    hx-post=(format!("/inbox/{}/done", m.id)) hx-target="closest tr" hx-swap="outerHTML" {
                    (csrf(session))
                    input type="hidden" name="done" value=(if m.done { "0" } else { "1" });
                    @if m.done { button.secondary type="submit" { "Reopen" } }
                    @else { button type="submit" { "Done" } }
                }
            }
        }
    }
}

/// The done form.
#[derive(Debug, Deserialize)]
pub struct DoneForm {
    done: String,
}

/// `POST /inbox/{id}/done`: the updated row for htmx, the inbox otherwise.
pub async fn done(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    SignedForm(session, f): SignedForm<DoneForm>,
) -> PageResult {
    let done = match f.done.as_str() {
        "1" => true,
        "0" => false,
        _ => {
            return Ok(crate::html::error_page(
                StatusCode::BAD_REQUEST,
                "Not accepted",
                "done is 1 or 0.",
            ));
        }
    };
    let m = state
        .api
        .messaging()
        .mark_inbox_done(call(&session, MarkInboxDoneRequest { id, done }))
        .await
        .map_err(PageError::lookup)?
        .into_inner()
        .message
        .ok_or(PageError::NotFound)?;
    if headers.contains_key("hx-request") {
        return Ok(fragment(inbox_row(&session, &m)));
    }
    Ok(Redirect::to("/inbox").into_response())
}
