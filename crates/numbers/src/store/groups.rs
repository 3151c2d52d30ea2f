//! Groups of users sharing numbers.

use sqlx::PgPool;
use uuid::Uuid;

/// A group row.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Members.
    pub members: Vec<String>,
}

/// Whether `user_id` belongs to `group_id`.
#[tracing::instrument(skip(pool))]
pub async fn is_member(
    pool: &PgPool,
    organization_id: &str,
    group_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM composer.group_members
                          WHERE organization_id = $1 AND group_id = $2 AND user_id = $3) AS "found!""#,
        organization_id,
        group_id,
        user_id
    )
    .fetch_one(pool)
    .await
}

/// Creates a group; the caller maps the `groups_name_key` violation.
#[tracing::instrument(skip(pool))]
pub async fn insert(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.groups (id, organization_id, name) VALUES ($1, $2, $3)",
        id,
        organization_id,
        name
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// The organization's groups with their members, or one of them.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &PgPool,
    organization_id: &str,
    only: Option<Uuid>,
) -> Result<Vec<GroupRow>, sqlx::Error> {
    sqlx::query_as!(
        GroupRow,
        r#"SELECT g.id, g.name,
                  COALESCE(array_agg(m.user_id ORDER BY m.user_id)
                           FILTER (WHERE m.user_id IS NOT NULL), '{}') AS "members!"
           FROM composer.groups g
           LEFT JOIN composer.group_members m
             ON m.organization_id = g.organization_id AND m.group_id = g.id::text
           WHERE g.organization_id = $1 AND ($2::uuid IS NULL OR g.id = $2)
           GROUP BY g.id, g.name, g.created_at
           ORDER BY g.created_at, g.id"#,
        organization_id,
        only
    )
    .fetch_all(pool)
    .await
}

/// Adds or removes a member; returns whether anything changed.
#[tracing::instrument(skip(pool))]
pub async fn set_member(
    pool: &PgPool,
    organization_id: &str,
    group_id: Uuid,
    user_id: &str,
    member: bool,
) -> Result<bool, sqlx::Error> {
    let changed = if member {
        sqlx::query!(
            "INSERT INTO composer.group_members (organization_id, group_id, user_id)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            organization_id,
            group_id.to_string(),
            user_id
        )
        .execute(pool)
        .await?
    } else {
        sqlx::query!(
            "DELETE FROM composer.group_members
             WHERE organization_id = $1 AND group_id = $2 AND user_id = $3",
            organization_id,
            group_id.to_string(),
            user_id
        )
        .execute(pool)
        .await?
    };
    Ok(changed.rows_affected() > 0)
}

/// The users whose inbox shows messages to a number owned by `owner_group_id`.
#[tracing::instrument(skip(pool))]
pub async fn members(
    pool: &PgPool,
    organization_id: &str,
    group_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT user_id FROM composer.group_members
         WHERE organization_id = $1 AND group_id = $2 ORDER BY user_id",
        organization_id,
        group_id
    )
    .fetch_all(pool)
    .await
}
