//! How composer calls fail: one error type per capability ([`SendError`], [`TemplatesError`],
//! [`SettingsError`], [`ContactsError`], [`MediaError`], [`MessagesError`]), each mapped to a
//! gRPC status with a machine-readable `google.rpc.ErrorInfo` reason in its own file, over the
//! refusals every call shares ([`Common`]). A capability that calls another wraps the other's
//! error and answers with its status. Depends on nothing else in the composer.

use std::collections::HashMap;

use sms_core::text::{FieldError, quote};
use tonic::Code;

mod contacts;
mod media;
mod messages;
mod send;
mod settings;
mod templates;

pub use contacts::ContactsError;
pub use media::MediaError;
pub use messages::MessagesError;
pub use send::SendError;
pub use settings::SettingsError;
pub use templates::TemplatesError;

/// What any call can be refused for: who calls, the shape of its fields, ids and pages, what
/// it names not being there, and the database failing.
#[derive(Debug, thiserror::Error)]
pub enum Common {
    /// No `x-user-id` where one is needed.
    #[error("the x-user-id metadata is required")]
    MissingUser,
    /// A request field is too long or holds a character it may not.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A map or list field has more entries than allowed.
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
    /// Nothing with that id in this organization (or not visible to the user).
    #[error("{0} not found")]
    NotFound(Entity),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Kinds of things that can be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A message.
    Message,
    /// A template.
    Template,
    /// A number.
    Number,
    /// A registered contact.
    Contact,
    /// An attachment of a message.
    Attachment,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Message => "message",
            Entity::Template => "template",
            Entity::Number => "number",
            Entity::Contact => "contact",
            Entity::Attachment => "attachment",
        })
    }
}

impl sms_runtime::rpc::Refusal for Common {
    fn code(&self) -> Code {
        match self {
            Common::MissingUser
            | Common::Field(_)
            | Common::TooManyEntries { .. }
            | Common::InvalidId(_)
            | Common::InvalidPageToken => Code::InvalidArgument,
            Common::NotFound(_) => Code::NotFound,
            Common::Database(e) if sms_runtime::db::is_unavailable(e) => Code::Unavailable,
            Common::Database(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Common::MissingUser => "MISSING_USER",
            Common::Field(e) => e.reason(),
            Common::TooManyEntries { .. } => "TOO_MANY_ENTRIES",
            Common::InvalidId(_) => "INVALID_ID",
            Common::InvalidPageToken => "INVALID_PAGE_TOKEN",
            Common::NotFound(Entity::Message) => "MESSAGE_NOT_FOUND",
            Common::NotFound(Entity::Template) => "TEMPLATE_NOT_FOUND",
            Common::NotFound(Entity::Number) => "NUMBER_NOT_FOUND",
            Common::NotFound(Entity::Contact) => "CONTACT_NOT_FOUND",
            Common::NotFound(Entity::Attachment) => "ATTACHMENT_NOT_FOUND",
            Common::Database(_) => "INTERNAL",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Common::Field(e) => sms_runtime::auth::field_metadata(e),
            Common::TooManyEntries { field, count, max } => pairs(vec![
                ("field", (*field).to_owned()),
                ("entries", count.to_string()),
                ("limit", max.to_string()),
            ]),
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            Common::Database(inner) => Some(inner),
            _ => None,
        }
    }
}

/// A body's reason: sends and previews refuse bodies alike.
fn body_reason(e: &sms_core::BodyError) -> &'static str {
    match e {
        sms_core::BodyError::Empty => "BODY_EMPTY",
        sms_core::BodyError::TooLong { .. } => "BODY_TOO_LONG",
    }
}

/// A body's facts: its length and the limit.
fn body_metadata(e: &sms_core::BodyError) -> HashMap<String, String> {
    match e {
        sms_core::BodyError::Empty => HashMap::new(),
        sms_core::BodyError::TooLong { chars } => pairs(vec![
            ("characters", chars.to_string()),
            ("limit", sms_core::MAX_BODY_CHARS.to_string()),
        ]),
    }
}

/// `ErrorInfo.metadata` from its pairs.
fn pairs(pairs: Vec<(&str, String)>) -> HashMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// What every capability's error has: its shared refusals (and anything that converts into
/// them: a field, the database) by `?`, its reason as a method, and its gRPC status.
macro_rules! capability_error {
    ($name:ident) => {
        impl From<sqlx::Error> for $name {
            fn from(e: sqlx::Error) -> Self {
                $name::Common(crate::error::Common::Database(e))
            }
        }

        impl From<sms_core::text::FieldError> for $name {
            fn from(e: sms_core::text::FieldError) -> Self {
                $name::Common(crate::error::Common::Field(e))
            }
        }

        impl From<crate::error::Entity> for $name {
            /// Not found.
            fn from(e: crate::error::Entity) -> Self {
                $name::Common(crate::error::Common::NotFound(e))
            }
        }

        impl $name {
            /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
            pub fn reason(&self) -> &'static str {
                sms_runtime::rpc::Refusal::reason(self)
            }
        }

        impl From<$name> for tonic::Status {
            fn from(e: $name) -> Self {
                sms_runtime::rpc::refused(&e)
            }
        }
    };
}
pub(crate) use capability_error;
