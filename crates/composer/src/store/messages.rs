//! Messages: accepted outbound ones with their first history entry (one by one or many per
//! statement), reads and lists, and status changes.

use chrono::{DateTime, Utc};
use sms_core::{Address, Direction, Encoding, Failure, MessageId, Status, TemplateId};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::history::{self, HistoryRow, NewHistory};
use super::media::{self, MediaRow};

/// A message row.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Id.
    pub id: MessageId,
    /// Organization.
    pub organization_id: String,
    /// Sending user (outbound).
    pub user_id: String,
    /// Which way it travels.
    pub direction: Direction,
    /// Sender.
    pub from_number: Address,
    /// Recipient.
    pub to_number: Address,
    /// Body.
    pub body: String,
    /// Status.
    pub status: Status,
    /// Why it failed.
    pub reason: Option<Failure>,
    /// Carrier error code.
    pub carrier_error_code: Option<i32>,
    /// Encoding.
    pub encoding: Encoding,
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

/// What a new message stores besides its row.
#[derive(Debug, Default)]
pub struct NewMessage<'a> {
    /// The caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// The fingerprint of the request (stored with the key).
    pub request_hash: Option<&'a [u8]>,
    /// The recipient's region, for usage.
    pub to_region: &'a str,
    /// The template it was rendered from.
    pub template_id: Option<TemplateId>,
    /// Attachments, stored in the same transaction.
    pub media: &'a [MediaRow],
    /// Why it is held, on its first history entry.
    pub note: Option<&'a str>,
}

fn first_entry(m: &MessageRow, event_id: &str, note: Option<&str>) -> NewHistory {
    NewHistory {
        message_id: m.id,
        entry: HistoryRow {
            status: m.status,
            reason: None,
            carrier_error_code: None,
            occurred_at: m.created_at,
            detail: note.map(str::to_owned),
        },
        event_id: event_id.to_owned(),
    }
}

/// Inserts a message, its attachments and its first history entry in the caller's
/// transaction (which adds the message's event to the outbox); the caller maps the
/// `messages_idempotency_key` and `messages_pkey` violations.
#[tracing::instrument(skip_all, fields(message_id = %m.id))]
pub async fn insert(
    tx: &mut PgConnection,
    m: &MessageRow,
    extra: &NewMessage<'_>,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, lead_id, contact_id, idempotency_key, request_hash,
             created_at, updated_at, to_region, template_id, send_at, media_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17,
                 $18, $19, $20)",
        m.id.uuid(),
        m.organization_id,
        m.user_id,
        m.direction as Direction,
        m.from_number.as_str(),
        m.to_number.as_str(),
        m.body,
        m.status as Status,
        m.encoding as Encoding,
        m.segments,
        m.characters,
        m.lead_id,
        m.contact_id,
        extra.idempotency_key,
        extra.request_hash,
        m.created_at,
        extra.to_region,
        extra.template_id.map(TemplateId::uuid),
        m.send_at,
        m.media_count
    )
    .execute(&mut *tx)
    .await?;
    for file in extra.media {
        media::insert(tx, file).await?;
    }
    history::insert(tx, &[first_entry(m, event_id, extra.note)]).await
}

/// A message to store in a batch.
#[derive(Debug, Clone)]
pub struct BatchedMessage<'a> {
    /// The row.
    pub message: &'a MessageRow,
    /// The caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// The fingerprint of the request.
    pub request_hash: Option<&'a [u8]>,
    /// The recipient's region, for usage.
    pub to_region: &'a str,
    /// The template it was rendered from.
    pub template_id: Option<TemplateId>,
    /// The id of the first history entry's event.
    pub event_id: &'a str,
    /// Why it is held, on its first history entry.
    pub note: Option<&'a str>,
}

