//! Who a gRPC call acts for: a bearer token per calling system, the organization and the user.
//! Shared by every service with a gRPC API, so they authenticate alike.

use std::collections::HashMap;

use tonic::metadata::MetadataMap;
use tonic_types::{ErrorDetails, StatusExt};

use crate::config::{ConfigError, Env};

/// The `google.rpc.ErrorInfo` domain of our errors.
pub const ERROR_DOMAIN: &str = "sms-platform";

/// Longest organization or user id accepted.
const MAX_ID_LEN: usize = 128;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The organization; every query is scoped to it.
    pub organization_id: String,
    /// The user, where the call has one.
    pub user_id: Option<String>,
}

/// Why a call is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// No `x-organization-id`.
    #[error("the x-organization-id metadata is required")]
    MissingOrganization,
}

fn metadata_str<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Checks the bearer token (when `tokens` is not empty) and reads the organization and user.
pub fn authenticate(
    tokens: &HashMap<String, String>,
    metadata: &MetadataMap,
) -> Result<Caller, AuthError> {
    if !tokens.is_empty() {
        let token = metadata_str(metadata, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::Unauthenticated)?;
        let system = tokens.get(token.trim()).ok_or(AuthError::Unauthenticated)?;
        tracing::Span::current().record("system", system.as_str());
    }
    let organization_id = metadata_str(metadata, "x-organization-id")
        .filter(|o| o.len() <= MAX_ID_LEN)
        .ok_or(AuthError::MissingOrganization)?
        .to_owned();
    let user_id = metadata_str(metadata, "x-user-id")
        .filter(|u| u.len() <= MAX_ID_LEN)
        .map(str::to_owned);
    Ok(Caller {
        organization_id,
        user_id,
    })
}

/// `SMS_API_TOKENS`: `system:token` pairs, comma-separated (token → system).
pub fn tokens_from_env(env: &Env<'_>) -> Result<HashMap<String, String>, ConfigError> {
    let mut tokens = HashMap::new();
    for pair in env
        .string_or("SMS_API_TOKENS", "")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (system, token) = pair
            .split_once(':')
            .filter(|(s, t)| !s.trim().is_empty() && t.trim().len() >= 16)
            .ok_or_else(|| {
                ConfigError::new(
                    "SMS_API_TOKENS",
                    "(hidden)",
                    "expected system:token pairs, tokens of at least 16 characters",
                )
            })?;
        tokens.insert(token.trim().to_owned(), system.trim().to_owned());
    }
    Ok(tokens)
}

/// A gRPC status with a machine-readable `ErrorInfo` reason and metadata.
pub fn status(
    code: tonic::Code,
    message: impl Into<String>,
    reason: &str,
    metadata: HashMap<String, String>,
) -> tonic::Status {
    tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

impl AuthError {
    /// The gRPC code.
    pub fn code(self) -> tonic::Code {
        match self {
            AuthError::Unauthenticated => tonic::Code::Unauthenticated,
            AuthError::MissingOrganization => tonic::Code::InvalidArgument,
        }
    }

    /// The machine-readable `ErrorInfo` reason.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Unauthenticated => "UNAUTHENTICATED",
            AuthError::MissingOrganization => "MISSING_ORGANIZATION",
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        status(e.code(), e.to_string(), e.reason(), HashMap::new())
    }
}
