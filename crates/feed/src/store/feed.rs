//! The organization's event feed: appended in the transaction of each change, read in commit-safe
//! order, pruned after its retention.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::{PgConnection, PgPool};

/// A place in an organization's feed: right after the event (transaction id, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The writing transaction's id.
    pub tx: i64,
    /// The sequence within the feed.
    pub seq: i64,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The organization.
    pub organization_id: String,
    /// Its stable id (appended once).
    pub event_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The encoded `sms.v1.FeedEvent`, without a cursor.
    pub payload: Vec<u8>,
}

/// Appends `entries` in the caller's transaction; one already there is skipped.
pub async fn append(conn: &mut PgConnection, entries: &[NewEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let orgs: Vec<String> = entries.iter().map(|e| e.organization_id.clone()).collect();
    let ids: Vec<String> = entries.iter().map(|e| e.event_id.clone()).collect();
    let at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.occurred_at).collect();
    let payloads: Vec<Vec<u8>> = entries.iter().map(|e| e.payload.clone()).collect();
    sqlx::query!(
        "INSERT INTO composer.feed (organization_id, event_id, occurred_at, payload)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::bytea[])
         ON CONFLICT (organization_id, event_id) DO NOTHING",
        &orgs,
        &ids,
        &at,
        &payloads
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Up to `limit` of the organization's events after `after`, in order, only from transactions
/// older than every one still running (none of them can still add an event before these).
pub async fn read(
    pool: &PgPool,
    organization_id: &str,
    after: Position,
    limit: i64,
) -> Result<Vec<(Position, Vec<u8>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT tx::text::int8 AS "tx!", seq, payload FROM composer.feed
           WHERE organization_id = $1 AND (tx, seq) > ($2::text::xid8, $3)
             AND tx < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY tx, seq LIMIT $4"#,
        organization_id,
        after.tx.to_string(),
        after.seq,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                Position {
                    tx: r.tx,
                    seq: r.seq,
                },
                r.payload,
            )
        })
        .collect())
}

/// A feed entry with what a webhook needs of it.
#[derive(Debug, Clone)]
pub struct TypedEntry {
    /// Where it is.
    pub at: Position,
    /// Its stable id.
    pub event_id: String,
    /// Its type (`message.status`, …).
    pub event_type: String,
    /// The encoded `sms.v1.FeedEvent`, with its cursor.
    pub payload: Vec<u8>,
}

fn typed(at: Position, payload: &[u8]) -> Option<TypedEntry> {
    let mut event = sms_proto::v1::FeedEvent::decode(payload).ok()?;
    event.cursor = cursor(at);
    Some(TypedEntry {
        at,
        event_id: event.id.clone(),
        event_type: event.r#type.clone(),
        payload: event.encode_to_vec(),
    })
}

/// [`read`], each entry with its id and type. An entry that does not decode is left out
/// (logged), but the position still moves past it.
pub async fn read_typed(
    pool: &PgPool,
    organization_id: &str,
    after: Position,
    limit: i64,
) -> Result<(Vec<TypedEntry>, Option<Position>), sqlx::Error> {
    let page = read(pool, organization_id, after, limit).await?;
    let last = page.last().map(|(at, _)| *at);
    let entries = page
        .into_iter()
        .filter_map(|(at, payload)| {
            let entry = typed(at, &payload);
            if entry.is_none() {
                tracing::error!(?at, "feed entry does not decode; not delivered to webhooks");
            }
            entry
        })
        .collect();
    Ok((entries, last))
}

/// The organization's event `event_id`, if the feed still holds it.
pub async fn by_event_id(
    pool: &PgPool,
    organization_id: &str,
    event_id: &str,
) -> Result<Option<TypedEntry>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT tx::text::int8 AS "tx!", seq, payload FROM composer.feed
           WHERE organization_id = $1 AND event_id = $2"#,
        organization_id,
        event_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|r| {
        typed(
            Position {
                tx: r.tx,
                seq: r.seq,
            },
            &r.payload,
        )
    }))
}

/// The place every event written from now on comes after.
pub async fn now(pool: &PgPool) -> Result<Position, sqlx::Error> {
    let tx = sqlx::query_scalar!(
        r#"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8 AS "tx!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(Position { tx, seq: -1 })
}

/// Whether the organization's feed holds the event at `at`.
pub async fn holds(
    pool: &PgPool,
    organization_id: &str,
    at: Position,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM composer.feed
                          WHERE organization_id = $1 AND tx = $2::text::xid8 AND seq = $3)
           AS "held!""#,
        organization_id,
        at.tx.to_string(),
        at.seq
    )
    .fetch_one(pool)
    .await
}

/// The last event pruned from the organization's feed (it starts right after), if any.
pub async fn horizon(
    pool: &PgPool,
    organization_id: &str,
) -> Result<Option<Position>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT tx::text::int8 AS "tx!", seq FROM composer.feed_horizon
           WHERE organization_id = $1"#,
        organization_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Position {
        tx: r.tx,
        seq: r.seq,
    }))
}

/// Deletes events written before `before` (at most `limit`), moving each organization's horizon
/// to the last one deleted; returns how many were deleted.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>, limit: i64) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        r#"WITH gone AS (
               DELETE FROM composer.feed WHERE ctid IN (
                   SELECT ctid FROM composer.feed WHERE written_at < $1 LIMIT $2)
               RETURNING organization_id, tx, seq),
           last AS (
               SELECT DISTINCT ON (organization_id) organization_id, tx, seq FROM gone
               ORDER BY organization_id, tx DESC, seq DESC),
           moved AS (
               INSERT INTO composer.feed_horizon (organization_id, tx, seq)
               SELECT organization_id, tx, seq FROM last
               ON CONFLICT (organization_id) DO UPDATE SET tx = EXCLUDED.tx, seq = EXCLUDED.seq
               WHERE (composer.feed_horizon.tx, composer.feed_horizon.seq) < (EXCLUDED.tx, EXCLUDED.seq)
               RETURNING 1)
           SELECT count(*) AS "deleted!" FROM gone"#,
        before,
        limit
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(u64::try_from(deleted.deleted).unwrap_or(0))
}

/// The cursor of the event at `p`: opaque to callers.
pub fn cursor(p: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1.{}.{}", p.tx, p.seq))
}

/// The position a cursor names, if it is one of ours.
pub fn parse_cursor(cursor: &str) -> Option<Position> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.strip_prefix("v1.")?.split('.');
    let tx = parts.next()?.parse::<i64>().ok()?;
    let seq = parts.next()?.parse::<i64>().ok()?;
    (parts.next().is_none() && tx >= 0 && seq >= 0).then_some(Position { tx, seq })
}

/// Longest cursor accepted.
pub const MAX_CURSOR: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_is_not_ours() {
        let p = Position { tx: 7_234, seq: 99 };
        assert_eq!(parse_cursor(&cursor(p)), Some(p));
        for bad in [
            "",
            "abc",
            "djEuMS4y!",
            &URL_SAFE_NO_PAD.encode("v2.1.2"),
            &URL_SAFE_NO_PAD.encode("v1.1"),
            &URL_SAFE_NO_PAD.encode("v1.1.2.3"),
            &URL_SAFE_NO_PAD.encode("v1.-1.2"),
            &URL_SAFE_NO_PAD.encode("v1.x.2"),
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
