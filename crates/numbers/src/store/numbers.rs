//! The organization's numbers: held (not released) rows, looked up by number or id.

use chrono::{DateTime, Utc};
use sms_core::{NumberKind, NumberType, PhoneNumber};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A number row.
#[derive(Debug, Clone)]
pub struct NumberRow {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: String,
    /// The number.
    pub number: PhoneNumber,
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
    /// How it came to us.
    pub source: NumberSource,
    /// The carrier's id (rented and imported numbers).
    pub carrier_sid: Option<String>,
    /// The carrier connection its messages go through; `None`: the dispatchers' default.
    pub carrier_connection: Option<String>,
}

/// How a number came to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberSource {
    /// Recorded as given (`AddNumber`): the carrier was not asked.
    Recorded,
    /// Rented from the carrier.
    Rented,
    /// Held at the carrier already, and taken on.
    Imported,
}

impl NumberSource {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberSource::Recorded => "recorded",
            NumberSource::Rented => "rented",
            NumberSource::Imported => "imported",
        }
    }

    fn parse(s: &str) -> NumberSource {
        match s {
            "rented" => NumberSource::Rented,
            "imported" => NumberSource::Imported,
            _ => NumberSource::Recorded,
        }
    }
}

/// A row as the database returns it (the number type is text there).
struct Raw {
    id: Uuid,
    organization_id: String,
    number: PhoneNumber,
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
    source: String,
    carrier_sid: Option<String>,
    carrier_connection: Option<String>,
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
            source: NumberSource::parse(&r.source),
            carrier_sid: r.carrier_sid,
            carrier_connection: r.carrier_connection,
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
        r#"SELECT id, organization_id, number AS "number: PhoneNumber", region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst, source, carrier_sid, carrier_connection
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
        r#"SELECT id, organization_id, number AS "number: PhoneNumber", region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst, source, carrier_sid, carrier_connection
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
        r#"SELECT n.id, n.organization_id, n.number AS "number: PhoneNumber", n.region, n.number_type, n.sms_capable,
                  n.mms_capable, n.voice_capable, n.kind AS "kind: NumberKind", n.owner_user_id,
                  n.owner_group_id, n.created_at, n.send_rate, n.send_burst, n.source, n.carrier_sid,
                  n.carrier_connection
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
             send_burst, source, carrier_sid, carrier_connection)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        n.id,
        n.organization_id,
        n.number.e164(),
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
        n.send_burst,
        n.source.as_str(),
        n.carrier_sid,
        n.carrier_connection
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
        r#"SELECT id, organization_id, number AS "number: PhoneNumber", region, number_type, sms_capable, mms_capable,
                  voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                  created_at, send_rate, send_burst, source, carrier_sid, carrier_connection
           FROM composer.numbers
           WHERE organization_id = $1 AND released_at IS NULL
           ORDER BY created_at, id"#,
        organization_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(NumberRow::from).collect())
}

/// Releases a number (one the carrier holds for us then waits to be given back to it);
/// returns whether it was held.
#[tracing::instrument(skip(conn))]
pub async fn release(
    conn: &mut PgConnection,
    organization_id: &str,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE composer.numbers
         SET released_at = now(), carrier_release_pending = carrier_sid IS NOT NULL
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
           RETURNING id, organization_id, number AS "number: PhoneNumber", region, number_type, sms_capable, mms_capable,
                     voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                     created_at, send_rate, send_burst, source, carrier_sid, carrier_connection"#,
        organization_id,
        id,
        rate.map(|(r, _)| r),
        rate.map(|(_, b)| b)
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(NumberRow::from))
}

/// Sets which carrier connection a held number's messages go through (`None`: the default);
/// returns the number as it now is, if the organization holds it.
#[tracing::instrument(skip(conn))]
pub async fn set_connection(
    conn: &mut PgConnection,
    organization_id: &str,
    id: Uuid,
    connection: Option<&str>,
) -> Result<Option<NumberRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        Raw,
        r#"UPDATE composer.numbers SET carrier_connection = $3
           WHERE organization_id = $1 AND id = $2 AND released_at IS NULL
           RETURNING id, organization_id, number AS "number: PhoneNumber", region, number_type, sms_capable, mms_capable,
                     voice_capable, kind AS "kind: NumberKind", owner_user_id, owner_group_id,
                     created_at, send_rate, send_burst, source, carrier_sid, carrier_connection"#,
        organization_id,
        id,
        connection
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(NumberRow::from))
}

/// Starts a rent or import of `number` for `organization_id`: false when another
/// organization's is under way (and not stale).
#[tracing::instrument(skip(pool))]
pub async fn reserve(
    pool: &PgPool,
    number: &str,
    organization_id: &str,
    stale_after_secs: f64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO composer.number_rentals (number, organization_id) VALUES ($1, $2)
         ON CONFLICT (number) DO UPDATE SET organization_id = $2, started_at = now()
         WHERE number_rentals.organization_id = $2
            OR number_rentals.started_at < now() - make_interval(secs => $3)",
        number,
        organization_id,
        stale_after_secs
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a rent or import of `number` by `organization_id` (in the caller's transaction when it
/// succeeded, so that the number and the end are one).
#[tracing::instrument(skip(conn))]
pub async fn unreserve(
    conn: &mut PgConnection,
    number: &str,
    organization_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM composer.number_rentals WHERE number = $1 AND organization_id = $2",
        number,
        organization_id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Whether a released `number` still waits to be given back to the carrier.
#[tracing::instrument(skip(pool))]
pub async fn release_pending(pool: &PgPool, number: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM composer.numbers
                          WHERE number = $1 AND carrier_release_pending) AS "pending!""#,
        number
    )
    .fetch_one(pool)
    .await?;
    Ok(row)
}

/// A released number still to be given back to the carrier.
#[derive(Debug, Clone)]
pub struct PendingRelease {
    /// The row.
    pub id: Uuid,
    /// The number.
    pub number: PhoneNumber,
    /// The carrier's id.
    pub carrier_sid: String,
    /// Whether the number is held again meanwhile (added again by someone): then the carrier
    /// keeps it.
    pub held_again: bool,
}

/// Locks up to `limit` released numbers still to be given back (or only `id`), skipping those
/// another replica is giving back; the locks last as long as `conn`'s transaction.
#[tracing::instrument(skip(conn))]
pub async fn lock_pending_releases(
    conn: &mut PgConnection,
    id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PendingRelease>, sqlx::Error> {
    sqlx::query_as!(
        PendingRelease,
        r#"SELECT n.id, n.number AS "number: PhoneNumber", n.carrier_sid AS "carrier_sid!",
                  EXISTS (SELECT 1 FROM composer.numbers h
                          WHERE h.number = n.number AND h.released_at IS NULL) AS "held_again!"
           FROM composer.numbers n
           WHERE n.carrier_release_pending AND n.carrier_sid IS NOT NULL
             AND ($1::uuid IS NULL OR n.id = $1)
           ORDER BY n.released_at
           LIMIT $2
           FOR UPDATE OF n SKIP LOCKED"#,
        id,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The number was given back to the carrier (or is kept, being held again).
#[tracing::instrument(skip(conn))]
pub async fn release_done(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.numbers SET carrier_release_pending = false WHERE id = $1",
        id
    )
    .execute(conn)
    .await
    .map(|_| ())
}
