//! Webhook endpoints, their deliveries (one per endpoint and event) and the attempts at them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::feed::Position;

/// An endpoint as callers see it (its secrets stay here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// Its id.
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Event types sent; empty: all.
    pub event_types: Vec<String>,
    /// The caller's note.
    pub description: String,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: String,
    /// Since when every attempt has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A new endpoint.
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    /// Its id.
    pub id: Uuid,
    /// The organization.
    pub organization_id: &'a str,
    /// The checked URL.
    pub url: &'a str,
    /// Known event types.
    pub event_types: &'a [String],
    /// The caller's note.
    pub description: &'a str,
    /// `whsec_…`.
    pub secret: &'a str,
    /// Events after this go to it.
    pub from: Position,
}

/// The organization's endpoints.
pub async fn count(pool: &PgPool, organization_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM composer.webhook_endpoints WHERE organization_id = $1"#,
        organization_id
    )
    .fetch_one(pool)
    .await
}

/// Registers an endpoint; a second one with the same URL in the organization violates
/// `webhook_endpoints_url`.
pub async fn create(pool: &PgPool, e: &NewEndpoint<'_>) -> Result<EndpointRow, sqlx::Error> {
    sqlx::query_as!(
        EndpointRow,
        "INSERT INTO composer.webhook_endpoints
             (id, organization_id, url, event_types, description, secret, cursor_tx, cursor_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::xid8, $8)
         RETURNING id, url, event_types, description, enabled, disabled_reason, failing_since,
                   created_at",
        e.id,
        e.organization_id,
        e.url,
        e.event_types,
        e.description,
        e.secret,
        e.from.tx.to_string(),
        e.from.seq
    )
    .fetch_one(pool)
    .await
}

/// The organization's endpoints, oldest first.
pub async fn list(pool: &PgPool, organization_id: &str) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as!(
        EndpointRow,
        "SELECT id, url, event_types, description, enabled, disabled_reason, failing_since,
                created_at
         FROM composer.webhook_endpoints WHERE organization_id = $1 ORDER BY created_at, id",
        organization_id
    )
    .fetch_all(pool)
    .await
}

/// Enables or disables an endpoint (enabling forgets its failures).
pub async fn set_enabled(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
    enabled: bool,
    reason: &str,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as!(
        EndpointRow,
        "UPDATE composer.webhook_endpoints
         SET enabled = $3, disabled_reason = CASE WHEN $3 THEN '' ELSE $4 END,
             failing_since = CASE WHEN $3 THEN NULL ELSE failing_since END, updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, url, event_types, description, enabled, disabled_reason, failing_since,
                   created_at",
        organization_id,
        id,
        enabled,
        reason
    )
    .fetch_optional(pool)
    .await
}

/// Deletes an endpoint with its deliveries and attempts; whether it was there.
pub async fn delete(pool: &PgPool, organization_id: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM composer.webhook_endpoints WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted > 0)
}

/// Replaces the secret; the one it replaces still signs for `overlap`. Whether it was there.
pub async fn rotate(
    pool: &PgPool,
    organization_id: &str,
    id: Uuid,
    secret: &str,
    overlap: Duration,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE composer.webhook_endpoints
         SET previous_secret = secret, secret = $3,
             previous_until = now() + make_interval(secs => $4), updated_at = now()
         WHERE organization_id = $1 AND id = $2",
        organization_id,
        id,
        secret,
        overlap.as_secs_f64()
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated > 0)
}