/// Inserts several messages (without attachments) and their first history entries in the
/// caller's transaction: all or none.
pub async fn insert_many(
    tx: &mut PgConnection,
    sends: &[BatchedMessage<'_>],
) -> Result<(), sqlx::Error> {
    let col = |f: fn(&MessageRow) -> String| -> Vec<String> {
        sends.iter().map(|s| f(s.message)).collect()
    };
    let ids: Vec<Uuid> = sends.iter().map(|s| s.message.id.uuid()).collect();
    let orgs = col(|r| r.organization_id.clone());
    let users = col(|r| r.user_id.clone());
    let directions: Vec<Direction> = sends.iter().map(|s| s.message.direction).collect();
    let froms = col(|r| r.from_number.to_string());
    let tos = col(|r| r.to_number.to_string());
    let bodies = col(|r| r.body.clone());
    let statuses: Vec<Status> = sends.iter().map(|s| s.message.status).collect();
    let encodings: Vec<Encoding> = sends.iter().map(|s| s.message.encoding).collect();
    let segments: Vec<i32> = sends.iter().map(|s| s.message.segments).collect();
    let characters: Vec<i32> = sends.iter().map(|s| s.message.characters).collect();
    let leads: Vec<Option<String>> = sends.iter().map(|s| s.message.lead_id.clone()).collect();
    let contacts: Vec<Option<String>> =
        sends.iter().map(|s| s.message.contact_id.clone()).collect();
    let keys: Vec<Option<String>> = sends
        .iter()
        .map(|s| s.idempotency_key.map(str::to_owned))
        .collect();
    let hashes: Vec<Option<Vec<u8>>> = sends
        .iter()
        .map(|s| s.request_hash.map(<[u8]>::to_vec))
        .collect();
    let created: Vec<DateTime<Utc>> = sends.iter().map(|s| s.message.created_at).collect();
    let regions: Vec<String> = sends.iter().map(|s| s.to_region.to_owned()).collect();
    let templates: Vec<Option<Uuid>> = sends
        .iter()
        .map(|s| s.template_id.map(TemplateId::uuid))
        .collect();
    let send_at: Vec<Option<DateTime<Utc>>> = sends.iter().map(|s| s.message.send_at).collect();
    sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, lead_id, contact_id, idempotency_key, request_hash,
             created_at, updated_at, to_region, template_id, send_at, media_count)
         SELECT id, org, usr, dir, from_number, to_number, body, status, encoding, segments,
                characters, lead, contact, idem, hash, created, created, region, template,
                send_at, 0
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::composer.message_direction[], $5::text[],
                     $6::text[], $7::text[], $8::composer.message_status[], $9::composer.message_encoding[],
                     $10::int4[], $11::int4[], $12::text[], $13::text[], $14::text[],
                     $15::bytea[], $16::timestamptz[], $17::text[], $18::uuid[],
                     $19::timestamptz[])
              AS u(id, org, usr, dir, from_number, to_number, body, status, encoding, segments,
                   characters, lead, contact, idem, hash, created, region, template, send_at)",
        &ids,
        &orgs,
        &users,
        &directions as &[Direction],
        &froms,
        &tos,
        &bodies,
        &statuses as &[Status],
        &encodings as &[Encoding],
        &segments,
        &characters,
        &leads as &[Option<String>],
        &contacts as &[Option<String>],
        &keys as &[Option<String>],
        &hashes as &[Option<Vec<u8>>],
        &created,
        &regions,
        &templates as &[Option<Uuid>],
        &send_at as &[Option<DateTime<Utc>>]
    )
    .execute(&mut *tx)
    .await?;
    let entries: Vec<NewHistory> = sends
        .iter()
        .map(|s| first_entry(s.message, s.event_id, s.note))
        .collect();
    history::insert(tx, &entries).await
}

/// A message of the organization.
#[tracing::instrument(skip(pool))]
pub async fn get(
    pool: &PgPool,
    organization_id: &str,
    id: MessageId,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
           FROM composer.messages WHERE organization_id = $1 AND id = $2"#,
        organization_id,
        id.uuid()
    )
    .fetch_optional(pool)
    .await
}

/// Messages of the organization by id (in no particular order; unknown ids are skipped).
#[tracing::instrument(skip(pool, ids), fields(ids = ids.len()))]
pub async fn by_ids(
    pool: &PgPool,
    organization_id: &str,
    ids: &[MessageId],
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
           FROM composer.messages WHERE organization_id = $1 AND id = ANY($2)"#,
        organization_id,
        &ids
    )
    .fetch_all(pool)
    .await
}

/// A message and the fingerprint of the request that created it (none for messages stored
/// before fingerprints were kept).
pub type Keyed = (MessageRow, Option<Vec<u8>>);

/// The message created with an idempotency key, and the fingerprint of its request.
#[tracing::instrument(skip(pool))]
pub async fn by_idempotency_key(
    pool: &PgPool,
    organization_id: &str,
    key: &str,
) -> Result<Option<Keyed>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count, request_hash
           FROM composer.messages WHERE organization_id = $1 AND idempotency_key = $2"#,
        organization_id,
        key
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        (
            MessageRow {
                id: r.id,
                organization_id: r.organization_id,
                user_id: r.user_id,
                direction: r.direction,
                from_number: r.from_number,
                to_number: r.to_number,
                body: r.body,
                status: r.status,
                reason: r.reason,
                carrier_error_code: r.carrier_error_code,
                encoding: r.encoding,
                segments: r.segments,
                characters: r.characters,
                carrier_sid: r.carrier_sid,
                lead_id: r.lead_id,
                contact_id: r.contact_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
                send_at: r.send_at,
                done: r.done,
                media_count: r.media_count,
            },
            r.request_hash,
        )
    }))
}

