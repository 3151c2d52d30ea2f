//! An organization's settings (quiet hours, daily cap) and the count of segments each day that
//! the cap is held against.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sms_core::MessageId;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsRow {
    /// Whether quiet hours hold messages.
    pub quiet_enabled: bool,
    /// The sending window's start.
    pub quiet_start: NaiveTime,
    /// Its end.
    pub quiet_end: NaiveTime,
    /// Its days, Monday first.
    pub quiet_days: Vec<bool>,
    /// Segments a day; `None`: no cap.
    pub daily_segment_cap: Option<i64>,
}

/// The organization's settings; `None` when it never changed them.
pub async fn get(pool: &PgPool, organization_id: &str) -> Result<Option<SettingsRow>, sqlx::Error> {
    sqlx::query_as!(
        SettingsRow,
        "SELECT quiet_enabled, quiet_start, quiet_end, quiet_days, daily_segment_cap
         FROM composer.settings WHERE organization_id = $1",
        organization_id
    )
    .fetch_optional(pool)
    .await
}

/// Locks the organization's settings row (if any) until the transaction ends; returns its cap.
pub async fn lock_cap(
    conn: &mut PgConnection,
    organization_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT daily_segment_cap FROM composer.settings WHERE organization_id = $1 FOR UPDATE",
        organization_id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// Replaces the organization's settings.
pub async fn put(
    conn: &mut PgConnection,
    organization_id: &str,
    s: &SettingsRow,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.settings
            (organization_id, quiet_enabled, quiet_start, quiet_end, quiet_days, daily_segment_cap)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (organization_id) DO UPDATE
         SET quiet_enabled = EXCLUDED.quiet_enabled, quiet_start = EXCLUDED.quiet_start,
             quiet_end = EXCLUDED.quiet_end, quiet_days = EXCLUDED.quiet_days,
             daily_segment_cap = EXCLUDED.daily_segment_cap, updated_at = now()",
        organization_id,
        s.quiet_enabled,
        s.quiet_start,
        s.quiet_end,
        &s.quiet_days,
        s.daily_segment_cap
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Segments to count against one organization's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    /// The organization.
    pub organization_id: String,
    /// The day (UTC) the messages are due.
    pub day: NaiveDate,
    /// Their segments.
    pub segments: i64,
    /// The cap they are held to; `None`: counted, never refused.
    pub cap: Option<i64>,
}

/// The constraint a count over the cap violates, rolling its transaction back.
pub const OVER_CAP: &str = "daily_segments_within_cap";

/// Counts `counts` (one per organization and day) in the caller's transaction; a count that
/// would go over its cap fails with the [`OVER_CAP`] constraint.
pub async fn count(conn: &mut PgConnection, counts: &[DayCount]) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let orgs: Vec<String> = counts.iter().map(|c| c.organization_id.clone()).collect();
    let days: Vec<NaiveDate> = counts.iter().map(|c| c.day).collect();
    let segments: Vec<i64> = counts.iter().map(|c| c.segments).collect();
    let caps: Vec<Option<i64>> = counts.iter().map(|c| c.cap).collect();
    sqlx::query!(
        "INSERT INTO composer.daily_segments (organization_id, day, segments, cap)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::int8[], $4::int8[])
         ORDER BY 1, 2
         ON CONFLICT (organization_id, day) DO UPDATE
         SET segments = daily_segments.segments + EXCLUDED.segments, cap = EXCLUDED.cap",
        &orgs,
        &days,
        &segments,
        &caps as &[Option<i64>]
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// The day (UTC) a message due at `due` counts against.
pub fn day_of(due: DateTime<Utc>) -> NaiveDate {
    due.date_naive()
}

/// Segments counted for the organization's `day`.
pub async fn counted(
    pool: &PgPool,
    organization_id: &str,
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT segments FROM composer.daily_segments WHERE organization_id = $1 AND day = $2",
        organization_id,
        day
    )
    .fetch_optional(pool)
    .await
    .map(Option::unwrap_or_default)
}

/// Segments of the organization's outbound messages due on `day` (not canceled), read from the
/// messages themselves: today's figure for an organization without a cap.
pub async fn due_on(
    pool: &PgPool,
    organization_id: &str,
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(segments), 0)::int8 AS "segments!" FROM composer.messages
           WHERE organization_id = $1 AND direction = 'outbound' AND status <> 'canceled'
             AND ((send_at IS NULL AND created_at >= $2::date AT TIME ZONE 'UTC'
                   AND created_at < ($2::date + 1) AT TIME ZONE 'UTC')
               OR (send_at >= $2::date AT TIME ZONE 'UTC'
                   AND send_at < ($2::date + 1) AT TIME ZONE 'UTC'))"#,
        organization_id,
        day
    )
    .fetch_one(pool)
    .await
}

/// Starts counting the organization's days for a cap: today and later, seeded from the messages
/// already accepted for them (in the caller's transaction).
pub async fn start_counting(
    conn: &mut PgConnection,
    organization_id: &str,
    today: NaiveDate,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO composer.daily_segments (organization_id, day, segments, cap)
           SELECT organization_id, (COALESCE(send_at, created_at) AT TIME ZONE 'UTC')::date,
                  sum(segments)::int8, NULL
           FROM composer.messages
           WHERE organization_id = $1 AND direction = 'outbound' AND status <> 'canceled'
             AND (COALESCE(send_at, created_at) AT TIME ZONE 'UTC')::date >= $2
           GROUP BY 1, 2
           ON CONFLICT (organization_id, day) DO UPDATE
           SET segments = EXCLUDED.segments, cap = NULL"#,
        organization_id,
        today
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Stops counting the organization's days (its cap was removed).
pub async fn stop_counting(
    conn: &mut PgConnection,
    organization_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM composer.daily_segments WHERE organization_id = $1",
        organization_id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Gives the segments of the canceled messages `ids` back to the days they were due.
pub async fn refund(conn: &mut PgConnection, ids: &[MessageId]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    sqlx::query!(
        "UPDATE composer.daily_segments d
         SET segments = greatest(d.segments - m.segments, 0)
         FROM (SELECT organization_id, (COALESCE(send_at, created_at) AT TIME ZONE 'UTC')::date AS day,
                      sum(segments)::bigint AS segments
               FROM composer.messages WHERE id = ANY($1) AND direction = 'outbound'
               GROUP BY 1, 2) m
         WHERE d.organization_id = m.organization_id AND d.day = m.day",
        &ids
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Moves `segments` counted for a message from `from` to `to` (never refused: the message was
/// accepted).
pub async fn move_count(
    conn: &mut PgConnection,
    organization_id: &str,
    segments: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(), sqlx::Error> {
    if from == to {
        return Ok(());
    }
    refund_day(conn, organization_id, from, segments).await?;
    count(
        conn,
        &[DayCount {
            organization_id: organization_id.to_owned(),
            day: to,
            segments,
            cap: None,
        }],
    )
    .await
}

async fn refund_day(
    conn: &mut PgConnection,
    organization_id: &str,
    day: NaiveDate,
    segments: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE composer.daily_segments SET segments = greatest(segments - $3, 0)
         WHERE organization_id = $1 AND day = $2",
        organization_id,
        day,
        segments
    )
    .execute(conn)
    .await
    .map(|_| ())
}