/// Fans the feed out to enabled endpoints: for up to `endpoints` of those with events after
/// their cursor (least recently served first) and not locked by another replica, the events
/// after the cursor (up to `page`) of the types each takes become deliveries, and the cursor
/// moves past them, in one transaction. Returns the endpoints served and the deliveries made.
pub async fn fan_out(
    pool: &PgPool,
    endpoints: i64,
    page: i64,
) -> Result<(usize, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked = sqlx::query!(
        r#"SELECT id, organization_id, event_types, cursor_tx::text::int8 AS "tx!", cursor_seq
           FROM composer.webhook_endpoints e
           WHERE enabled AND EXISTS (
               SELECT 1 FROM composer.feed f
               WHERE f.organization_id = e.organization_id
                 AND (f.tx, f.seq) > (e.cursor_tx, e.cursor_seq)
                 AND f.tx < pg_snapshot_xmin(pg_current_snapshot()))
           ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        endpoints
    )
    .fetch_all(&mut *tx)
    .await?;
    let served = locked.len();
    let mut made = 0;
    for e in locked {
        let after = Position {
            tx: e.tx,
            seq: e.cursor_seq,
        };
        let (events, last) = super::feed::read_typed(pool, &e.organization_id, after, page).await?;
        let Some(last) = last else {
            continue;
        };
        let wanted: Vec<&super::feed::TypedEntry> = events
            .iter()
            .filter(|ev| e.event_types.is_empty() || e.event_types.contains(&ev.event_type))
            .collect();
        let ids: Vec<String> = wanted.iter().map(|ev| ev.event_id.clone()).collect();
        let types: Vec<String> = wanted.iter().map(|ev| ev.event_type.clone()).collect();
        let payloads: Vec<Vec<u8>> = wanted.iter().map(|ev| ev.payload.clone()).collect();
        made += sqlx::query!(
            "INSERT INTO composer.webhook_deliveries (endpoint_id, event_id, event_type, payload)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bytea[])
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            e.id,
            &ids,
            &types,
            &payloads
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query!(
            "UPDATE composer.webhook_endpoints
             SET cursor_tx = $2::text::xid8, cursor_seq = $3, updated_at = now() WHERE id = $1",
            e.id,
            last.tx.to_string(),
            last.seq
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((served, made))
}

/// A delivery taken for an attempt.
#[derive(Debug, Clone)]
pub struct Due {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Where to POST.
    pub url: String,
    /// Its secret, and the previous one while it still signs.
    pub secrets: Vec<String>,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The `sms.v1.FeedEvent`.
    pub payload: Vec<u8>,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
}

/// Takes due deliveries for attempts, leasing each for `lease` (no replica takes it meanwhile):
/// at most `per_endpoint` of an endpoint's, none of the endpoints in `busy` (this replica has
/// as many under way as it allows), `limit` in all, among the endpoints with a delivery due,
/// in random order.
pub async fn take_due(
    pool: &PgPool,
    busy: &[Uuid],
    per_endpoint: i64,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH picked AS (
               SELECT d.endpoint_id, d.event_id
               FROM (SELECT id FROM composer.webhook_endpoints en
                     WHERE enabled AND NOT (id = ANY($1)) AND EXISTS (
                         SELECT 1 FROM composer.webhook_deliveries dd
                         WHERE dd.endpoint_id = en.id AND dd.state = 'pending'
                           AND dd.next_at <= now())
                     ORDER BY random()) e
               CROSS JOIN LATERAL (
                   SELECT endpoint_id, event_id FROM composer.webhook_deliveries
                   WHERE endpoint_id = e.id AND state = 'pending' AND next_at <= now()
                   ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED) d
               LIMIT $3)
           UPDATE composer.webhook_deliveries w
           SET attempts = w.attempts + 1, next_at = now() + make_interval(secs => $4)
           FROM picked, composer.webhook_endpoints e
           WHERE w.endpoint_id = picked.endpoint_id AND w.event_id = picked.event_id
             AND e.id = w.endpoint_id
           RETURNING w.endpoint_id, e.url, e.secret,
                     CASE WHEN e.previous_until > now() THEN e.previous_secret END
                         AS previous_secret,
                     w.event_id, w.event_type, w.payload, w.attempts"#,
        busy,
        per_endpoint,
        limit,
        lease.as_secs_f64()
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Due {
            endpoint_id: r.endpoint_id,
            url: r.url,
            secrets: std::iter::once(r.secret).chain(r.previous_secret).collect(),
            event_id: r.event_id,
            event_type: r.event_type,
            payload: r.payload,
            attempt: r.attempts,
        })
        .collect())
}

/// What became of an attempt.
#[derive(Debug, Clone)]
pub struct Attempted {
    /// When it started.
    pub at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// The endpoint's status, if it answered.
    pub http_status: Option<i32>,
    /// Why it failed.
    pub error: String,
    /// The start of the answer.
    pub response: String,
    /// `None`: delivered. `Some(Some(t))`: tried again at `t`. `Some(None)`: failed for good.
    pub retry: Option<Option<DateTime<Utc>>>,
}

/// What became of an attempt: as recorded (its word in `webhook_attempts.outcome`), listed
/// and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// It failed and will be tried again.
    Retrying,
    /// It failed and its retries are spent.
    Failed,
}

impl Outcome {
    /// Its word in the table, the API and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome its word names (as the table holds it).
    pub fn parse(word: &str) -> Option<Outcome> {
        [Outcome::Delivered, Outcome::Retrying, Outcome::Failed]
            .into_iter()
            .find(|o| o.as_str() == word)
    }
}

impl Attempted {
    /// What became of it.
    pub fn outcome(&self) -> Outcome {
        match self.retry {
            None => Outcome::Delivered,
            Some(Some(_)) => Outcome::Retrying,
            Some(None) => Outcome::Failed,
        }
    }
}

