//! Every way a call of the feed's services can fail, and the one mapping to gRPC statuses with
//! a machine-readable `google.rpc.ErrorInfo` reason (the same reasons the composer gave these
//! refusals before the feed had a crate of its own).

use std::collections::HashMap;

use sms_core::text::{FieldError, quote};
use tonic::Code;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A request field is too long or holds a character it may not.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A list field has more entries than allowed.
    #[error("{field} has {count} entries; at most {max} are allowed")]
    TooManyEntries {
        /// The field.
        field: &'static str,
        /// Entries given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A malformed id.
    #[error("{} is not a valid id", quote(.0))]
    InvalidId(String),
    /// The page token is not one we issued.
    #[error("invalid page token")]
    InvalidPageToken,
    /// A feed cursor that is not one of ours.
    #[error("the cursor is malformed; resume from the cursor of an event you received{}", resume(.resume_from))]
    InvalidCursor {
        /// The oldest cursor kept (empty: the feed starts at its beginning).
        resume_from: String,
    },
    /// A feed cursor of no event in this organization's feed.
    #[error("no event of this organization's feed has this cursor{}", resume(.resume_from))]
    CursorUnknown {
        /// The oldest cursor kept.
        resume_from: String,
    },
    /// A feed cursor older than the feed keeps.
    #[error("the feed no longer holds events this old{}", resume(.resume_from))]
    CursorExpired {
        /// The oldest cursor kept.
        resume_from: String,
    },
    /// Nothing with that id in this organization.
    #[error("{0} not found")]
    NotFound(Entity),
    /// A webhook endpoint URL we would not POST to.
    #[error("{} cannot be a webhook endpoint: {why}", quote(.url))]
    InvalidWebhookUrl {
        /// The URL.
        url: String,
        /// Why not.
        why: String,
    },
    /// An event type that does not exist.
    #[error(
        "{} is not an event type; the types are message.status, message.inbound, \
         optout.changed and number.changed",
        quote(.given)
    )]
    UnknownEventType {
        /// The type asked for (its first 64 characters).
        given: String,
        /// The types there are.
        known: &'static [&'static str],
    },
    /// The organization already has an endpoint with this URL.
    #[error("a webhook endpoint for {} already exists", quote(.0))]
    WebhookEndpointExists(String),
    /// The organization has as many endpoints as allowed.
    #[error("an organization may have at most {max} webhook endpoints")]
    TooManyWebhookEndpoints {
        /// The limit.
        max: i64,
    },
    /// A replay names neither one event nor all failed deliveries, or both.
    #[error("name one event_id to replay, or set all_failed (not both)")]
    InvalidReplay,
    /// Something the call needs is not available now (the system's random source).
    #[error("not available now: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn resume(from: &str) -> String {
    if from.is_empty() {
        "; subscribe with from_start to read it from its beginning".to_owned()
    } else {
        format!("; the oldest event kept follows cursor {from} (or subscribe with from_start)")
    }
}

/// Kinds of things that can be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A webhook endpoint.
    WebhookEndpoint,
    /// An event of the feed.
    Event,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::WebhookEndpoint => "webhook endpoint",
            Entity::Event => "event (it may be older than the feed keeps)",
        })
    }
}

impl FeedError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            FeedError::Field(e) => e.reason(),
            FeedError::TooManyEntries { .. } => "TOO_MANY_ENTRIES",
            FeedError::InvalidId(_) => "INVALID_ID",
            FeedError::InvalidPageToken => "INVALID_PAGE_TOKEN",
            FeedError::InvalidCursor { .. } => "INVALID_CURSOR",
            FeedError::CursorUnknown { .. } => "CURSOR_UNKNOWN",
            FeedError::CursorExpired { .. } => "CURSOR_EXPIRED",
            FeedError::NotFound(Entity::WebhookEndpoint) => "WEBHOOK_ENDPOINT_NOT_FOUND",
            FeedError::NotFound(Entity::Event) => "EVENT_NOT_FOUND",
            FeedError::InvalidWebhookUrl { .. } => "INVALID_WEBHOOK_URL",
            FeedError::UnknownEventType { .. } => "UNKNOWN_EVENT_TYPE",
            FeedError::WebhookEndpointExists(_) => "WEBHOOK_ENDPOINT_EXISTS",
            FeedError::TooManyWebhookEndpoints { .. } => "TOO_MANY_WEBHOOK_ENDPOINTS",
            FeedError::InvalidReplay => "INVALID_REPLAY",
            FeedError::Unavailable(_) => "UNAVAILABLE",
            FeedError::Database(_) => "INTERNAL",
        }
    }

    /// Facts a caller can act on (`ErrorInfo.metadata`): limits, positions.
    pub fn metadata(&self) -> HashMap<String, String> {
        let pairs: Vec<(&str, String)> = match self {
            FeedError::Field(e) => return sms_runtime::auth::field_metadata(e),
            FeedError::TooManyEntries { field, count, max } => vec![
                ("field", (*field).to_owned()),
                ("entries", count.to_string()),
                ("limit", max.to_string()),
            ],
            FeedError::InvalidCursor { resume_from }
            | FeedError::CursorUnknown { resume_from }
            | FeedError::CursorExpired { resume_from } => {
                vec![("resume_from", resume_from.clone())]
            }
            FeedError::InvalidWebhookUrl { why, .. } => {
                vec![("field", "url".to_owned()), ("why", why.clone())]
            }
            FeedError::UnknownEventType { given, known } => vec![
                ("field", "event_types".to_owned()),
                ("event_type", given.clone()),
                ("known", known.join(",")),
            ],
            FeedError::TooManyWebhookEndpoints { max } => vec![("limit", max.to_string())],
            FeedError::InvalidId(_)
            | FeedError::InvalidPageToken
            | FeedError::NotFound(_)
            | FeedError::WebhookEndpointExists(_)
            | FeedError::InvalidReplay
            | FeedError::Unavailable(_)
            | FeedError::Database(_) => Vec::new(),
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            FeedError::Field(_)
            | FeedError::TooManyEntries { .. }
            | FeedError::InvalidId(_)
            | FeedError::InvalidPageToken
            | FeedError::InvalidCursor { .. }
            | FeedError::CursorUnknown { .. }
            | FeedError::InvalidWebhookUrl { .. }
            | FeedError::UnknownEventType { .. }
            | FeedError::InvalidReplay => Code::InvalidArgument,
            FeedError::CursorExpired { .. } => Code::OutOfRange,
            FeedError::NotFound(_) => Code::NotFound,
            FeedError::WebhookEndpointExists(_) => Code::AlreadyExists,
            FeedError::TooManyWebhookEndpoints { .. } => Code::ResourceExhausted,
            FeedError::Unavailable(_) => Code::Unavailable,
            FeedError::Database(e) if sms_runtime::db::is_unavailable(e) => Code::Unavailable,
            FeedError::Database(_) => Code::Internal,
        }
    }
}

impl sms_runtime::rpc::Refusal for FeedError {
    fn code(&self) -> Code {
        FeedError::code(self)
    }

    fn reason(&self) -> &'static str {
        FeedError::reason(self)
    }

    fn metadata(&self) -> HashMap<String, String> {
        FeedError::metadata(self)
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            FeedError::Database(inner) => Some(inner),
            _ => None,
        }
    }
}

impl From<FeedError> for tonic::Status {
    fn from(e: FeedError) -> Self {
        sms_runtime::rpc::refused(&e)
    }
}

pub(crate) use sms_runtime::db::on_constraint;
