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
    /// When a scheduled message is due.
    pub send_at: Option<DateTime<Utc>>,
    /// Inbound: marked done in the inbox.
    pub done: bool,
    /// MMS attachments.
    pub media_count: i32,
}

/// An attachment row.
#[derive(Debug, Clone)]
pub struct MediaRow {
    /// Unguessable id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: String,
    /// Its message.
    pub message_id: Uuid,
    /// Order within the message.
    pub position: i32,
    /// File name.
    pub file_name: String,
    /// Canonical type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Content (none when a download failed).
    pub data: Option<Vec<u8>>,
    /// stored or failed.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
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
    /// Free text for operators.
    pub detail: Option<String>,
}

/// A number of the organization that is not released, by E.164.
pub async fn find_number(
    pool: &PgPool,
    organization_id: &str,
    number: &str,
) -> Result<Option<NumberRow>, sqlx::Error> {
    number_where(pool, organization_id, None, Some(number)).await
}

/// A number of the organization that is not released, by id.
pub async fn find_number_by_id(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
) -> Result<Option<NumberRow>, sqlx::Error> {
    number_where(pool, organization_id, Some(id), None).await
}

#[tracing::instrument(skip(pool))]
async fn number_where(
    pool: &PgPool,
    organization_id: &str,
    id: Option<Uuid>,
    number: Option<&str>,
) -> Result<Option<NumberRow>, sqlx::Error> {
    sqlx::query_as!(
        NumberRow,
        "SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                voice_capable, kind, owner_user_id, owner_group_id, created_at
         FROM composer.numbers
         WHERE organization_id = $1 AND released_at IS NULL
           AND ($2::uuid IS NULL OR id = $2) AND ($3::text IS NULL OR number = $3)",
        organization_id,
        id,
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

/// What a new message stores besides its row.
#[derive(Debug, Default)]
pub struct NewMessage<'a> {
    /// The caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// The recipient's region, for usage.
    pub to_region: &'a str,
    /// The template it was rendered from.
    pub template_id: Option<Uuid>,
    /// Attachments, stored in the same transaction.
    pub media: &'a [MediaRow],
}

/// Inserts a message and its first history entry in one transaction; the caller maps the
/// `messages_idempotency_key` violation.
#[tracing::instrument(skip_all, fields(message_id = %m.id))]
pub async fn insert_message(
    pool: &PgPool,
    m: &MessageRow,
    extra: &NewMessage<'_>,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, lead_id, contact_id, idempotency_key,
             created_at, updated_at, to_region, template_id, send_at, schedule_published,
             media_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17,
                 $18, $19, $20)",
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
        extra.idempotency_key,
        m.created_at,
        extra.to_region,
        extra.template_id,
        m.send_at,
        m.send_at.is_none(),
        m.media_count
    )
    .execute(&mut *tx)
    .await?;
    for media in extra.media {
        insert_media(&mut tx, media).await?;
    }
    insert_history(
        &mut tx,
        m.id,
        &m.status,
        None,
        None,
        None,
        m.created_at,
        event_id,
    )
    .await?;
    tx.commit().await
}

