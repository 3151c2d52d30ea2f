//! MMS attachments: checked with sms-core, stored with their message, served to carriers at
//! signed, expiring URLs, and downloaded from carriers for inbound MMS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sms_core::mms::{self, MmsError};
use sms_proto::v1::NewAttachment;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::App;
use crate::error::ComposerError;
use crate::store::{self, MediaRow};

/// Most bytes fetched for one attachment (the largest total any MMS may have, plus one).
const MAX_FETCH: u64 = mms::MAX_IMAGE_TOTAL_BYTES + 1;

/// Media settings.
#[derive(Clone)]
pub struct MediaConfig {
    /// Base URL carriers fetch attachments from.
    pub public_url: String,
    /// Key of the URL signatures (shared by every composer replica).
    pub secret: Vec<u8>,
    /// Whether attachment URLs may be plain http (tests and local development only).
    pub allow_http: bool,
    /// Carrier accounts: SID → auth token, for downloading inbound media.
    pub accounts: HashMap<String, String>,
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConfig")
            .field("public_url", &self.public_url)
            .field("allow_http", &self.allow_http)
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

impl App {
    /// Fetches (where given by URL) and checks attachments; the rows are ready to store.
    pub async fn prepare_media(
        &self,
        organization_id: &str,
        message_id: Uuid,
        attachments: &[NewAttachment],
    ) -> Result<Vec<MediaRow>, ComposerError> {
        if attachments.len() > mms::MAX_ATTACHMENTS {
            return Err(MmsError::TooManyAttachments {
                count: attachments.len(),
            }
            .into());
        }
        let mut contents = Vec::with_capacity(attachments.len());
        for a in attachments {
            let data = if a.url.trim().is_empty() {
                a.data.clone()
            } else {
                self.fetch(a.url.trim()).await?
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
                state: "stored".into(),
                error: None,
            })
            .collect())
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, ComposerError> {
        let fail = |why: String| ComposerError::MediaFetch {
            url: url.to_owned(),
            why,
        };
        let allowed =
            url.starts_with("https://") || (self.media.allow_http && url.starts_with("http://"));
        if !allowed {
            return Err(fail("only https URLs are fetched".into()));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        read_limited(response).await.map_err(fail)
    }

    /// Downloads an inbound message's attachments from the carrier (with its account's
    /// credentials), retrying each a few times; one that still fails is recorded as failed.
    pub async fn download_inbound_media(
        &self,
        organization_id: &str,
        message_id: Uuid,
        account_sid: &str,
        media: &[(String, String)],
    ) -> Vec<MediaRow> {
        let token = self.media.accounts.get(account_sid).cloned();
        let mut rows = Vec::with_capacity(media.len());
        for (i, (url, declared)) in media.iter().enumerate() {
            let mut last_error = String::new();
            let mut stored = None;
            for attempt in 0..3u32 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
                }
                let mut request = self.http.get(url);
                if let Some(token) = &token {
                    request = request.basic_auth(account_sid, Some(token));
                }
                let outcome = match request.send().await {
                    Ok(r) if r.status().is_success() => read_limited(r).await,
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(bytes) => match mms::check_attachment(i, declared, &bytes) {
                        Ok(m) => {
                            stored = Some((m, bytes));
                            break;
                        }
                        // The content will not change on a retry.
                        Err(e) => {
                            last_error = e.to_string();
                            break;
                        }
                    },
                    Err(e) => last_error = e,
                }
            }
            let id = Uuid::new_v4();
            let position = i32::try_from(i).unwrap_or(i32::MAX);
            rows.push(match stored {
                Some((m, bytes)) => MediaRow {
                    id,
                    organization_id: organization_id.to_owned(),
                    message_id,
                    position,
                    file_name: file_name("", i, &m.content_type),
                    content_type: m.content_type,
                    size: i64::try_from(m.size).unwrap_or(i64::MAX),
                    data: Some(bytes),
                    state: "stored".into(),
                    error: None,
                },
                None => {
                    tracing::warn!(%url, error = %last_error, "inbound attachment not downloaded");
                    MediaRow {
                        id,
                        organization_id: organization_id.to_owned(),
                        message_id,
                        position,
                        file_name: file_name("", i, declared),
                        content_type: mms::canonical_type(declared),
                        size: 0,
                        data: None,
                        state: "failed".into(),
                        error: Some(last_error),
                    }
                }
            });
        }
        rows
    }

    /// The signed URLs of a message's attachments, valid until two days after `from`.
    pub async fn media_urls(
        &self,
        message_id: Uuid,
        from: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let expires = from + 2 * 24 * 3600;
        Ok(store::media_of(&self.pool, &[message_id])
            .await?
            .into_iter()
            .filter(|m| m.state == "stored")
            .map(|m| self.media.url(m.id, expires))
            .collect())
    }
}

fn file_name(given: &str, i: usize, content_type: &str) -> String {
    let given = given.trim();
    if !given.is_empty() {
        return given.chars().take(255).collect();
    }
    let ext = content_type.rsplit('/').next().unwrap_or("bin");
    format!("attachment-{}.{ext}", i + 1)
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > MAX_FETCH {
            return Err(format!("larger than {} bytes", MAX_FETCH - 1));
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

/// `GET /media/{id}?expires=…&signature=…`: the bytes, for whoever holds a valid URL.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/media/{id}", get(serve))
        .with_state(app)
}

async fn serve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    let now = chrono::Utc::now().timestamp();
    if !app.media.verify(id, q.expires, &q.signature, now) {
        return (StatusCode::FORBIDDEN, "invalid or expired media URL").into_response();
    }
    match store::media(&app.pool, None, id).await {
        Ok(Some(MediaRow {
            data: Some(data),
            content_type,
            ..
        })) => ([(header::CONTENT_TYPE, content_type)], data).into_response(),
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
            allow_http: false,
            accounts: HashMap::new(),
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
}
