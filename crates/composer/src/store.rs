//! The composer's SQL, in small functions over its own schema.

use chrono::{DateTime, Utc};
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
    /// Number type.
    pub number_type: String,
    /// SMS capable.
    pub sms_capable: bool,
    /// MMS capable.
    pub mms_capable: bool,
    /// Voice capable.
    pub voice_capable: bool,
    /// `internal` or `external`.
    pub kind: String,
    /// Owning user.
    pub owner_user_id: Option<String>,
    /// Owning group.
    pub owner_group_id: Option<String>,
    /// Added at.
    pub created_at: DateTime<Utc>,
}

/// A message row.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: String,
    /// Sending user (outbound).
    pub user_id: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// Sender.
    pub from_number: String,
    /// Recipient.
    pub to_number: String,
    /// Body.
    pub body: String,
    /// Status name.
    pub status: String,
    /// Failure reason.
    pub reason: Option<String>,
    /// Carrier error code.
    pub carrier_error_code: Option<i32>,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    /// Segments.
    pub segments: i32,
    /// Units counted.
    pub characters: i32,
    /// Carrier id.
    pub carrier_sid: Option<String>,
    /// Lead.
    pub lead_id: Option<String>,
    /// Contact.
    pub contact_id: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Updated at.
    pub updated_at: DateTime<Utc>,
}

/// A status history entry.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Status name.
    pub status: String,
    /// Reason.
    pub reason: Option<String>,
    /// Carrier code.
    pub carrier_error_code: Option<i32>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

/// A number of the organization that is not released.
#[tracing::instrument(skip(pool))]
pub async fn find_number(
    pool: &PgPool,
    organization_id: &str,
    number: &str,
) -> Result<Option<NumberRow>, sqlx::Error> {
    sqlx::query_as!(
        NumberRow,
        "SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                voice_capable, kind, owner_user_id, owner_group_id, created_at
         FROM composer.numbers
         WHERE organization_id = $1 AND number = $2 AND released_at IS NULL",
        organization_id,
        number
    )
    .fetch_optional(pool)
    .await
}

/// Whether `user_id` belongs to `group_id`.
#[tracing::instrument(skip(pool))]
pub async fn is_member(
    pool: &PgPool,
    organization_id: &str,
    group_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let found = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM composer.group_members
                        WHERE organization_id = $1 AND group_id = $2 AND user_id = $3) AS \"found!\"",
        organization_id,
        group_id,
        user_id
    )
    .fetch_one(pool)
    .await?;
    Ok(found)
}

/// Internal, SMS-capable numbers the user may send from (own or through a group), oldest
/// first, with the one last used towards `contact` first of all (the sticky sender).
#[tracing::instrument(skip(pool))]
pub async fn usable_numbers(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
    contact: &str,
) -> Result<Vec<NumberRow>, sqlx::Error> {
    sqlx::query_as!(
        NumberRow,
        "SELECT n.id, n.organization_id, n.number, n.region, n.number_type, n.sms_capable,
                n.mms_capable, n.voice_capable, n.kind, n.owner_user_id, n.owner_group_id,
                n.created_at
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
         ORDER BY sticky.last_used DESC NULLS LAST, n.created_at, n.id",
        organization_id,
        user_id,
        contact
    )
    .fetch_all(pool)
    .await
}

/// Inserts a number; the caller maps the `numbers_number_key` violation.
#[tracing::instrument(skip(pool, n), fields(number = %n.number))]
pub async fn insert_number(pool: &PgPool, n: &NumberRow) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.numbers
            (id, organization_id, number, region, number_type, sms_capable, mms_capable,
             voice_capable, kind, owner_user_id, owner_group_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        n.id,
        n.organization_id,
        n.number,
        n.region,
        n.number_type,
        n.sms_capable,
        n.mms_capable,
        n.voice_capable,
        n.kind,
        n.owner_user_id,
        n.owner_group_id,
        n.created_at
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// The organization's numbers that are not released.
#[tracing::instrument(skip(pool))]
pub async fn list_numbers(
    pool: &PgPool,
    organization_id: &str,
) -> Result<Vec<NumberRow>, sqlx::Error> {
    sqlx::query_as!(
        NumberRow,
        "SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                voice_capable, kind, owner_user_id, owner_group_id, created_at
         FROM composer.numbers
         WHERE organization_id = $1 AND released_at IS NULL
         ORDER BY created_at, id",
        organization_id
    )
    .fetch_all(pool)
    .await
}

/// Inserts a message and its first history entry in one transaction; the caller maps the
/// `messages_idempotency_key` violation.
#[tracing::instrument(skip_all, fields(message_id = %m.id))]
pub async fn insert_message(
    pool: &PgPool,
    m: &MessageRow,
    idempotency_key: Option<&str>,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, lead_id, contact_id, idempotency_key,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        m.id,
        m.organization_id,
        m.user_id,
        m.direction,
        m.from_number,
        m.to_number,
        m.body,
        m.status,
        m.encoding,
        m.segments,
        m.characters,
        m.lead_id,
        m.contact_id,
        idempotency_key,
        m.created_at
    )
    .execute(&mut *tx)
    .await?;
    insert_history(&mut tx, m.id, &m.status, None, None, m.created_at, event_id).await?;
    tx.commit().await
}

