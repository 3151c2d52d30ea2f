//! SMS templates: private to their creator or shared in the organization, deleted softly (the
//! messages that used them keep pointing at them).

use chrono::{DateTime, Utc};
use sms_core::TemplateId;
use sqlx::PgPool;

/// A template row.
#[derive(Debug, Clone)]
pub struct TemplateRow {
    /// Id.
    pub id: TemplateId,
    /// Creator.
    pub owner_user_id: String,
    /// Name.
    pub name: String,
    /// Source.
    pub body: String,
    /// Visible to the whole organization.
    pub shared: bool,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Updated at.
    pub updated_at: DateTime<Utc>,
}

/// Stores a new template.
#[tracing::instrument(skip(pool, t), fields(template_id = %t.id))]
pub async fn insert(
    pool: &PgPool,
    organization_id: &str,
    t: &TemplateRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.templates
            (id, organization_id, owner_user_id, name, body, shared, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        t.id.uuid(),
        organization_id,
        t.owner_user_id,
        t.name,
        t.body,
        t.shared,
        t.created_at,
        t.updated_at
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// A template the user may see: their own, or shared in the organization.
#[tracing::instrument(skip(pool))]
pub async fn visible(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
    id: TemplateId,
) -> Result<Option<TemplateRow>, sqlx::Error> {
    sqlx::query_as!(
        TemplateRow,
        r#"SELECT id AS "id: TemplateId", owner_user_id, name, body, shared, created_at, updated_at
         FROM composer.templates
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL
           AND (shared OR owner_user_id = $3)"#,
        organization_id,
        id.uuid(),
        user_id
    )
    .fetch_optional(pool)
    .await
}

/// The templates the user may see, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn list_visible(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
) -> Result<Vec<TemplateRow>, sqlx::Error> {
    sqlx::query_as!(
        TemplateRow,
        r#"SELECT id AS "id: TemplateId", owner_user_id, name, body, shared, created_at, updated_at
         FROM composer.templates
         WHERE organization_id = $1 AND deleted_at IS NULL AND (shared OR owner_user_id = $2)
         ORDER BY created_at, id"#,
        organization_id,
        user_id
    )
    .fetch_all(pool)
    .await
}

/// Saves a template's new name, body and visibility.
#[tracing::instrument(skip(pool, t), fields(template_id = %t.id))]
pub async fn update(
    pool: &PgPool,
    organization_id: &str,
    t: &TemplateRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.templates SET name = $3, body = $4, shared = $5, updated_at = $6
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        organization_id,
        t.id.uuid(),
        t.name,
        t.body,
        t.shared,
        t.updated_at
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Deletes a template (kept for the messages that used it).
#[tracing::instrument(skip(pool))]
pub async fn delete(
    pool: &PgPool,
    organization_id: &str,
    id: TemplateId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.templates SET deleted_at = now()
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        organization_id,
        id.uuid()
    )
    .execute(pool)
    .await
    .map(|_| ())
}
