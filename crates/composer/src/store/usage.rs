//! Usage (what the customer is billed for: one row per message handed to the carrier) and the
//! reports read from messages: totals by month, leads with errors.

use chrono::{DateTime, Utc};
use sms_core::{Encoding, MessageId};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// SMS or MMS, as billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "message_kind", rename_all = "lowercase")]
pub enum MessageKind {
    /// Text only.
    Sms,
    /// With attachments.
    Mms,
}

impl MessageKind {
    /// `sms` or `mms`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Sms => "sms",
            MessageKind::Mms => "mms",
        }
    }
}

/// Records usage for messages handed to the carrier (once per message); returns the encoding
/// and segments of each newly billed one.
pub async fn record(
    conn: &mut PgConnection,
    ids: &[MessageId],
) -> Result<Vec<(Encoding, i32)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query!(
        r#"INSERT INTO composer.usage
               (message_id, organization_id, month, country, kind, encoding, segments)
           SELECT id, organization_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
                  to_region,
                  (CASE WHEN media_count > 0 THEN 'mms' ELSE 'sms' END)::composer.message_kind,
                  encoding, segments
           FROM composer.messages WHERE id = ANY($1) AND direction = 'outbound'
           ON CONFLICT (message_id) DO NOTHING
           RETURNING encoding AS "encoding: Encoding", segments"#,
        &ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.encoding, r.segments)).collect())
}

/// A usage total.
#[derive(Debug, Clone)]
pub struct UsageRow {
    /// First day of the month.
    pub month: chrono::NaiveDate,
    /// Recipient region.
    pub country: String,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Encoding.
    pub encoding: Encoding,
    /// Messages.
    pub messages: i64,
    /// Segments.
    pub segments: i64,
}

/// Usage totals by month, country, kind and encoding.
#[tracing::instrument(skip(pool))]
pub async fn totals(
    pool: &PgPool,
    organization_id: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    sqlx::query_as!(
        UsageRow,
        r#"SELECT month, country, kind AS "kind: MessageKind", encoding AS "encoding: Encoding",
                  count(*) AS "messages!", COALESCE(sum(segments), 0)::bigint AS "segments!"
           FROM composer.usage
           WHERE organization_id = $1 AND month BETWEEN $2 AND $3
           GROUP BY month, country, kind, encoding
           ORDER BY month, country, kind::text, encoding::text"#,
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
        r#"SELECT lead_id AS "lead_id!", count(*) AS "errored!",
                  max(created_at) AS "last_error_at!",
                  (array_agg(reason ORDER BY created_at DESC))[1] AS last_reason
           FROM composer.messages
           WHERE organization_id = $1 AND lead_id IS NOT NULL
             AND status IN ('failed', 'undelivered')
           GROUP BY lead_id
           HAVING $2::timestamptz IS NULL OR (max(created_at), lead_id) < ($2, $3::text)
           ORDER BY max(created_at) DESC, lead_id DESC
           LIMIT $4"#,
        organization_id,
        before_at,
        before_lead,
        limit
    )
    .fetch_all(pool)
    .await
}