/// Filters for [`list`].
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    /// Only this status.
    pub status: Option<Status>,
    /// Only `failed` and `undelivered` messages.
    pub errors_only: bool,
    /// Only messages to or from this number.
    pub contact_number: Option<&'a str>,
    /// Only messages sent from or received on this number of ours.
    pub our_number: Option<&'a str>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Only this lead's messages.
    pub lead_id: Option<&'a str>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Keyset cursor: strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, MessageId)>,
}

/// The organization's messages, newest first.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &PgPool,
    organization_id: &str,
    filter: &ListFilter<'_>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (before_at, before_id) = filter.before.map(|(at, id)| (at, id.uuid())).unzip();
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
           FROM composer.messages
           WHERE organization_id = $1
             AND ($2::composer.message_status IS NULL OR status = $2)
             AND ($3::text IS NULL OR (direction = 'outbound' AND to_number = $3)
                                   OR (direction = 'inbound' AND from_number = $3))
             AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
             AND (NOT $7 OR status IN ('failed', 'undelivered'))
             AND ($8::composer.message_direction IS NULL OR direction = $8)
             AND ($9::text IS NULL OR lead_id = $9)
             AND ($10::timestamptz IS NULL OR created_at >= $10)
             AND ($11::timestamptz IS NULL OR created_at < $11)
             AND ($12::text IS NULL OR (direction = 'outbound' AND from_number = $12)
                                    OR (direction = 'inbound' AND to_number = $12))
           ORDER BY created_at DESC, id DESC
           LIMIT $6"#,
        organization_id,
        filter.status as Option<Status>,
        filter.contact_number,
        before_at,
        before_id,
        limit,
        filter.errors_only,
        filter.direction as Option<Direction>,
        filter.lead_id,
        filter.created_after,
        filter.created_before,
        filter.our_number
    )
    .fetch_all(pool)
    .await
}

/// A message as a status change finds it, locked.
#[derive(Debug, Clone)]
pub struct Current {
    /// Its organization.
    pub organization_id: String,
    /// Its status.
    pub status: Status,
    /// The carrier's sid, once the dispatcher reported it.
    pub carrier_sid: Option<String>,
    /// The carrier account it was sent through, once the dispatcher reported it.
    pub carrier_account: Option<String>,
    /// What the event feed says of it: sender, recipient, user, lead, contact.
    pub about: About,
}

/// Who a message is from and to, and for whom: what the event feed carries with its statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// The sending user.
    pub user_id: String,
    /// The CRM's lead.
    pub lead_id: Option<String>,
    /// The CRM's contact.
    pub contact_id: Option<String>,
}

/// Locks the messages `ids` (in id order, so concurrent batches cannot deadlock); returns those
/// that exist.
pub async fn lock_statuses(
    conn: &mut PgConnection,
    ids: &[MessageId],
) -> Result<Vec<(MessageId, Current)>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query!(
        r#"SELECT id AS "id: MessageId", organization_id, status AS "status: Status", carrier_sid, carrier_account,
                  from_number, to_number, user_id, lead_id, contact_id
           FROM composer.messages WHERE id = ANY($1) ORDER BY id FOR UPDATE"#,
        &ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                Current {
                    organization_id: r.organization_id,
                    status: r.status,
                    carrier_sid: r.carrier_sid,
                    carrier_account: r.carrier_account,
                    about: About {
                        from: r.from_number,
                        to: r.to_number,
                        user_id: r.user_id,
                        lead_id: r.lead_id,
                        contact_id: r.contact_id,
                    },
                },
            )
        })
        .collect())
}

/// What a batch of status events changes on one message.
#[derive(Debug, Clone, Default)]
pub struct StatusUpdate {
    /// The new status, when one advanced it.
    pub status: Option<Status>,
    /// The latest reason given.
    pub reason: Option<Failure>,
    /// The latest carrier error code given.
    pub carrier_error_code: Option<i32>,
    /// The carrier's sid as the dispatcher got it from the carrier's answer.
    pub carrier_sid: Option<String>,
    /// The carrier account it went through, as the dispatcher reported it.
    pub carrier_account: Option<String>,
}

