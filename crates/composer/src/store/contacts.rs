//! The CRM's lead and contact per phone number.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    /// E.164.
    pub contact_number: String,
    /// The CRM's lead.
    pub lead_id: Option<String>,
    /// The CRM's contact.
    pub contact_id: Option<String>,
    /// Last set.
    pub updated_at: DateTime<Utc>,
}

/// Registers (or replaces) `contact_number`'s lead and contact.
pub async fn set(
    conn: &mut PgConnection,
    organization_id: &str,
    contact_number: &str,
    lead_id: Option<&str>,
    contact_id: Option<&str>,
) -> Result<ContactRow, sqlx::Error> {
    sqlx::query_as!(
        ContactRow,
        "INSERT INTO composer.contacts (organization_id, contact_number, lead_id, contact_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (organization_id, contact_number) DO UPDATE
         SET lead_id = EXCLUDED.lead_id, contact_id = EXCLUDED.contact_id, updated_at = now()
         RETURNING contact_number, lead_id, contact_id, updated_at",
        organization_id,
        contact_number,
        lead_id,
        contact_id
    )
    .fetch_one(conn)
    .await
}

/// `contact_number`'s registration, if any.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: &str,
    contact_number: &str,
) -> Result<Option<ContactRow>, sqlx::Error> {
    sqlx::query_as!(
        ContactRow,
        "SELECT contact_number, lead_id, contact_id, updated_at FROM composer.contacts
         WHERE organization_id = $1 AND contact_number = $2",
        organization_id,
        contact_number
    )
    .fetch_optional(conn)
    .await
}

/// Forgets `contact_number`'s registration; whether there was one.
pub async fn delete(
    conn: &mut PgConnection,
    organization_id: &str,
    contact_number: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "DELETE FROM composer.contacts WHERE organization_id = $1 AND contact_number = $2",
        organization_id,
        contact_number
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}