/// Inserts several messages (without attachments) and their first history entries in one
/// transaction: all or none.
pub async fn insert_messages(
    pool: &PgPool,
    sends: &[&crate::writer::NewSend],
) -> Result<(), sqlx::Error> {
    let m = |f: fn(&MessageRow) -> String| -> Vec<String> {
        sends.iter().map(|s| f(&s.message)).collect()
    };
    let ids: Vec<Uuid> = sends.iter().map(|s| s.message.id).collect();
    let orgs = m(|r| r.organization_id.clone());
    let users = m(|r| r.user_id.clone());
    let directions = m(|r| r.direction.clone());
    let froms = m(|r| r.from_number.clone());
    let tos = m(|r| r.to_number.clone());
    let bodies = m(|r| r.body.clone());
    let statuses = m(|r| r.status.clone());
    let encodings = m(|r| r.encoding.clone());
    let segments: Vec<i32> = sends.iter().map(|s| s.message.segments).collect();
    let characters: Vec<i32> = sends.iter().map(|s| s.message.characters).collect();
    let leads: Vec<Option<String>> = sends.iter().map(|s| s.message.lead_id.clone()).collect();
    let contacts: Vec<Option<String>> =
        sends.iter().map(|s| s.message.contact_id.clone()).collect();
    let keys: Vec<Option<String>> = sends.iter().map(|s| s.idempotency_key.clone()).collect();
    let created: Vec<DateTime<Utc>> = sends.iter().map(|s| s.message.created_at).collect();
    let regions: Vec<String> = sends.iter().map(|s| s.to_region.clone()).collect();
    let templates: Vec<Option<Uuid>> = sends.iter().map(|s| s.template_id).collect();
    let send_at: Vec<Option<DateTime<Utc>>> = sends.iter().map(|s| s.message.send_at).collect();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, lead_id, contact_id, idempotency_key,
             created_at, updated_at, to_region, template_id, send_at, schedule_published,
             media_count)
         SELECT id, org, usr, dir, from_number, to_number, body, status, encoding, segments,
                characters, lead, contact, idem, created, created, region, template, send_at,
                send_at IS NULL, 0
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::int4[], $11::int4[], $12::text[],
                     $13::text[], $14::text[], $15::timestamptz[], $16::text[], $17::uuid[],
                     $18::timestamptz[])
              AS u(id, org, usr, dir, from_number, to_number, body, status, encoding, segments,
                   characters, lead, contact, idem, created, region, template, send_at)",
        &ids,
        &orgs,
        &users,
        &directions,
        &froms,
        &tos,
        &bodies,
        &statuses,
        &encodings,
        &segments,
        &characters,
        &leads as &[Option<String>],
        &contacts as &[Option<String>],
        &keys as &[Option<String>],
        &created,
        &regions,
        &templates as &[Option<Uuid>],
        &send_at as &[Option<DateTime<Utc>>]
    )
    .execute(&mut *tx)
    .await?;
    let history: Vec<NewHistory> = sends
        .iter()
        .map(|s| NewHistory {
            message_id: s.message.id,
            entry: HistoryRow {
                status: s.message.status.clone(),
                reason: None,
                carrier_error_code: None,
                occurred_at: s.message.created_at,
                detail: None,
            },
            event_id: s.event_id.clone(),
        })
        .collect();
    insert_histories(&mut tx, &history).await?;
    tx.commit().await
}

/// Appends a history entry (once per event).
#[allow(clippy::too_many_arguments)]
pub async fn insert_history(
    conn: &mut PgConnection,
    message_id: Uuid,
    status: &str,
    reason: Option<&str>,
    carrier_error_code: Option<i32>,
    detail: Option<&str>,
    occurred_at: DateTime<Utc>,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.message_status_history
            (message_id, status, reason, carrier_error_code, detail, occurred_at, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (message_id, event_id) DO NOTHING",
        message_id,
        status,
        reason,
        carrier_error_code,
        detail,
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
                lead_id, contact_id, created_at, updated_at, send_at, done, media_count
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
                lead_id, contact_id, created_at, updated_at, send_at, done, media_count
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
        "SELECT status, reason, carrier_error_code, occurred_at, detail
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
    /// Only `failed` and `undelivered` messages.
    pub errors_only: bool,
    /// Only messages to or from this number.
    pub contact_number: Option<&'a str>,
    /// Only this direction (`outbound` / `inbound`).
    pub direction: Option<&'a str>,
    /// Only this lead's messages.
    pub lead_id: Option<&'a str>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
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
                lead_id, contact_id, created_at, updated_at, send_at, done, media_count
         FROM composer.messages
         WHERE organization_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR (direction = 'outbound' AND to_number = $3)
                                 OR (direction = 'inbound' AND from_number = $3))
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
           AND (NOT $7 OR status IN ('failed', 'undelivered'))
           AND ($8::text IS NULL OR direction = $8)
           AND ($9::text IS NULL OR lead_id = $9)
           AND ($10::timestamptz IS NULL OR created_at >= $10)
           AND ($11::timestamptz IS NULL OR created_at < $11)
         ORDER BY created_at DESC, id DESC
         LIMIT $6",
        organization_id,
        filter.status,
        filter.contact_number,
        before_at,
        before_id,
        limit,
        filter.errors_only,
        filter.direction,
        filter.lead_id,
        filter.created_after,
        filter.created_before
    )
    .fetch_all(pool)
    .await
}

