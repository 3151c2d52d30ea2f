//! Opt-outs: search, add and remove with a reason, and the replies sent to HELP and STOP.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use sms_proto::v1::{
    AddOptOutRequest, CheckOptOutRequest, GetRepliesRequest, ListOptOutsRequest, OptOutStatus,
    RemoveOptOutRequest, SetRepliesRequest,
};

use super::given;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, csrf, input, next_page, page, time};
use crate::session::{Session, Signed, SignedForm};
use crate::{AppState, PageResult};

/// `GET /optouts` query.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// A contact number to look up.
    q: Option<String>,
    page: Option<String>,
    /// What the last change did, to say so.
    done: Option<String>,
}

/// Which form an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Search,
    Change,
    Replies,
}

/// `GET /optouts`.
pub async fn list(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    render(&state, &session, &q, None, &ChangeForm::default()).await
}

async fn render(
    state: &AppState,
    session: &Session,
    q: &ListQuery,
    refused: Option<(Which, FormErrors)>,
    change: &ChangeForm,
) -> PageResult {
    let mut refused = refused;
    let search = given(&q.q).map(str::to_owned);
    let mut found: Option<OptOutStatus> = None;
    let mut list = Vec::new();
    let mut next = String::new();
    if let Some(number) = &search {
        match state
            .api
            .opt_outs()
            .check_opt_out(call(
                session,
                CheckOptOutRequest {
                    contact_number: number.clone(),
                },
            ))
            .await
            .map_err(ApiError::from)
        {
            Ok(r) => found = r.into_inner().status,
            Err(e) if e.code == tonic::Code::InvalidArgument => {
                refused = Some((Which::Search, FormErrors::field("q", e.message)));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        let r = state
            .api
            .opt_outs()
            .list_opt_outs(call(
                session,
                ListOptOutsRequest {
                    page_size: 50,
                    page_token: given(&q.page).unwrap_or_default().to_owned(),
                },
            ))
            .await?
            .into_inner();
        list = r.opt_outs;
        next = r.next_page_token;
    }
    let replies = state
        .api
        .opt_outs()
        .get_replies(call(session, GetRepliesRequest {}))
        .await?
        .into_inner();
    let none = FormErrors::default();
    let errors_of = |w: Which| match &refused {
        Some((which, e)) if *which == w => e,
        _ => &none,
    };
    let content = html! {
        @if let Some(done) = given(&q.done) { p.notice role="status" { (done) } }
        form.filters method="get" action="/optouts" {
            (input("Contact number", "q", &search.clone().unwrap_or_default(), errors_of(Which::Search)))
            button type="submit" { "Search" }
        }
        @if let Some(number) = &search {
            @match &found {
                Some(s) => { (table(std::slice::from_ref(s))) }
                None => { p #not-opted-out { (number) " has not opted out." } }
            }
            p { a href="/optouts" { "All opt-outs" } }
        } @else {
            (table(&list))
            (next_page("/optouts", &[], &next))
        }
        h2 { "Opt a contact out or back in" }
        @let errors = errors_of(Which::Change);
        (errors.top())
        form.stack method="post" action="/optouts/add" {
            (csrf(session))
            div.row {
                (input("Contact number", "contact_number", &change.contact_number, errors))
                (input("Reason", "reason", &change.reason, errors))
            }
            div.row {
                div { button type="submit" { "Opt out" } }
                // Texting someone who said STOP again is an administrator's decision.
                @if session.admin {
                    div { button.secondary type="submit" formaction="/optouts/remove" { "Opt back in" } }
                }
            }
        }
        @if !session.admin {
            p.muted #admin-only { "Opting a contact back in, and the replies to HELP and STOP, are for the organization's administrators." }
        }
        h2 { "Replies" }
        @let errors = errors_of(Which::Replies);
        (errors.top())
        @if session.admin {
            form.stack method="post" action="/optouts/replies" {
                (csrf(session))
                label { span { "Reply to HELP" }
                    textarea name="help_text" id="help_text" maxlength="1000" { (replies.help_text) }
                    (errors.at("help_text"))
                }
                label { span { "Confirmation of STOP" }
                    textarea name="opt_out_confirmation" id="opt_out_confirmation" maxlength="1000" { (replies.opt_out_confirmation) }
                    (errors.at("opt_out_confirmation"))
                }
                div { button.secondary type="submit" { "Save replies" } }
            }
        } @else {
            dl.facts {
                dt { "Reply to HELP" } dd #help_text { (replies.help_text) }
                dt { "Confirmation of STOP" } dd #opt_out_confirmation { (replies.opt_out_confirmation) }
            }
        }
    };
    let mut response = page(session, "/optouts", "Opt-outs", content);
    if refused.is_some() {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

fn table(rows: &[OptOutStatus]) -> maud::Markup {
    html! {
        @if rows.is_empty() { p.muted { "No opt-outs." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Contact" } th { "Opted out" } th { "How" } th { "On our number" }
                    th { "Changed" } th { "By" } th { "Reason" } } }
                tbody { @for o in rows {
                    tr data-contact=(o.contact_number) {
                        td { (o.contact_number) }
                        td { @if o.opted_out { span.badge.bad { "opted out" } } @else { span.badge.ok { "opted in" } } }
                        td { (o.source) } td { (o.our_number) }
                        td { (time(o.changed_at.as_ref())) } td { (o.changed_by) } td { (o.reason) }
                    }
                } }
            } }
        }
    }
}

/// The add/remove form.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    contact_number: String,
    #[serde(default)]
    reason: String,
}

async fn change(state: &AppState, session: &Session, f: ChangeForm, opt_out: bool) -> PageResult {
    let mut client = state.api.opt_outs();
    let r = if opt_out {
        client
            .add_opt_out(call(
                session,
                AddOptOutRequest {
                    contact_number: f.contact_number.clone(),
                    reason: f.reason.clone(),
                },
            ))
            .await
            .map(|r| r.into_inner().status)
    } else {
        client
            .remove_opt_out(call(
                session,
                RemoveOptOutRequest {
                    contact_number: f.contact_number.clone(),
                    reason: f.reason.clone(),
                },
            ))
            .await
            .map(|r| r.into_inner().status)
    };
    match r.map_err(ApiError::from) {
        Ok(status) => {
            let s = status.unwrap_or_default();
            let done = format!(
                "{} is {}.",
                s.contact_number,
                if s.opted_out {
                    "opted out"
                } else {
                    "opted back in"
                }
            );
            let to = form_urlencoded::Serializer::new(String::new())
                .append_pair("q", &s.contact_number)
                .append_pair("done", &done)
                .finish();
            Ok(Redirect::to(&format!("/optouts?{to}")).into_response())
        }
        Err(e) if e.code == tonic::Code::InvalidArgument => {
            let errors = FormErrors::from_api_renamed(
                &e,
                &["contact_number", "reason"],
                &[("number", "contact_number")],
            );
            render(
                state,
                session,
                &ListQuery::default(),
                Some((Which::Change, errors)),
                &f,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /optouts/add`.
pub async fn add(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<ChangeForm>,
) -> PageResult {
    change(&state, &session, f, true).await
}

/// `POST /optouts/remove`.
pub async fn remove(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<ChangeForm>,
) -> PageResult {
    change(&state, &session, f, false).await
}

/// The replies form.
#[derive(Debug, Deserialize)]
pub struct RepliesForm {
    #[serde(default)]
    help_text: String,
    #[serde(default)]
    opt_out_confirmation: String,
}

/// `POST /optouts/replies`.
pub async fn replies(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<RepliesForm>,
) -> PageResult {
    let r = state
        .api
        .opt_outs()
        .set_replies(call(
            &session,
            SetRepliesRequest {
                help_text: f.help_text,
                opt_out_confirmation: f.opt_out_confirmation,
            },
        ))
        .await
        .map_err(ApiError::from);
    match r {
        Ok(_) => Ok(Redirect::to("/optouts?done=Replies+saved.").into_response()),
        Err(e) if e.code == tonic::Code::InvalidArgument => {
            let errors = FormErrors::from_api(&e, &["help_text", "opt_out_confirmation"]);
            render(
                &state,
                &session,
                &ListQuery::default(),
                Some((Which::Replies, errors)),
                &ChangeForm::default(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
