//! Status history: one entry per event that moved a message, each event recorded once.

use chrono::{DateTime, Utc};
use sms_core::{Failure, MessageId, Status};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A status history entry.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The status.
    pub status: Status,
    /// Why it failed.
    pub reason: Option<Failure>,
    /// Carrier code.
    pub carrier_error_code: Option<i32>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Free text for operators.
    pub detail: Option<String>,
}

/// A status history entry to append.
#[derive(Debug, Clone)]
pub struct NewHistory {
    /// The message.
    pub message_id: MessageId,
    /// The entry.
    pub entry: HistoryRow,
    /// The event that said so (an event is recorded once).
    pub event_id: String,
}

/// The status history of a message, in the order things happened (events can be applied out
/// of order; each records when it happened).
#[tracing::instrument(skip(pool))]
pub async fn of_message(pool: &PgPool, id: MessageId) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as!(
        HistoryRow,
        r#"SELECT status AS "status: Status", reason AS "reason: Failure", carrier_error_code, occurred_at, detail
           FROM composer.message_status_history WHERE message_id = $1
           ORDER BY occurred_at, seq"#,
        id.uuid()
    )
    .fetch_all(pool)
    .await
}

/// Appends history entries in one statement (each event once).
pub async fn insert(conn: &mut PgConnection, rows: &[NewHistory]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.message_id.uuid()).collect();
    let statuses: Vec<Status> = rows.iter().map(|r| r.entry.status).collect();
    let reasons: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.entry.reason.as_ref().map(|r| r.as_str().to_owned()))
        .collect();
    let codes: Vec<Option<i32>> = rows.iter().map(|r| r.entry.carrier_error_code).collect();
    let details: Vec<Option<String>> = rows.iter().map(|r| r.entry.detail.clone()).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.entry.occurred_at).collect();
    let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    sqlx::query!(
        "INSERT INTO composer.message_status_history
            (message_id, status, reason, carrier_error_code, detail, occurred_at, event_id)
         SELECT * FROM UNNEST($1::uuid[], $2::composer.message_status[], $3::text[], $4::int4[],
                              $5::text[], $6::timestamptz[], $7::text[])
         ON CONFLICT (message_id, event_id) DO NOTHING",
        &ids,
        &statuses as &[Status],
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
