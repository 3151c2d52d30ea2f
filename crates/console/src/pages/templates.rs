//! Templates: the list, and the editor with the live segment counter.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use sms_proto::v1::{
    CreateTemplateRequest, DeleteTemplateRequest, GetTemplateRequest, ListTemplatesRequest,
    Template, UpdateTemplateRequest,
};

use super::compose::{counted_body, counter, sample_note};
use crate::api::{ApiError, call};
use crate::html::{FormErrors, csrf, input, page, time};
use crate::session::{Session, Signed, SignedForm};
use crate::{AppState, PageError, PageResult};

/// `GET /templates`.
pub async fn list(State(state): State<AppState>, Signed(session): Signed) -> PageResult {
    let templates = state
        .api
        .templates()
        .list_templates(call(&session, ListTemplatesRequest {}))
        .await?
        .into_inner()
        .templates;
    let content = html! {
        p { a href="/templates/new" { "New template" } }
        @if templates.is_empty() { p.muted { "No templates yet." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Body" } th { "Shared" } th { "Owner" } th { "Updated" } } }
                tbody { @for t in &templates {
                    tr {
                        td { a href=(format!("/templates/{}", t.id)) { (t.name) } }
                        td.body { (super::messages::excerpt(&t.body, 80)) }
                        td { (if t.shared { "yes" } else { "no" }) }
                        td { (t.owner_user_id) }
                        td { (time(t.updated_at.as_ref())) }
                    }
                } }
            } }
        }
    };
    Ok(page(&session, "/templates", "Templates", content))
}

/// The editor's fields.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    shared: Option<String>,
}

const FIELDS: &[&str] = &["name", "body"];

async fn editor(
    state: &AppState,
    session: &Session,
    id: Option<&str>,
    f: &TemplateForm,
    errors: &FormErrors,
) -> PageResult {
    let action = match id {
        Some(id) => format!("/templates/{id}"),
        None => "/templates".to_owned(),
    };
    let counter = counter(state, session, &f.body).await;
    let content = html! {
        (errors.top())
        form.stack method="post" action=(action) {
            (csrf(session))
            (input("Name", "name", &f.name, errors))
            (counted_body("Body (CRM tags such as {{ contact.first_name }})", &f.body, errors, counter))
            label.inline { input type="checkbox" name="shared" value="1" checked[f.shared.is_some()];
                span { "Shared with the organization" } }
            div.row { div { button type="submit" { "Save" } } }
        }
        (sample_note())
        @if let Some(id) = id {
            form method="post" action=(format!("/templates/{id}/delete")) {
                (csrf(session))
                button.danger type="submit" { "Delete template" }
            }
        }
    };
    let title = if id.is_some() {
        "Edit template"
    } else {
        "New template"
    };
    let mut r = page(session, "/templates", title, content);
    if !errors.is_empty() {
        *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

/// `GET /templates/new`.
pub async fn new(State(state): State<AppState>, Signed(session): Signed) -> PageResult {
    editor(
        &state,
        &session,
        None,
        &TemplateForm::default(),
        &FormErrors::default(),
    )
    .await
}

async fn get(state: &AppState, session: &Session, id: &str) -> Result<Template, PageError> {
    state
        .api
        .templates()
        .get_template(call(session, GetTemplateRequest { id: id.to_owned() }))
        .await
        .map_err(PageError::lookup)?
        .into_inner()
        .template
        .ok_or(PageError::NotFound)
}

/// `GET /templates/{id}`.
pub async fn edit(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> PageResult {
    let t = get(&state, &session, &id).await?;
    let f = TemplateForm {
        name: t.name,
        body: t.body,
        shared: t.shared.then(|| "1".to_owned()),
    };
    editor(&state, &session, Some(&id), &f, &FormErrors::default()).await
}

/// `POST /templates`.
pub async fn create(
    State(state): State<AppState>,
    SignedForm(session, f): SignedForm<TemplateForm>,
) -> PageResult {
    let r = state
        .api
        .templates()
        .create_template(call(
            &session,
            CreateTemplateRequest {
                name: f.name.clone(),
                body: f.body.clone(),
                shared: f.shared.is_some(),
            },
        ))
        .await;
    match r {
        Ok(_) => Ok(Redirect::to("/templates").into_response()),
        Err(s) => refused(&state, &session, None, &f, s).await,
    }
}

async fn refused(
    state: &AppState,
    session: &Session,
    id: Option<&str>,
    f: &TemplateForm,
    s: tonic::Status,
) -> PageResult {
    let e = ApiError::from(s);
    match e.code {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            editor(state, session, id, f, &FormErrors::from_api(&e, FIELDS)).await
        }
        _ => Err(e.into()),
    }
}

/// `POST /templates/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(session, f): SignedForm<TemplateForm>,
) -> PageResult {
    let r = state
        .api
        .templates()
        .update_template(call(
            &session,
            UpdateTemplateRequest {
                id: id.clone(),
                name: Some(f.name.clone()),
                body: Some(f.body.clone()),
                shared: Some(f.shared.is_some()),
            },
        ))
        .await;
    match r {
        Ok(_) => Ok(Redirect::to("/templates").into_response()),
        Err(s) if s.code() == tonic::Code::NotFound => Err(PageError::NotFound),
        Err(s) => refused(&state, &session, Some(&id), &f, s).await,
    }
}

/// `POST /templates/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(session, super::Empty {}): SignedForm<super::Empty>,
) -> PageResult {
    state
        .api
        .templates()
        .delete_template(call(&session, DeleteTemplateRequest { id }))
        .await
        .map_err(PageError::lookup)?;
    Ok(Redirect::to("/templates").into_response())
}
