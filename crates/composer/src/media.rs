//! MMS attachments: fetched (through the fetch policy) and checked with sms-core, stored with
//! their message, served to carriers at signed, expiring URLs with headers that stop a browser
//! from running or sniffing them, and downloaded from the carrier's own media hosts for
//! inbound MMS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sms_core::MessageId;
use sms_core::mms;
use sms_runtime::fetch::{Credentials, FetchError, Request};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use sms_runtime::fetch::Fetcher;
use sqlx::PgPool;

use crate::error::MediaError;
use crate::send::command::{Attachment, Source};
use crate::store::{self, MediaRow, MediaState};

/// Most bytes fetched for one attachment (the largest total any MMS may have).
pub const MAX_FETCH: u64 = mms::MAX_IMAGE_TOTAL_BYTES;

/// A carrier account whose inbound media we download.
#[derive(Clone)]
pub struct CarrierAccount {
    /// Its auth token (HTTP Basic password).
    pub auth_token: String,
    /// The carrier's own media hosts (`host` or `host:port`): media are downloaded only from
    /// them, and the credentials go only to them.
    pub media_hosts: Vec<String>,
}

/// Media settings.
#[derive(Clone)]
pub struct MediaConfig {
    /// Base URL carriers fetch attachments from.
    pub public_url: String,
    /// Key of the URL signatures (shared by every composer replica).
    pub secret: Vec<u8>,
    /// Carrier accounts by SID, for inbound media.
    pub carriers: HashMap<String, CarrierAccount>,
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConfig")
            .field("public_url", &self.public_url)
            .field("carriers", &self.carriers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MediaConfig {
    fn signature(&self, id: Uuid, expires: i64) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(format!("{id}:{expires}").as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The URL a carrier fetches attachment `id` from, valid until `expires` (unix seconds).
    pub fn url(&self, id: Uuid, expires: i64) -> String {
        format!(
            "{}/media/{id}?expires={expires}&signature={}",
            self.public_url.trim_end_matches('/'),
            self.signature(id, expires)
        )
    }

    fn verify(&self, id: Uuid, expires: i64, signature: &str, now: i64) -> bool {
        expires >= now
            && bool::from(
                self.signature(id, expires)
                    .as_bytes()
                    .ct_eq(signature.as_bytes()),
            )
    }
}

fn fetch_failed(url: &str, e: &FetchError) -> MediaError {
    MediaError::MediaFetch {
        url: url.to_owned(),
        why: e.to_string(),
    }
}

/// Attachments: fetched or taken from the request, checked and stored for sends, downloaded
/// from the carrier for inbound messages, and served to carriers by signed URL.
#[derive(Clone)]
pub struct Media {
    pool: PgPool,
    config: Arc<MediaConfig>,
    fetcher: Fetcher,
}

impl Media {
    /// Attachments kept in `pool`, fetched through `fetcher`.
    pub fn new(pool: PgPool, config: MediaConfig, fetcher: Fetcher) -> Self {
        Media {
            pool,
            config: Arc::new(config),
            fetcher,
        }
    }

    /// How attachment URLs are made and signed.
    pub fn config(&self) -> &Arc<MediaConfig> {
        &self.config
    }

    /// Fetches (where given by URL) and checks attachments; the rows are ready to store.
    pub async fn prepare_media(
        &self,
        organization_id: &str,
        message_id: MessageId,
        attachments: &[Attachment],
    ) -> Result<Vec<MediaRow>, MediaError> {
        let mut contents = Vec::with_capacity(attachments.len());
        for a in attachments {
            let data = match &a.source {
                Source::Bytes(b) => b.clone(),
                Source::Url(url) => {
                    self.fetcher
                        .get(url, &Request::default())
                        .await
                        .map_err(|e| fetch_failed(url, &e))?
                        .bytes
                }
            };
            contents.push(data);
        }
        let checked = mms::check_attachments(
            attachments
                .iter()
                .zip(&contents)
                .map(|(a, d)| (a.content_type.as_str(), d.as_slice())),
        )?;
        Ok(attachments
            .iter()
            .zip(contents)
            .zip(checked)
            .enumerate()
            .map(|(i, ((a, data), m))| MediaRow {
                id: Uuid::new_v4(),
                organization_id: organization_id.to_owned(),
                message_id,
                position: i32::try_from(i).unwrap_or(i32::MAX),
                file_name: file_name(&a.file_name, i, &m.content_type),
                content_type: m.content_type,
                size: i64::try_from(m.size).unwrap_or(i64::MAX),
                data: Some(data),
                state: MediaState::Stored,
                error: None,
            })
            .collect())
    }

    /// Downloads an inbound message's attachments from the carrier's own media hosts (with
    /// its account's credentials, sent only there), retrying a failure that may pass; one that
    /// still fails, or whose content is refused, is recorded as failed.
    pub async fn download_inbound_media(
        &self,
        organization_id: &str,
        message_id: MessageId,
        account_sid: &str,
        media: &[(String, String)],
    ) -> Vec<MediaRow> {
        let account = self.config.carriers.get(account_sid);
        let mut rows = Vec::with_capacity(media.len());
        for (i, (url, declared)) in media.iter().enumerate() {
            let outcome = match account {
                None => Err(format!(
                    "the carrier account {} is not configured",
                    sms_core::text::quote(account_sid)
                )),
                Some(account) => self.download(url, declared, i, account_sid, account).await,
            };
            let id = Uuid::new_v4();
            let position = i32::try_from(i).unwrap_or(i32::MAX);
            rows.push(match outcome {
                Ok((m, bytes)) => MediaRow {
                    id,
                    organization_id: organization_id.to_owned(),
                    message_id,
                    position,
                    file_name: file_name("", i, &m.content_type),
                    content_type: m.content_type,
                    size: i64::try_from(m.size).unwrap_or(i64::MAX),
                    data: Some(bytes),
                    state: MediaState::Stored,
                    error: None,
                },
                Err(error) => {
                    tracing::warn!(url = %sms_core::text::quote(url), %error, "inbound attachment not stored");
                    let content_type = mms::canonical_type(declared);
                    let content_type = if mms::is_allowed_type(&content_type) {
                        content_type
                    } else {
                        "application/octet-stream".to_owned()
                    };
                    MediaRow {
                        id,
                        organization_id: organization_id.to_owned(),
                        message_id,
                        position,
                        file_name: file_name("", i, &content_type),
                        content_type,
                        size: 0,
                        data: None,
                        state: MediaState::Failed,
                        error: Some(error),
                    }
                }
            });
        }
        rows
    }

    async fn download(
        &self,
        url: &str,
        declared: &str,
        index: usize,
        account_sid: &str,
        account: &CarrierAccount,
    ) -> Result<(mms::Media, Vec<u8>), String> {
        let request = Request {
            only_hosts: Some(account.media_hosts.clone()),
            credentials: Some(Credentials {
                user: account_sid.to_owned(),
                password: account.auth_token.clone(),
                hosts: account.media_hosts.clone(),
            }),
        };
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
            }
            match self.fetcher.get(url, &request).await {
                // The content will not change on a retry.
                Ok(f) => {
                    return mms::check_attachment(index, declared, &f.bytes)
                        .map(|m| (m, f.bytes))
                        .map_err(|e| e.to_string());
                }
                Err(e) if e.is_transient() => last = e.to_string(),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(last)
    }

    /// The signed URLs of a message's attachments, valid until two days after `from`.
    pub async fn media_urls(
        &self,
        message_id: MessageId,
        from: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let expires = from + 2 * 24 * 3600;
        Ok(store::media::of_messages(&self.pool, &[message_id])
            .await?
            .into_iter()
            .filter(|m| m.state == MediaState::Stored)
            .map(|m| self.config.url(m.id, expires))
            .collect())
    }
}

/// The name an attachment is stored under: the one given (at most 255 characters), or
/// `attachment-N.<type>`.
fn file_name(given: &str, i: usize, content_type: &str) -> String {
    let given = given.trim();
    if !given.is_empty() {
        return given.chars().take(255).collect();
    }
    let ext = content_type.rsplit('/').next().unwrap_or("bin");
    format!("attachment-{}.{ext}", i + 1)
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

/// `GET /media/{id}?expires=…&signature=…`: the bytes, for whoever holds a valid URL.
pub fn router(app: Media) -> Router {
    Router::new()
        .route("/media/{id}", get(serve))
        .with_state(app)
}

/// A `Content-Disposition` that a browser cannot turn into a header injection: the file name
/// in ASCII letters, digits and `.-_` only.
fn disposition(inline: bool, file_name: &str) -> HeaderValue {
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!("{kind}; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

async fn serve(
    State(app): State<Media>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    let now = chrono::Utc::now().timestamp();
    if !app.config.verify(id, q.expires, &q.signature, now) {
        return (StatusCode::FORBIDDEN, "invalid or expired media URL").into_response();
    }
    match store::media::get(&app.pool, None, id).await {
        Ok(Some(MediaRow {
            data: Some(data),
            content_type,
            file_name,
            ..
        })) => {
            let image = content_type.starts_with("image/");
            let content_type = HeaderValue::from_str(&content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    // The type is the one we checked; a browser must not guess another.
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                    // Nothing in it runs, loads or frames: it is a file, not a page.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static("default-src 'none'; sandbox"),
                    ),
                    (header::CONTENT_DISPOSITION, disposition(image, &file_name)),
                    (
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    ),
                ],
                data,
            )
                .into_response()
        }
        Ok(_) => (StatusCode::NOT_FOUND, "no such media").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "media lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_signed_and_expire() {
        let c = MediaConfig {
            public_url: "https://media.example/".into(),
            secret: b"secret".to_vec(),
            carriers: HashMap::new(),
        };
        let id = Uuid::new_v4();
        let url = c.url(id, 2000);
        assert!(url.starts_with(&format!(
            "https://media.example/media/{id}?expires=2000&signature="
        )));
        let sig = url.rsplit('=').next().unwrap();
        assert!(c.verify(id, 2000, sig, 1999));
        assert!(!c.verify(id, 2000, sig, 2001), "expired");
        assert!(!c.verify(id, 2001, sig, 1999), "tampered expiry");
        assert!(!c.verify(Uuid::new_v4(), 2000, sig, 1999), "another id");
    }

    #[test]
    fn dispositions_cannot_inject() {
        assert_eq!(
            disposition(false, "a\"; b\r\nX: y.pdf"),
            "attachment; filename=\"a___b__X__y.pdf\""
        );
        assert_eq!(
            disposition(true, "photo.jpg"),
            "inline; filename=\"photo.jpg\""
        );
    }
}
