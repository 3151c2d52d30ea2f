//! Inbound messages: stored once per carrier id on their conversation, read back as
//! conversations and inboxes.

use chrono::{DateTime, Utc};
use sms_core::{Address, Direction, Encoding, Failure, MessageId, Status};
use sqlx::{PgConnection, PgPool};

use super::history::{self, HistoryRow, NewHistory};
use super::messages::MessageRow;

/// Stores an inbound message with its `received` history entry (and `detail`, when the
/// carrier's text had to be changed to be stored), once per carrier id, in the caller's
/// transaction; returns whether it was new.
#[tracing::instrument(skip_all, fields(message_id = %m.id))]
pub async fn insert(
    tx: &mut PgConnection,
    m: &MessageRow,
    event_id: &str,
    detail: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO composer.messages
            (id, organization_id, user_id, direction, from_number, to_number, body, status,
             encoding, segments, characters, carrier_sid, created_at, updated_at, lead_id,
             contact_id)
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, 'received', $7, $8, $9, $10, $11, $11, $12,
                 $13)
         ON CONFLICT (organization_id, carrier_sid) WHERE direction = 'inbound' DO NOTHING",
        m.id.uuid(),
        m.organization_id,
        m.user_id,
        m.from_number.as_str(),
        m.to_number.as_str(),
        m.body,
        m.encoding as Encoding,
        m.segments,
        m.characters,
        m.carrier_sid,
        m.created_at,
        m.lead_id,
        m.contact_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        let entry = NewHistory {
            message_id: m.id,
            entry: HistoryRow {
                status: Status::Received,
                reason: None,
                carrier_error_code: None,
                occurred_at: m.created_at,
                detail: detail.map(str::to_owned),
            },
            event_id: event_id.to_owned(),
        };
        history::insert(tx, &[entry]).await?;
    }
    Ok(inserted)
}

/// The inbound message with a carrier id, if stored.
#[tracing::instrument(skip(pool))]
pub async fn by_carrier_sid(
    pool: &PgPool,
    organization_id: &str,
    carrier_sid: &str,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
           FROM composer.messages
           WHERE organization_id = $1 AND carrier_sid = $2 AND direction = 'inbound'"#,
        organization_id,
        carrier_sid
    )
    .fetch_optional(pool)
    .await
}

/// Both directions between one of our numbers and a contact, oldest first, after a cursor.
#[tracing::instrument(skip(pool))]
pub async fn conversation(
    pool: &PgPool,
    organization_id: &str,
    ours: &str,
    contact: &str,
    after: Option<(DateTime<Utc>, MessageId)>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (after_at, after_id) = after.map(|(at, id)| (at, id.uuid())).unzip();
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
           FROM composer.messages
           WHERE organization_id = $1
             AND least(from_number, to_number) = least($2::text, $3::text)
             AND greatest(from_number, to_number) = greatest($2::text, $3::text)
             AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5::uuid))
           ORDER BY created_at, id
           LIMIT $6"#,
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

/// One conversation: a number of ours and a contact, with its newest message.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Our number.
    pub ours: String,
    /// The contact's number.
    pub contact: String,
    /// Messages in both directions.
    pub messages: i64,
    /// Inbound messages not marked done.
    pub open_inbound: i64,
    /// The newest message's id.
    pub last_id: MessageId,
    /// When the newest message was created.
    pub last_at: DateTime<Utc>,
}

