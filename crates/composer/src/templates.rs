//! SMS templates: saved validated, private to their creator or shared, rendered on send and in
//! previews.

use chrono::Utc;
use sms_core::template::{self, Template};
use sms_core::text::{self, Lines};
use sms_core::{MAX_BODY_CHARS, encoding, smart};
use uuid::Uuid;

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{Entity, TemplatesError};
use crate::fields::{parse_id, user};
use crate::store::{self, TemplateRow};

/// Longest template name.
pub const MAX_TEMPLATE_NAME: usize = 200;

/// Checks a template name and source before anything else looks at them.
fn check_name(name: &str) -> Result<&str, TemplatesError> {
    text::check("name", name, MAX_TEMPLATE_NAME, Lines::Single)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(TemplatesError::MissingName);
    }
    Ok(name)
}

fn check_source(body: &str) -> Result<Template, TemplatesError> {
    // The length is the template parser's to report (TEMPLATE_TOO_LONG); characters are ours.
    text::check("body", body, usize::MAX, Lines::Multi)?;
    Ok(Template::parse(body)?)
}

/// The longest body a preview renders (past the send limit, so the preview can say by how much).
const PREVIEW_CAP: usize = 4 * MAX_BODY_CHARS;

/// Renders `source` against `context`, stopping at four times the body limit (callers check
/// the limit itself, so they can report the exact length).
pub fn render(source: &str, context: &template::Context) -> Result<String, TemplatesError> {
    let parsed = Template::parse(source)?;
    parsed
        .render(context, PREVIEW_CAP)
        .map_err(|e| sms_core::BodyError::TooLong { chars: e.chars }.into())
}

/// What a preview renders.
#[derive(Debug, Clone, Copy)]
pub enum PreviewSource<'a> {
    /// One of the organization's templates, by id.
    Template(&'a str),
    /// A body given as is.
    Body(&'a str),
    /// Nothing: an empty body.
    Unset,
}

/// A rendered body and what it would cost.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The rendered body.
    pub body: String,
    /// Its encoding, segments and characters.
    pub analysis: sms_core::Analysis,
    /// What smart encoding would send.
    pub smart: smart::SmartEncoded,
    /// Unicode characters (the body limit counts these).
    pub length: usize,
}

/// Templates: an organization's shared ones and each user's own, and previews.
#[derive(Clone)]
pub struct Templates {
    pool: PgPool,
}

impl Templates {
    /// Templates kept in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Templates { pool }
    }

    /// Saves a new template after validating it.
    pub async fn create_template(
        &self,
        caller: &Caller,
        name: &str,
        body: &str,
        shared: bool,
    ) -> Result<TemplateRow, TemplatesError> {
        let user = user(caller)?;
        let name = check_name(name)?;
        check_source(body)?;
        let now = Utc::now();
        let row = TemplateRow {
            id: Uuid::now_v7().into(),
            owner_user_id: user.to_owned(),
            name: name.to_owned(),
            body: body.to_owned(),
            shared,
            created_at: now,
            updated_at: now,
        };
        store::templates::insert(&self.pool, &caller.organization_id, &row).await?;
        Ok(row)
    }

    /// A template the user may see.
    pub async fn get_template(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<TemplateRow, TemplatesError> {
        self.template_by("id", caller, id).await
    }

    /// A template the user may see, its id given in request field `field`.
    async fn template_by(
        &self,
        field: &'static str,
        caller: &Caller,
        id: &str,
    ) -> Result<TemplateRow, TemplatesError> {
        let user = user(caller)?;
        store::templates::visible(
            &self.pool,
            &caller.organization_id,
            user,
            parse_id(field, id)?,
        )
        .await?
        .ok_or(TemplatesError::from(Entity::Template))
    }

    /// The templates the user may see.
    pub async fn list_templates(
        &self,
        caller: &Caller,
    ) -> Result<Vec<TemplateRow>, TemplatesError> {
        let user = user(caller)?;
        Ok(store::templates::list_visible(&self.pool, &caller.organization_id, user).await?)
    }

    /// Changes a template; only its creator may.
    pub async fn update_template(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<&str>,
        body: Option<&str>,
        shared: Option<bool>,
    ) -> Result<TemplateRow, TemplatesError> {
        // The request's fields first, then the database.
        let name = name.map(check_name).transpose()?;
        if let Some(body) = body {
            check_source(body)?;
        }
        let mut row = self.owned_template(caller, id).await?;
        if let Some(name) = name {
            row.name = name.to_owned();
        }
        if let Some(body) = body {
            row.body = body.to_owned();
        }
        if let Some(shared) = shared {
            row.shared = shared;
        }
        row.updated_at = Utc::now();
        store::templates::update(&self.pool, &caller.organization_id, &row).await?;
        Ok(row)
    }

    /// Deletes a template; only its creator may.
    pub async fn delete_template(&self, caller: &Caller, id: &str) -> Result<(), TemplatesError> {
        let row = self.owned_template(caller, id).await?;
        store::templates::delete(&self.pool, &caller.organization_id, row.id).await?;
        Ok(())
    }

    async fn owned_template(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<TemplateRow, TemplatesError> {
        let row = self.get_template(caller, id).await?;
        if !caller.owns_or_administers(&row.owner_user_id) {
            return Err(TemplatesError::NotTemplateOwner);
        }
        Ok(row)
    }

    /// Renders a template or raw body with `context` and reports what it would cost.
    pub async fn preview(
        &self,
        caller: &Caller,
        source: PreviewSource<'_>,
        context: &sms_core::template::Context,
    ) -> Result<Preview, TemplatesError> {
        let source = match source {
            PreviewSource::Template(id) => self.template_by("template_id", caller, id).await?.body,
            PreviewSource::Body(body) => {
                check_source(body)?;
                body.to_owned()
            }
            PreviewSource::Unset => String::new(),
        };
        let body = render(&source, context)?;
        Ok(Preview {
            analysis: encoding::analyze(&body),
            smart: smart::smart_encoded(&body),
            length: body.chars().count(),
            body,
        })
    }
}
