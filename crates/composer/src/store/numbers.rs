//! The organization's numbers: held (not released) rows, looked up by number or id.

use chrono::{DateTime, Utc};
use sms_core::{NumberKind, NumberType};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A number row.
#[derive(Debug, Clone)]
pub struct NumberRow {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: String,
    /// E.164.
    pub number: String,
    /// Region.
    pub region: String,
    /// Number type, as sms-core names it (stored as its name).
    pub number_type: NumberType,
    /// SMS capable.
    pub sms_capable: bool,
    /// MMS capable.
    pub mms_capable: bool,
    /// Voice capable.
    pub voice_capable: bool,
    /// Rented (sends) or external (never sends).
    pub kind: NumberKind,
    /// Owning user.
    pub owner_user_id: Option<String>,
    /// Owning group.
    pub owner_group_id: Option<String>,
    /// Added at.
    pub created_at: DateTime<Utc>,
    /// Its own send rate (segments a second), if it has one.
    pub send_rate: Option<f64>,
    /// Its own burst (segments), if it has one.
    pub send_burst: Option<i32>,
}

/// A row as the database returns it (the number type is text there).
struct Raw {
    id: Uuid,
    organization_id: String,
    number: String,
    region: String,
    number_type: String,
    sms_capable: bool,
    mms_capable: bool,
    voice_capable: bool,
    kind: NumberKind,
    owner_user_id: Option<String>,
    owner_group_id: Option<String>,
    created_at: DateTime<Utc>,
    send_rate: Option<f64>,
    send_burst: Option<i32>,
}

impl From<Raw> for NumberRow {
    fn from(r: Raw) -> Self {
        NumberRow {
            id: r.id,
            organization_id: r.organization_id,
            number: r.number,
            region: r.region,
            // Written from a NumberType; a name this build does not know reads as unknown.
            number_type: r.number_type.parse().unwrap_or(NumberType::Unknown),
            sms_capable: r.sms_capable,
            mms_capable: r.mms_capable,
            voice_capable: r.voice_capable,
            kind: r.kind,
            owner_user_id: r.owner_user_id,
            owner_group_id: r.owner_group_id,
            created_at: r.created_at,
            send_rate: r.send_rate,
            send_burst: r.send_burst,
        }
    }
}

/// A number of the organization that is not released, by E.164.
pub async fn find(
    pool: &PgPool,
    organization_id: &str,
    number: &str,
) -> Result<Option<NumberRow>, sqlx::Error> {
    find_where(pool, organization_id, None, Some(number)).await
}

/// A number of the organization that is not released, by id.
pub async fn find_by_id(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
) -> Result<Option<NumberRow>, sqlx::Error> {
    find_where(pool, organization_id, Some(id), None).await
}

#[tracing::instrument(skip(pool))]
async fn find_where(
    pool: &PgPool,
    organization_id: &str,
    id: Option<Uuid>,
    number: Option<&str>,
) -> Result<Option<NumberRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        Raw,
        r#"SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst
           FROM composer.numbers
           WHERE organization_id = $1 AND released_at IS NULL
             AND ($2::uuid IS NULL OR id = $2) AND ($3::text IS NULL OR number = $3)"#,
        organization_id,
        id,
        number
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(NumberRow::from))
}

/// The organization holding `number` now, if any.
#[tracing::instrument(skip(pool))]
pub async fn holder(pool: &PgPool, number: &str) -> Result<Option<NumberRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        Raw,
        r#"SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst
           FROM composer.numbers WHERE number = $1 AND released_at IS NULL"#,
        number
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(NumberRow::from))
}

/// Internal, SMS-capable numbers the user may send from (own or through a group), oldest
/// first, with the one last used towards `contact` first of all (the sticky sender).
#[tracing::instrument(skip(pool))]
pub async fn usable(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
    contact: &str,
) -> Result<Vec<NumberRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Raw,
        r#"SELECT n.id, n.organization_id, n.number, n.region, n.number_type, n.sms_capable,
                  n.mms_capable, n.voice_capable, n.kind AS "kind: NumberKind", n.owner_user_id,
                  n.owner_group_id, n.created_at, n.send_rate, n.send_burst
           FROM composer.numbers n
           LEFT JOIN LATERAL (
               SELECT max(m.created_at) AS last_used FROM composer.messages m
               WHERE m.organization_id = n.organization_id AND m.from_number = n.number
                 AND m.to_number = $3 AND m.direction = 'outbound'
           ) sticky ON true
           WHERE n.organization_id = $1 AND n.released_at IS NULL AND n.kind = 'internal'
             AND n.sms_capable
             AND (n.owner_user_id = $2 OR n.owner_group_id IN (
                  SELECT g.group_id FROM composer.group_members g
                  WHERE g.organization_id = $1 AND g.user_id = $2))
           ORDER BY sticky.last_used DESC NULLS LAST, n.created_at, n.id"#,
        organization_id,
        user_id,
        contact
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(NumberRow::from).collect())
}

/// Inserts a number; the caller maps the `numbers_number_key` violation.
#[tracing::instrument(skip(conn, n), fields(number = %n.number))]
pub async fn insert(conn: &mut PgConnection, n: &NumberRow) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.numbers
            (id, organization_id, number, region, number_type, sms_capable, mms_capable,
             voice_capable, kind, owner_user_id, owner_group_id, created_at, send_rate,
             send_burst)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        n.id,
        n.organization_id,
        n.number,
        n.region,
        n.number_type.as_str(),
        n.sms_capable,
        n.mms_capable,
        n.voice_capable,
        n.kind as NumberKind,
        n.owner_user_id,
        n.owner_group_id,
        n.created_at,
        n.send_rate,
        n.send_burst
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// The organization's numbers that are not released.
#[tracing::instrument(skip(pool))]
pub async fn list(pool: &PgPool, organization_id: &str) -> Result<Vec<NumberRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Raw,
        r#"SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst
           FROM composer.numbers
           WHERE organization_id = $1 AND released_at IS NULL
           ORDER BY created_at, id"#,
        organization_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(NumberRow::from).collect())
}

/// Releases a number; returns whether it was held.
#[tracing::instrument(skip(conn))]
pub async fn release(
    conn: &mut PgConnection,
    organization_id: &str,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE composer.numbers SET released_at = now()
         WHERE organization_id = $1 AND id = $2 AND released_at IS NULL",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a held number's own send rate and burst (`None`: back to the default for its kind);
/// returns the number as it now is, if the organization holds it.
#[tracing::instrument(skip(conn))]
pub async fn set_rate(
    conn: &mut PgConnection,
    organization_id: &str,
    id: Uuid,
    rate: Option<(f64, i32)>,
) -> Result<Option<NumberRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        Raw,
        r#"UPDATE composer.numbers SET send_rate = $3, send_burst = $4
           WHERE organization_id = $1 AND id = $2 AND released_at IS NULL
           RETURNING id, organization_id, number, region, number_type, sms_capable, mms_capable,
                     voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                     created_at, send_rate, send_burst"#,
        organization_id,
        id,
        rate.map(|(r, _)| r),
        rate.map(|(_, b)| b)
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(NumberRow::from))
}