/// Applies `updates` (one per message) in one statement.
pub async fn set_statuses(
    conn: &mut PgConnection,
    updates: &[(MessageId, StatusUpdate)],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = updates.iter().map(|(id, _)| id.uuid()).collect();
    let statuses: Vec<Option<Status>> = updates.iter().map(|(_, u)| u.status).collect();
    let reasons: Vec<Option<String>> = updates
        .iter()
        .map(|(_, u)| u.reason.as_ref().map(|r| r.as_str().to_owned()))
        .collect();
    let codes: Vec<Option<i32>> = updates.iter().map(|(_, u)| u.carrier_error_code).collect();
    let sids: Vec<Option<String>> = updates.iter().map(|(_, u)| u.carrier_sid.clone()).collect();
    let accounts: Vec<Option<String>> = updates
        .iter()
        .map(|(_, u)| u.carrier_account.clone())
        .collect();
    sqlx::query!(
        "UPDATE composer.messages m
         SET status = COALESCE(u.status, m.status),
             reason = COALESCE(u.reason, m.reason),
             carrier_error_code = COALESCE(u.code, m.carrier_error_code),
             carrier_sid = COALESCE(u.sid, m.carrier_sid),
             carrier_account = COALESCE(u.account, m.carrier_account),
             updated_at = CASE WHEN u.status IS NULL THEN m.updated_at ELSE now() END
         FROM UNNEST($1::uuid[], $2::composer.message_status[], $3::text[], $4::int4[], $5::text[],
                     $6::text[])
              AS u(id, status, reason, code, sid, account)
         WHERE m.id = ANY($1) AND m.id = u.id",
        &ids,
        &statuses as &[Option<Status>],
        &reasons as &[Option<String>],
        &codes as &[Option<i32>],
        &sids as &[Option<String>],
        &accounts as &[Option<String>]
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Moves a scheduled message's due time, and (when its organization's days are counted for a
/// cap) its segments to the new day's count.
pub async fn set_send_at(
    pool: &PgPool,
    id: MessageId,
    send_at: DateTime<Utc>,
    counted: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let old = sqlx::query!(
        r#"SELECT organization_id, segments::int8 AS "segments!",
                  (COALESCE(send_at, created_at) AT TIME ZONE 'UTC')::date AS "day!"
           FROM composer.messages WHERE id = $1 FOR UPDATE"#,
        id.uuid()
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE composer.messages SET send_at = $2, updated_at = now() WHERE id = $1",
        id.uuid(),
        send_at
    )
    .execute(&mut *tx)
    .await?;
    if let Some(old) = old.filter(|_| counted) {
        let day = super::settings::day_of(send_at);
        super::settings::move_count(&mut tx, &old.organization_id, old.segments, old.day, day)
            .await?;
    }
    tx.commit().await
}

/// An outbound message whose status stopped moving short of a final one.
#[derive(Debug, Clone)]
pub struct Stalled {
    /// The message.
    pub id: MessageId,
    /// Its organization.
    pub organization_id: String,
    /// Where it stands here.
    pub status: Status,
    /// The carrier's sid, if known.
    pub carrier_sid: Option<String>,
    /// How many times it has now been asked about (this one included).
    pub checks: i32,
}

/// Takes up to `limit` outbound messages at `queued`, `sending` or `sent` whose status has not
/// moved for `after`, and records that they are being asked about: not again before `after` ×
/// 2^(checks − 1) (at most 32 × `after`), and not more than `max_checks` times. Replicas skip
/// each other's rows.
pub async fn take_stalled(
    conn: &mut PgConnection,
    after: std::time::Duration,
    max_checks: i32,
    limit: i64,
) -> Result<Vec<Stalled>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH due AS (
               SELECT m.id, m.organization_id, m.status, m.carrier_sid,
                      coalesce(c.checks, 0) + 1 AS checks
               FROM composer.messages m
               LEFT JOIN composer.status_checks c ON c.message_id = m.id
               WHERE m.direction = 'outbound' AND m.status IN ('queued', 'sending', 'sent')
                 AND m.updated_at < now() - make_interval(secs => $1)
                 AND (c.next_at IS NULL OR c.next_at <= now())
                 AND coalesce(c.checks, 0) < $2
               ORDER BY m.updated_at LIMIT $3
               FOR UPDATE OF m SKIP LOCKED),
           recorded AS (
               INSERT INTO composer.status_checks (message_id, checks, next_at)
               SELECT id, checks,
                      now() + make_interval(secs => $1 * power(2, least(checks - 1, 5)))
               FROM due
               ON CONFLICT (message_id) DO UPDATE
                  SET checks = EXCLUDED.checks, next_at = EXCLUDED.next_at)
           SELECT id AS "id!: MessageId", organization_id AS "organization_id!",
                  status AS "status!: Status", carrier_sid, checks AS "checks!"
           FROM due"#,
        after.as_secs_f64(),
        max_checks,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Stalled {
            id: r.id,
            organization_id: r.organization_id,
            status: r.status,
            carrier_sid: r.carrier_sid,
            checks: r.checks,
        })
        .collect())
}