/// Appends a history entry (once per event).
pub async fn insert_history(
    conn: &mut PgConnection,
    message_id: Uuid,
    status: &str,
    reason: Option<&str>,
    carrier_error_code: Option<i32>,
    occurred_at: DateTime<Utc>,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.message_status_history
            (message_id, status, reason, carrier_error_code, occurred_at, event_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (message_id, event_id) DO NOTHING",
        message_id,
        status,
        reason,
        carrier_error_code,
        occurred_at,
        event_id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// A message of the organization.
#[tracing::instrument(skip(pool))]
pub async fn get_message(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        "SELECT id, organization_id, user_id, direction, from_number, to_number, body, status,
                reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                lead_id, contact_id, created_at, updated_at
         FROM composer.messages WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(pool)
    .await
}

/// The message created with an idempotency key.
#[tracing::instrument(skip(pool))]
pub async fn find_by_idempotency_key(
    pool: &PgPool,
    organization_id: &str,
    key: &str,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        "SELECT id, organization_id, user_id, direction, from_number, to_number, body, status,
                reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                lead_id, contact_id, created_at, updated_at
         FROM composer.messages WHERE organization_id = $1 AND idempotency_key = $2",
        organization_id,
        key
    )
    .fetch_optional(pool)
    .await
}

/// The status history of a message, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn history(pool: &PgPool, id: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as!(
        HistoryRow,
        "SELECT status, reason, carrier_error_code, occurred_at
         FROM composer.message_status_history WHERE message_id = $1 ORDER BY seq",
        id
    )
    .fetch_all(pool)
    .await
}

/// Filters for [`list_messages`].
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    /// Only this status.
    pub status: Option<&'a str>,
    /// Only messages to or from this number.
    pub contact_number: Option<&'a str>,
    /// Keyset cursor: strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// The organization's messages, newest first.
#[tracing::instrument(skip(pool))]
pub async fn list_messages(
    pool: &PgPool,
    organization_id: &str,
    filter: &ListFilter<'_>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (before_at, before_id) = filter.before.unzip();
    sqlx::query_as!(
        MessageRow,
        "SELECT id, organization_id, user_id, direction, from_number, to_number, body, status,
                reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                lead_id, contact_id, created_at, updated_at
         FROM composer.messages
         WHERE organization_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR (direction = 'outbound' AND to_number = $3)
                                 OR (direction = 'inbound' AND from_number = $3))
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
         ORDER BY created_at DESC, id DESC
         LIMIT $6",
        organization_id,
        filter.status,
        filter.contact_number,
        before_at,
        before_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// The current status of a message, locked for update.
pub async fn lock_status(
    conn: &mut PgConnection,
    organization_id: &str,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT status FROM composer.messages
         WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Moves a message to a new status (reason and carrier facts kept when not given).
#[allow(clippy::too_many_arguments)]
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    reason: Option<&str>,
    carrier_error_code: Option<i32>,
    carrier_sid: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.messages
         SET status = $2, reason = COALESCE($3, reason),
             carrier_error_code = COALESCE($4, carrier_error_code),
             carrier_sid = COALESCE($5, carrier_sid), updated_at = now()
         WHERE id = $1",
        id,
        status,
        reason,
        carrier_error_code,
        carrier_sid
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Records the carrier's sid on a message that does not have it yet.
pub async fn set_carrier_sid(
    conn: &mut PgConnection,
    id: Uuid,
    sid: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.messages SET carrier_sid = $2 WHERE id = $1 AND carrier_sid IS NULL",
        id,
        sid
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Messages still `accepted` that were last touched before `older_than`, to re-publish; their
/// `updated_at` is bumped so the next sweep waits again.
#[tracing::instrument(skip(pool))]
pub async fn claim_stale_accepted(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        "UPDATE composer.messages SET updated_at = now()
         WHERE id IN (SELECT id FROM composer.messages
                      WHERE status = 'accepted' AND updated_at < $1
                      ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, organization_id, user_id, direction, from_number, to_number, body, status,
                   reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                   lead_id, contact_id, created_at, updated_at",
        older_than,
        limit
    )
    .fetch_all(pool)
    .await
}