/// Locks the messages `ids` (in id order, so concurrent batches cannot deadlock); returns
/// (id, organization, status) of those that exist.
pub async fn lock_statuses(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id, organization_id, status FROM composer.messages
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.organization_id, r.status))
        .collect())
}

/// What a batch of status events changes on one message.
#[derive(Debug, Clone, Default)]
pub struct StatusUpdate {
    /// The new status, when one advanced it.
    pub status: Option<String>,
    /// The latest reason given.
    pub reason: Option<String>,
    /// The latest carrier error code given.
    pub carrier_error_code: Option<i32>,
    /// A carrier sid from an advancing event (replaces the stored one).
    pub carrier_sid: Option<String>,
    /// A carrier sid from a stale event (kept only when none is stored).
    pub carrier_sid_if_none: Option<String>,
}

/// Applies `updates` (one per message) in one statement.
pub async fn set_statuses(
    conn: &mut PgConnection,
    updates: &[(Uuid, StatusUpdate)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = updates.iter().map(|(id, _)| *id).collect();
    let statuses: Vec<Option<String>> = updates.iter().map(|(_, u)| u.status.clone()).collect();
    let reasons: Vec<Option<String>> = updates.iter().map(|(_, u)| u.reason.clone()).collect();
    let codes: Vec<Option<i32>> = updates.iter().map(|(_, u)| u.carrier_error_code).collect();
    let sids: Vec<Option<String>> = updates.iter().map(|(_, u)| u.carrier_sid.clone()).collect();
    let fallback_sids: Vec<Option<String>> = updates
        .iter()
        .map(|(_, u)| u.carrier_sid_if_none.clone())
        .collect();
    sqlx::query!(
        "UPDATE composer.messages m
         SET status = COALESCE(u.status, m.status),
             reason = COALESCE(u.reason, m.reason),
             carrier_error_code = COALESCE(u.code, m.carrier_error_code),
             carrier_sid = COALESCE(u.sid, m.carrier_sid, u.fallback_sid),
             updated_at = CASE WHEN u.status IS NULL THEN m.updated_at ELSE now() END
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[])
              AS u(id, status, reason, code, sid, fallback_sid)
         WHERE m.id = ANY($1) AND m.id = u.id",
        &ids,
        &statuses as &[Option<String>],
        &reasons as &[Option<String>],
        &codes as &[Option<i32>],
        &sids as &[Option<String>],
        &fallback_sids as &[Option<String>]
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// A status history entry to append, for [`insert_histories`].
#[derive(Debug, Clone)]
pub struct NewHistory {
    /// The message.
    pub message_id: Uuid,
    /// The entry.
    pub entry: HistoryRow,
    /// The event that said so (an event is recorded once).
    pub event_id: String,
}

/// Appends history entries in one statement (each event once).
pub async fn insert_histories(
    conn: &mut PgConnection,
    rows: &[NewHistory],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.message_id).collect();
    let statuses: Vec<String> = rows.iter().map(|r| r.entry.status.clone()).collect();
    let reasons: Vec<Option<String>> = rows.iter().map(|r| r.entry.reason.clone()).collect();
    let codes: Vec<Option<i32>> = rows.iter().map(|r| r.entry.carrier_error_code).collect();
    let details: Vec<Option<String>> = rows.iter().map(|r| r.entry.detail.clone()).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.entry.occurred_at).collect();
    let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    sqlx::query!(
        "INSERT INTO composer.message_status_history
            (message_id, status, reason, carrier_error_code, detail, occurred_at, event_id)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[],
                              $6::timestamptz[], $7::text[])
         ON CONFLICT (message_id, event_id) DO NOTHING",
        &ids,
        &statuses,
        &reasons as &[Option<String>],
        &codes as &[Option<i32>],
        &details as &[Option<String>],
        &at,
        &event_ids
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Records usage for messages handed to the carrier (once per message); returns the
/// encoding and segments of each newly billed one.
pub async fn record_usages(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    let rows = sqlx::query!(
        "INSERT INTO composer.usage (message_id, organization_id, month, country, kind, encoding, segments)
         SELECT id, organization_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
                to_region, CASE WHEN media_count > 0 THEN 'mms' ELSE 'sms' END, encoding, segments
         FROM composer.messages WHERE id = ANY($1) AND direction = 'outbound'
         ON CONFLICT (message_id) DO NOTHING
         RETURNING encoding, segments",
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.encoding, r.segments)).collect())
}

