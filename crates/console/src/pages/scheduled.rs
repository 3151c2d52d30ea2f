//! Scheduled sends: the upcoming ones, cancel and reschedule.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use sms_proto::v1::{
    CancelMessageRequest, ListMessagesRequest, MessageStatus, RescheduleMessageRequest,
};

use super::compose::{local_time, zones};
use super::given;
use super::messages::excerpt;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, csrf, next_page, page, time};
use crate::session::{Session, Signed, SignedForm};
use crate::{AppState, PageError, PageResult};

/// `GET /scheduled` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<String>,
}

/// `GET /scheduled`.
pub async fn list(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    render(&state, &session, given(&q.page).unwrap_or_default(), None).await
}

async fn render(
    state: &AppState,
    session: &Session,
    page_token: &str,
    refused: Option<(&str, &FormErrors)>,
) -> PageResult {
    let mut r = state
        .api
        .messaging()
        .list_messages(call(
            session,
            ListMessagesRequest {
                status: MessageStatus::Scheduled as i32,
                page_size: 100,
                page_token: page_token.to_owned(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    // The API pages by creation; a page is shown soonest first.
    r.messages
        .sort_by_key(|m| m.send_at.as_ref().map(|t| (t.seconds, t.nanos)));
    let no_errors = FormErrors::default();
    let content = html! {
        @if r.messages.is_empty() { p.muted { "Nothing scheduled." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Sends at" } th { "From" } th { "To" } th { "Body" } th { "" } } }
                tbody { @for m in &r.messages {
                    @let errors = refused.filter(|(id, _)| *id == m.id).map_or(&no_errors, |(_, e)| e);
                    tr data-id=(m.id) {
                        td { a href=(format!("/messages/{}", m.id)) { (time(m.send_at.as_ref())) } }
                        td { (m.from) } td { (m.to) }
                        td.body { (excerpt(&m.body, 80)) }
                        // A user moves their own sends; an administrator anyone's.
                        @if !session.admin && m.user_id != session.user_id {
                            td.muted { (m.user_id) "'s" }
                        } @else {
                        td {
                            (errors.top())
                            form method="post" action=(format!("/scheduled/{}/cancel", m.id)) {
                                (csrf(session))
                                button.danger type="submit" { "Cancel" }
                            }
                            details open[!errors.is_empty()] {
                                summary { "Reschedule" }
                                form.stack method="post" action=(format!("/scheduled/{}/reschedule", m.id)) {
                                    (csrf(session))
                                    label { span { "Date and time" }
                                        input type="datetime-local" name="send_at" required;
                                        (errors.at("send_at"))
                                    }
                                    label { span { "Time zone" }
                                        input type="text" name="time_zone" list="zones" required placeholder="America/New_York";
                                        (errors.at("time_zone"))
                                    }
                                    button.secondary type="submit" { "Reschedule" }
                                }
                            }
                        }
                        }
                    }
                } }
            } }
            (zones())
        }
        (next_page("/scheduled", &[], &r.next_page_token))
    };
    let mut response = page(session, "/scheduled", "Scheduled", content);
    if refused.is_some() {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

/// `POST /scheduled/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(session, super::Empty {}): SignedForm<super::Empty>,
) -> PageResult {
    let r = state
        .api
        .messaging()
        .cancel_message(call(&session, CancelMessageRequest { id: id.clone() }))
        .await;
    match r.map_err(ApiError::from) {
        Ok(_) => Ok(Redirect::to("/scheduled").into_response()),
        Err(e) if e.code == tonic::Code::FailedPrecondition => {
            let errors = FormErrors::from_api(&e, &[]);
            render(&state, &session, "", Some((&id, &errors))).await
        }
        Err(e) if e.code == tonic::Code::InvalidArgument => Err(PageError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// The reschedule form.
#[derive(Debug, Deserialize)]
pub struct RescheduleForm {
    #[serde(default)]
    send_at: String,
    #[serde(default)]
    time_zone: String,
}

/// `POST /scheduled/{id}/reschedule`.
pub async fn reschedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(session, f): SignedForm<RescheduleForm>,
) -> PageResult {
    let local = match local_time("later", &f.send_at, &f.time_zone) {
        Ok(l) => l,
        Err(errors) => return render(&state, &session, "", Some((&id, &errors))).await,
    };
    let r = state
        .api
        .messaging()
        .reschedule_message(call(
            &session,
            RescheduleMessageRequest {
                id: id.clone(),
                send_at: None,
                send_at_local: local,
            },
        ))
        .await;
    match r.map_err(ApiError::from) {
        Ok(_) => Ok(Redirect::to("/scheduled").into_response()),
        Err(e) if e.code == tonic::Code::NotFound => Err(PageError::NotFound),
        Err(e)
            if matches!(
                e.code,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) && e.reason != "INVALID_ID" =>
        {
            let errors = FormErrors::from_api(&e, &["send_at", "time_zone"]);
            render(&state, &session, "", Some((&id, &errors))).await
        }
        Err(e) if e.code == tonic::Code::InvalidArgument => Err(PageError::NotFound),
        Err(e) => Err(e.into()),
    }
}
