//! MMS attachments, stored with their message.

use sms_core::MessageId;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Whether an attachment's bytes are here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "media_state", rename_all = "lowercase")]
pub enum MediaState {
    /// Stored.
    Stored,
    /// An inbound attachment that could not be downloaded or was refused.
    Failed,
}

impl MediaState {
    /// `stored` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaState::Stored => "stored",
            MediaState::Failed => "failed",
        }
    }
}

/// An attachment row.
#[derive(Debug, Clone)]
pub struct MediaRow {
    /// Unguessable id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: String,
    /// Its message.
    pub message_id: MessageId,
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
    /// Stored or failed.
    pub state: MediaState,
    /// Why it failed.
    pub error: Option<String>,
}

impl MediaRow {
    /// What the attachment is, without its bytes (for answers that list attachments).
    pub fn described(&self) -> MediaRow {
        MediaRow {
            id: self.id,
            organization_id: self.organization_id.clone(),
            message_id: self.message_id,
            position: self.position,
            file_name: self.file_name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            data: None,
            state: self.state,
            error: self.error.clone(),
        }
    }
}

/// Stores one attachment.
pub async fn insert(conn: &mut PgConnection, m: &MediaRow) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO composer.media
            (id, organization_id, message_id, position, file_name, content_type, size, data,
             state, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        m.id,
        m.organization_id,
        m.message_id.uuid(),
        m.position,
        m.file_name,
        m.content_type,
        m.size,
        m.data,
        m.state as MediaState,
        m.error
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Stores attachments of an existing message and counts them on it.
pub async fn add_to_message(
    pool: &PgPool,
    message_id: MessageId,
    media: &[MediaRow],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for m in media {
        insert(&mut tx, m).await?;
    }
    sqlx::query!(
        "UPDATE composer.messages SET media_count = media_count + $2 WHERE id = $1",
        message_id.uuid(),
        i32::try_from(media.len()).unwrap_or(i32::MAX)
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Attachments of some messages, without their bytes, in order.
pub async fn of_messages(
    pool: &PgPool,
    message_ids: &[MessageId],
) -> Result<Vec<MediaRow>, sqlx::Error> {
    let message_ids: Vec<Uuid> = message_ids.iter().map(|id| id.uuid()).collect();
    sqlx::query_as!(
        MediaRow,
        r#"SELECT id, organization_id, message_id AS "message_id: MessageId", position, file_name, content_type, size,
                  NULL::bytea AS data, state AS "state: MediaState", error
           FROM composer.media WHERE message_id = ANY($1) ORDER BY message_id, position"#,
        &message_ids
    )
    .fetch_all(pool)
    .await
}

/// One attachment with its bytes; scoped to the organization unless `organization_id` is
/// `None` (the signed carrier URL authorizes by itself).
pub async fn get(
    pool: &PgPool,
    organization_id: Option<&str>,
    id: Uuid,
) -> Result<Option<MediaRow>, sqlx::Error> {
    sqlx::query_as!(
        MediaRow,
        r#"SELECT id, organization_id, message_id AS "message_id: MessageId", position, file_name, content_type, size, data,
                  state AS "state: MediaState", error
           FROM composer.media WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)"#,
        id,
        organization_id
    )
    .fetch_optional(pool)
    .await
}