/// Messages whose event may not be on the bus, last touched before `older_than`, to publish
/// again: still `accepted`, or `scheduled` without the schedule's publish confirmed. Their
/// `updated_at` is bumped so the next sweep waits again.
#[tracing::instrument(skip(pool))]
pub async fn claim_unpublished(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        "UPDATE composer.messages SET updated_at = now()
         WHERE id IN (SELECT id FROM composer.messages
                      WHERE (status = 'accepted'
                             OR (status = 'scheduled' AND NOT schedule_published))
                        AND updated_at < $1
                      ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, organization_id, user_id, direction, from_number, to_number, body, status,
                   reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                   lead_id, contact_id, created_at, updated_at, send_at, done, media_count",
        older_than,
        limit
    )
    .fetch_all(pool)
    .await
}

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

/// Creates a group; the caller maps the `groups_name_key` violation.
#[tracing::instrument(skip(pool))]
pub async fn insert_group(
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
pub async fn groups(
    pool: &PgPool,
    organization_id: &str,
    only: Option<Uuid>,
) -> Result<Vec<GroupRow>, sqlx::Error> {
    sqlx::query_as!(
        GroupRow,
        "SELECT g.id, g.name,
                COALESCE(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL),
                         '{}') AS \"members!\"
         FROM composer.groups g
         LEFT JOIN composer.group_members m
           ON m.organization_id = g.organization_id AND m.group_id = g.id::text
         WHERE g.organization_id = $1 AND ($2::uuid IS NULL OR g.id = $2)
         GROUP BY g.id, g.name, g.created_at
         ORDER BY g.created_at, g.id",
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

/// Releases a number; returns whether it was held.
#[tracing::instrument(skip(pool))]
pub async fn release_number(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE composer.numbers SET released_at = now()
         WHERE organization_id = $1 AND id = $2 AND released_at IS NULL",
        organization_id,
        id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A template row.
#[derive(Debug, Clone)]
pub struct TemplateRow {
    /// Id.
    pub id: Uuid,
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
pub async fn insert_template(
    pool: &PgPool,
    organization_id: &str,
    t: &TemplateRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.templates
            (id, organization_id, owner_user_id, name, body, shared, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        t.id,
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
pub async fn visible_template(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
    id: Uuid,
) -> Result<Option<TemplateRow>, sqlx::Error> {
    sqlx::query_as!(
        TemplateRow,
        "SELECT id, owner_user_id, name, body, shared, created_at, updated_at
         FROM composer.templates
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL
           AND (shared OR owner_user_id = $3)",
        organization_id,
        id,
        user_id
    )
    .fetch_optional(pool)
    .await
}

/// The templates the user may see, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn visible_templates(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
) -> Result<Vec<TemplateRow>, sqlx::Error> {
    sqlx::query_as!(
        TemplateRow,
        "SELECT id, owner_user_id, name, body, shared, created_at, updated_at
         FROM composer.templates
         WHERE organization_id = $1 AND deleted_at IS NULL AND (shared OR owner_user_id = $2)
         ORDER BY created_at, id",
        organization_id,
        user_id
    )
    .fetch_all(pool)
    .await
}

/// Saves a template's new name, body and visibility.
#[tracing::instrument(skip(pool, t), fields(template_id = %t.id))]
pub async fn update_template(
    pool: &PgPool,
    organization_id: &str,
    t: &TemplateRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.templates SET name = $3, body = $4, shared = $5, updated_at = $6
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        organization_id,
        t.id,
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
pub async fn delete_template(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.templates SET deleted_at = now()
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
        organization_id,
        id
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// A usage total.
#[derive(Debug, Clone)]
pub struct UsageRow {
    /// First day of the month.
    pub month: chrono::NaiveDate,
    /// Recipient region.
    pub country: String,
    /// `sms` or `mms`.
    pub kind: String,
    /// Encoding.
    pub encoding: String,
    /// Messages.
    pub messages: i64,
    /// Segments.
    pub segments: i64,
}

/// Usage totals by month, country, kind and encoding.
#[tracing::instrument(skip(pool))]
pub async fn usage(
    pool: &PgPool,
    organization_id: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    sqlx::query_as!(
        UsageRow,
        "SELECT month, country, kind, encoding, count(*) AS \"messages!\",
                COALESCE(sum(segments), 0)::bigint AS \"segments!\"
         FROM composer.usage
         WHERE organization_id = $1 AND month BETWEEN $2 AND $3
         GROUP BY month, country, kind, encoding
         ORDER BY month, country, kind, encoding",
        organization_id,
        from,
        to
    )
    .fetch_all(pool)
    .await
}

/// A lead with errored messages.
#[derive(Debug, Clone)]
pub struct ErroredLeadRow {
    /// Lead.
    pub lead_id: String,
    /// Messages in an error state.
    pub errored: i64,
    /// The latest one's time.
    pub last_error_at: DateTime<Utc>,
    /// The latest one's reason.
    pub last_reason: Option<String>,
}

/// Leads with at least one errored message, most recent error first; keyset by
/// (last_error_at, lead_id).
#[tracing::instrument(skip(pool))]
pub async fn errored_leads(
    pool: &PgPool,
    organization_id: &str,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<ErroredLeadRow>, sqlx::Error> {
    let (before_at, before_lead) = before.unzip();
    sqlx::query_as!(
        ErroredLeadRow,
        "SELECT lead_id AS \"lead_id!\", count(*) AS \"errored!\",
                max(created_at) AS \"last_error_at!\",
                (array_agg(reason ORDER BY created_at DESC))[1] AS last_reason
         FROM composer.messages
         WHERE organization_id = $1 AND lead_id IS NOT NULL
           AND status IN ('failed', 'undelivered')
         GROUP BY lead_id
         HAVING $2::timestamptz IS NULL OR (max(created_at), lead_id) < ($2, $3::text)
         ORDER BY max(created_at) DESC, lead_id DESC
         LIMIT $4",
        organization_id,
        before_at,
        before_lead,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Marks a scheduled message as stored on the bus.
pub async fn mark_schedule_published(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.messages SET schedule_published = true WHERE id = $1",
        id
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Moves a scheduled message's due time.
pub async fn set_send_at(
    pool: &PgPool,
    id: Uuid,
    send_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.messages SET send_at = $2, updated_at = now() WHERE id = $1",
        id,
        send_at
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Stores an inbound message with its `received` history entry, once per carrier id; returns
/// whether it was new.
#[tracing::instrument(skip_all, fields(message_id = %m.id))]
pub async fn insert_inbound(
    pool: &PgPool,
    m: &MessageRow,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, carrier_sid, created_at, updated_at)
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, 'received', $7, $8, $9, $10, $11, $11)
         ON CONFLICT (organization_id, carrier_sid) WHERE direction = 'inbound' DO NOTHING",
        m.id,
        m.organization_id,
        m.user_id,
        m.from_number,
        m.to_number,
        m.body,
        m.encoding,
        m.segments,
        m.characters,
        m.carrier_sid,
        m.created_at
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        insert_history(
            &mut tx,
            m.id,
            "received",
            None,
            None,
            None,
            m.created_at,
            event_id,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The organization holding `number` now, if any.
#[tracing::instrument(skip(pool))]
pub async fn number_holder(pool: &PgPool, number: &str) -> Result<Option<NumberRow>, sqlx::Error> {
    sqlx::query_as!(
        NumberRow,
        "SELECT id, organization_id, number, region, number_type, sms_capable, mms_capable,
                voice_capable, kind, owner_user_id, owner_group_id, created_at
         FROM composer.numbers WHERE number = $1 AND released_at IS NULL",
        number
    )
    .fetch_optional(pool)
    .await
}

/// The users whose inbox shows messages to `number`: its owner, or its group's members.
#[tracing::instrument(skip(pool))]
pub async fn inbox_users(pool: &PgPool, n: &NumberRow) -> Result<Vec<String>, sqlx::Error> {
    if let Some(user) = &n.owner_user_id {
        return Ok(vec![user.clone()]);
    }
    sqlx::query_scalar!(
        "SELECT user_id FROM composer.group_members
         WHERE organization_id = $1 AND group_id = $2 ORDER BY user_id",
        n.organization_id,
        n.owner_group_id
    )
    .fetch_all(pool)
    .await
}

/// Both directions between one of our numbers and a contact, oldest first, after a cursor.
#[tracing::instrument(skip(pool))]
pub async fn conversation(
    pool: &PgPool,
    organization_id: &str,
    ours: &str,
    contact: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as!(
        MessageRow,
        "SELECT id, organization_id, user_id, direction, from_number, to_number, body, status,
                reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                lead_id, contact_id, created_at, updated_at, send_at, done, media_count
         FROM composer.messages
         WHERE organization_id = $1
           AND least(from_number, to_number) = least($2::text, $3::text)
           AND greatest(from_number, to_number) = greatest($2::text, $3::text)
           AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5::uuid))
         ORDER BY created_at, id
         LIMIT $6",
        organization_id,
        ours,
        contact,
        after_at,
        after_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Inbound messages on the numbers `user_id` owns or shares through a group, newest first.
#[tracing::instrument(skip(pool))]
pub async fn inbox(
    pool: &PgPool,
    organization_id: &str,
    user_id: &str,
    include_done: bool,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (before_at, before_id) = before.unzip();
    sqlx::query_as!(
        MessageRow,
        "SELECT id, organization_id, user_id, direction, from_number, to_number, body, status,
                reason, carrier_error_code, encoding, segments, characters, carrier_sid,
                lead_id, contact_id, created_at, updated_at, send_at, done, media_count
         FROM composer.messages
         WHERE organization_id = $1 AND direction = 'inbound'
           AND to_number IN (
               SELECT n.number FROM composer.numbers n
               WHERE n.organization_id = $1 AND n.released_at IS NULL
                 AND (n.owner_user_id = $2 OR n.owner_group_id IN (
                      SELECT g.group_id FROM composer.group_members g
                      WHERE g.organization_id = $1 AND g.user_id = $2)))
           AND ($3 OR NOT done)
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
         ORDER BY created_at DESC, id DESC
         LIMIT $6",
        organization_id,
        user_id,
        include_done,
        before_at,
        before_id,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Marks an inbound message done or not; returns whether it exists.
#[tracing::instrument(skip(pool))]
pub async fn set_done(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
    done: bool,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "UPDATE composer.messages SET done = $3
         WHERE organization_id = $1 AND id = $2 AND direction = 'inbound'",
        organization_id,
        id,
        done
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Stores one attachment.
pub async fn insert_media(conn: &mut PgConnection, m: &MediaRow) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.media
            (id, organization_id, message_id, position, file_name, content_type, size, data,
             state, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        m.id,
        m.organization_id,
        m.message_id,
        m.position,
        m.file_name,
        m.content_type,
        m.size,
        m.data,
        m.state,
        m.error
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Stores attachments of an existing message and counts them on it.
pub async fn add_media(
    pool: &PgPool,
    message_id: Uuid,
    media: &[MediaRow],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for m in media {
        insert_media(&mut tx, m).await?;
    }
    sqlx::query!(
        "UPDATE composer.messages SET media_count = media_count + $2 WHERE id = $1",
        message_id,
        i32::try_from(media.len()).unwrap_or(i32::MAX)
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Attachments of some messages, without their bytes, in order.
pub async fn media_of(pool: &PgPool, message_ids: &[Uuid]) -> Result<Vec<MediaRow>, sqlx::Error> {
    sqlx::query_as!(
        MediaRow,
        "SELECT id, organization_id, message_id, position, file_name, content_type, size,
                NULL::bytea AS data, state, error
         FROM composer.media WHERE message_id = ANY($1) ORDER BY message_id, position",
        message_ids
    )
    .fetch_all(pool)
    .await
}

/// One attachment with its bytes; scoped to the organization unless `organization_id` is
/// `None` (the signed carrier URL authorizes by itself).
pub async fn media(
    pool: &PgPool,
    organization_id: Option<&str>,
    id: Uuid,
) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as!(
        MediaRow,
        "SELECT id, organization_id, message_id, position, file_name, content_type, size, data,
                state, error
         FROM composer.media WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
        id,
        organization_id
    )
    .fetch_optional(pool)
    .await
}