/// The organization's conversations (on `ours` only, when given), the most recently active
/// first, strictly after a cursor (the newest message's time and id).
#[tracing::instrument(skip(pool))]
pub async fn conversations(
    pool: &PgPool,
    organization_id: &str,
    ours: Option<&str>,
    before: Option<(DateTime<Utc>, MessageId)>,
    limit: i64,
) -> Result<Vec<ConversationRow>, sqlx::Error> {
    let (before_at, before_id) = before.map(|(at, id)| (at, id.uuid())).unzip();
    sqlx::query_as!(
        ConversationRow,
        r#"SELECT ours AS "ours!", contact AS "contact!", messages AS "messages!",
                  open_inbound AS "open_inbound!", last_id AS "last_id!: MessageId", last_at AS "last_at!"
           FROM (
               SELECT CASE WHEN direction = 'outbound' THEN from_number ELSE to_number END
                          AS ours,
                      CASE WHEN direction = 'outbound' THEN to_number ELSE from_number END
                          AS contact,
                      count(*) AS messages,
                      count(*) FILTER (WHERE direction = 'inbound' AND NOT done)
                          AS open_inbound,
                      (array_agg(id ORDER BY created_at DESC, id DESC))[1] AS last_id,
                      max(created_at) AS last_at
               FROM composer.messages
               WHERE organization_id = $1
                 AND ($2::text IS NULL OR from_number = $2 OR to_number = $2)
               GROUP BY 1, 2
           ) c
           WHERE ($2::text IS NULL OR ours = $2)
             AND ($3::timestamptz IS NULL OR (last_at, last_id) < ($3, $4::uuid))
           ORDER BY last_at DESC, last_id DESC
           LIMIT $5"#,
        organization_id,
        ours,
        before_at,
        before_id,
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
    before: Option<(DateTime<Utc>, MessageId)>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let (before_at, before_id) = before.map(|(at, id)| (at, id.uuid())).unzip();
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id: MessageId", organization_id, user_id, direction AS "direction: Direction",
                  from_number AS "from_number: Address", to_number AS "to_number: Address",
                  body, status AS "status: Status", reason AS "reason: Failure", carrier_error_code,
                  encoding AS "encoding: Encoding", segments, characters, carrier_sid, lead_id,
                  contact_id, created_at, updated_at, send_at, done, media_count
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
           LIMIT $6"#,
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
    id: MessageId,
    done: bool,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query!(
        "UPDATE composer.messages SET done = $3
         WHERE organization_id = $1 AND id = $2 AND direction = 'inbound'",
        organization_id,
        id.uuid(),
        done
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Whether `contact` texted `our_number` (of the organization) since `since`: a message to
/// them is a reply, which quiet hours never hold.
pub async fn texted_since(
    pool: &PgPool,
    organization_id: &str,
    our_number: &str,
    contact: &str,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
             SELECT 1 FROM composer.messages
             WHERE organization_id = $1 AND direction = 'inbound'
               AND least(from_number, to_number) = least($2, $3)
               AND greatest(from_number, to_number) = greatest($2, $3)
               AND from_number = $3 AND created_at >= $4) AS "texted!""#,
        organization_id,
        our_number,
        contact,
        since
    )
    .fetch_one(pool)
    .await
}

/// The CRM's lead and contact a reply from `contact` to `our_number` belongs to: those of the
/// latest outbound message between the two that had either, else those the CRM registered for
/// `contact`.
pub async fn lead_of(
    conn: &mut PgConnection,
    organization_id: &str,
    our_number: &str,
    contact: &str,
) -> Result<(Option<String>, Option<String>), sqlx::Error> {
    let conversation = sqlx::query!(
        "SELECT lead_id, contact_id FROM composer.messages
         WHERE organization_id = $1 AND direction = 'outbound'
           AND least(from_number, to_number) = least($2, $3)
           AND greatest(from_number, to_number) = greatest($2, $3)
           AND from_number = $2
           AND (lead_id IS NOT NULL OR contact_id IS NOT NULL)
         ORDER BY created_at DESC, id DESC LIMIT 1",
        organization_id,
        our_number,
        contact
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(c) = conversation {
        return Ok((c.lead_id, c.contact_id));
    }
    Ok(super::contacts::get(conn, organization_id, contact)
        .await?
        .map(|c| (c.lead_id, c.contact_id))
        .unwrap_or_default())
}