/// Records an attempt, moves its delivery on, and keeps the endpoint's failure streak (an
/// endpoint failing since before `disable_before` is disabled), in one transaction. Returns
/// the disabled endpoint's reason when this disabled it.
pub async fn record(
    pool: &PgPool,
    due: &Due,
    a: &Attempted,
    disable_before: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    let (outcome, next) = (a.outcome(), a.retry.flatten());
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO composer.webhook_attempts
             (endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms, http_status,
              error, response, outcome, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        due.endpoint_id,
        due.event_id,
        due.event_type,
        due.attempt,
        a.at,
        a.duration_ms,
        a.http_status,
        a.error,
        a.response,
        outcome.as_str(),
        next
    )
    .execute(&mut *tx)
    .await?;
    // Only the attempt that holds the delivery moves it (a replay may have reset it meanwhile).
    sqlx::query!(
        "UPDATE composer.webhook_deliveries
         SET state = CASE $4 WHEN 'retrying' THEN 'pending' ELSE $4 END,
             next_at = coalesce($5, next_at)
         WHERE endpoint_id = $1 AND event_id = $2 AND attempts = $3 AND state = 'pending'",
        due.endpoint_id,
        due.event_id,
        due.attempt,
        outcome.as_str(),
        next
    )
    .execute(&mut *tx)
    .await?;
    let disabled = if outcome == Outcome::Delivered {
        sqlx::query!(
            "UPDATE composer.webhook_endpoints SET failing_since = NULL
             WHERE id = $1 AND failing_since IS NOT NULL",
            due.endpoint_id
        )
        .execute(&mut *tx)
        .await?;
        None
    } else {
        sqlx::query!(
            "UPDATE composer.webhook_endpoints SET failing_since = $2
             WHERE id = $1 AND failing_since IS NULL",
            due.endpoint_id,
            a.at
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar!(
            "UPDATE composer.webhook_endpoints
             SET enabled = false, updated_at = now(),
                 disabled_reason = 'every attempt failed since '
                     || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                     || ' UTC'
             WHERE id = $1 AND enabled AND failing_since < $2
             RETURNING disabled_reason",
            due.endpoint_id,
            disable_before
        )
        .fetch_optional(&mut *tx)
        .await?
    };
    tx.commit().await?;
    Ok(disabled)
}

/// An attempt as listed.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    /// Its id (the page token).
    pub id: i64,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The attempt's number.
    pub attempt: i32,
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// The endpoint's status, if it answered.
    pub http_status: Option<i32>,
    /// Why it failed.
    pub error: String,
    /// The start of the answer.
    pub response: String,
    /// delivered, retrying or failed.
    pub outcome: String,
    /// When the next one is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Whether the organization has endpoint `id`.
pub async fn exists(pool: &PgPool, organization_id: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM composer.webhook_endpoints
                          WHERE organization_id = $1 AND id = $2) AS "e!""#,
        organization_id,
        id
    )
    .fetch_one(pool)
    .await
}

/// An endpoint's attempts, newest first, before attempt `before` (a page token), optionally
/// of one event.
pub async fn attempts(
    pool: &PgPool,
    endpoint_id: Uuid,
    event_id: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        "SELECT id, event_id, event_type, attempt, attempted_at, duration_ms, http_status, error,
                response, outcome, next_attempt_at
         FROM composer.webhook_attempts
         WHERE endpoint_id = $1 AND ($2::text IS NULL OR event_id = $2)
           AND ($3::int8 IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
        endpoint_id,
        event_id,
        before,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Schedules event `event_id` for endpoint `endpoint_id` again (from the schedule's start), or
/// for the first time if the endpoint never had it (it must still be in the organization's
/// feed). Whether the event was found.
pub async fn replay_event(
    pool: &PgPool,
    organization_id: &str,
    endpoint_id: Uuid,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let again = sqlx::query!(
        "UPDATE composer.webhook_deliveries
         SET state = 'pending', attempts = 0, next_at = now()
         WHERE endpoint_id = $1 AND event_id = $2",
        endpoint_id,
        event_id
    )
    .execute(pool)
    .await?
    .rows_affected();
    if again > 0 {
        return Ok(true);
    }
    let Some(entry) = super::feed::by_event_id(pool, organization_id, event_id).await? else {
        return Ok(false);
    };
    sqlx::query!(
        "INSERT INTO composer.webhook_deliveries (endpoint_id, event_id, event_type, payload)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (endpoint_id, event_id) DO UPDATE
         SET state = 'pending', attempts = 0, next_at = now()",
        endpoint_id,
        event_id,
        entry.event_type,
        entry.payload
    )
    .execute(pool)
    .await?;
    Ok(true)
}

/// Schedules every failed delivery of the endpoint again; how many.
pub async fn replay_failed(pool: &PgPool, endpoint_id: Uuid) -> Result<u64, sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.webhook_deliveries
         SET state = 'pending', attempts = 0, next_at = now()
         WHERE endpoint_id = $1 AND state = 'failed'",
        endpoint_id
    )
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Deletes attempts, and settled deliveries, older than `before`; how many rows.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let attempts = sqlx::query!(
        "DELETE FROM composer.webhook_attempts WHERE attempted_at < $1",
        before
    )
    .execute(pool)
    .await?
    .rows_affected();
    let deliveries = sqlx::query!(
        "DELETE FROM composer.webhook_deliveries
         WHERE state <> 'pending' AND created_at < $1",
        before
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(attempts + deliveries)
}
