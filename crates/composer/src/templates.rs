//! SMS templates: saved validated, private to their creator or shared, rendered on send and in
//! previews.

use std::collections::BTreeMap;

use chrono::Utc;
use sms_core::template::{self, Template};
use sms_core::{MAX_BODY_CHARS, encoding, smart};
use sms_proto::v1::{PreviewRequest, PreviewResponse, TemplateContext, preview_request};
use uuid::Uuid;

use crate::app::{App, Caller, parse_id};
use crate::error::{ComposerError, Entity};
use crate::store::{self, TemplateRow};

/// The longest body a preview renders (past the send limit, so the preview can say by how much).
const PREVIEW_CAP: usize = 4 * MAX_BODY_CHARS;

/// Renders `source` against `context`, stopping at four times the body limit (callers check
/// the limit itself, so they can report the exact length).
pub fn render(source: &str, context: Option<&TemplateContext>) -> Result<String, ComposerError> {
    let parsed = Template::parse(source)?;
    parsed
        .render(&core_context(context), PREVIEW_CAP)
        .map_err(|_| {
            sms_core::BodyError::TooLong {
                chars: PREVIEW_CAP + 1,
            }
            .into()
        })
}

impl App {
    /// Saves a new template after validating it.
    pub async fn create_template(
        &self,
        caller: &Caller,
        name: &str,
        body: &str,
        shared: bool,
    ) -> Result<TemplateRow, ComposerError> {
        let user = caller
            .user_id
            .as_deref()
            .ok_or(ComposerError::MissingUser)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ComposerError::MissingName);
        }
        Template::parse(body)?;
        let now = Utc::now();
        let row = TemplateRow {
            id: Uuid::now_v7(),
            owner_user_id: user.to_owned(),
            name: name.to_owned(),
            body: body.to_owned(),
            shared,
            created_at: now,
            updated_at: now,
        };
        store::insert_template(&self.pool, &caller.organization_id, &row).await?;
        Ok(row)
    }

    /// A template the user may see.
    pub async fn get_template(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<TemplateRow, ComposerError> {
        let user = caller
            .user_id
            .as_deref()
            .ok_or(ComposerError::MissingUser)?;
        store::visible_template(&self.pool, &caller.organization_id, user, parse_id(id)?)
            .await?
            .ok_or(ComposerError::NotFound(Entity::Template))
    }

    /// The templates the user may see.
    pub async fn list_templates(&self, caller: &Caller) -> Result<Vec<TemplateRow>, ComposerError> {
        let user = caller
            .user_id
            .as_deref()
            .ok_or(ComposerError::MissingUser)?;
        Ok(store::visible_templates(&self.pool, &caller.organization_id, user).await?)
    }

    /// Changes a template; only its creator may.
    pub async fn update_template(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<&str>,
        body: Option<&str>,
        shared: Option<bool>,
    ) -> Result<TemplateRow, ComposerError> {
        let mut row = self.owned_template(caller, id).await?;
        if let Some(name) = name {
            let name = name.trim();
            if name.is_empty() {
                return Err(ComposerError::MissingName);
            }
            row.name = name.to_owned();
        }
        if let Some(body) = body {
            Template::parse(body)?;
            row.body = body.to_owned();
        }
        if let Some(shared) = shared {
            row.shared = shared;
        }
        row.updated_at = Utc::now();
        store::update_template(&self.pool, &caller.organization_id, &row).await?;
        Ok(row)
    }

    /// Deletes a template; only its creator may.
    pub async fn delete_template(&self, caller: &Caller, id: &str) -> Result<(), ComposerError> {
        let row = self.owned_template(caller, id).await?;
        store::delete_template(&self.pool, &caller.organization_id, row.id).await?;
        Ok(())
    }

    async fn owned_template(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<TemplateRow, ComposerError> {
        let row = self.get_template(caller, id).await?;
        if Some(row.owner_user_id.as_str()) != caller.user_id.as_deref() {
            return Err(ComposerError::NotTemplateOwner);
        }
        Ok(row)
    }

    /// Renders a template or raw body and reports what it would cost.
    pub async fn preview(
        &self,
        caller: &Caller,
        req: &PreviewRequest,
    ) -> Result<PreviewResponse, ComposerError> {
        let source = match &req.source {
            Some(preview_request::Source::TemplateId(id)) => {
                self.get_template(caller, id).await?.body
            }
            Some(preview_request::Source::Body(body)) => body.clone(),
            None => String::new(),
        };
        let body = render(&source, req.context.as_ref())?;
        let analysis = encoding::analyze(&body);
        let smart = smart::smart_encoded(&body);
        let length = body.chars().count();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(PreviewResponse {
            encoding: analysis.encoding.as_str().to_owned(),
            segments: n(analysis.segments),
            characters: n(analysis.characters),
            non_gsm: analysis.non_gsm.iter().map(char::to_string).collect(),
            length: n(length),
            too_long: length > MAX_BODY_CHARS,
            smart_encoding: smart.after.encoding.as_str().to_owned(),
            smart_segments: n(smart.after.segments),
            segments_saved: n(smart.segments_saved()),
            smart_body: smart.text,
            body,
        })
    }
}

/// The domain context of a request's context (missing parts are empty).
pub fn core_context(c: Option<&TemplateContext>) -> template::Context {
    let Some(c) = c else {
        return template::Context::default();
    };
    let map = |m: &std::collections::HashMap<String, String>| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut out = template::Context::default();
    if let Some(l) = &c.lead {
        out.lead = template::Lead {
            display_name: l.display_name.clone(),
            name: l.name.clone(),
            primary_contact_name: l.primary_contact_name.clone(),
            description: l.description.clone(),
            url: l.url.clone(),
            status_label: l.status_label.clone(),
            custom: map(&l.custom),
            primary_address: l
                .primary_address
                .as_ref()
                .map(|a| template::Address {
                    address_1: a.address_1.clone(),
                    address_2: a.address_2.clone(),
                    city: a.city.clone(),
                    state: a.state.clone(),
                    zipcode: a.zipcode.clone(),
                    country: a.country.clone(),
                    country_name: a.country_name.clone(),
                })
                .unwrap_or_default(),
            primary_opportunity_custom: map(&l.primary_opportunity_custom),
        };
    }
    if let Some(k) = &c.contact {
        out.contact = template::Contact {
            name: k.name.clone(),
            first_name: k.first_name.clone(),
            last_name: k.last_name.clone(),
            title: k.title.clone(),
            phone: k.phone.clone(),
            email: k.email.clone(),
            url: k.url.clone(),
            custom: map(&k.custom),
        };
    }
    if let Some(u) = &c.user {
        out.user = template::User {
            from_name: u.from_name.clone(),
            from_email: u.from_email.clone(),
            phone: u.phone.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
        };
    }
    if let Some(o) = &c.organization {
        out.organization.name = o.name.clone();
    }
    out
}
