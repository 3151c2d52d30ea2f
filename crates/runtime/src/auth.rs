//! Who a gRPC call acts for: a bearer token per calling system, the organizations that system
//! may act for, the organization and the user. Shared by every service with a gRPC API, so
//! they authenticate alike.

use std::collections::{BTreeSet, HashMap};

use sms_core::text::{self, FieldError, Lines};
use tonic::metadata::MetadataMap;
use tonic_types::{ErrorDetails, StatusExt};

use crate::config::{ConfigError, Env};

/// The `google.rpc.ErrorInfo` domain of our errors.
pub const ERROR_DOMAIN: &str = "sms-platform";

/// Longest organization or user id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Which organizations a calling system may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Organizations {
    /// Any (`*`, given explicitly).
    Any,
    /// These only.
    Only(BTreeSet<String>),
}

impl Organizations {
    /// Whether `organization_id` is one of them.
    pub fn allows(&self, organization_id: &str) -> bool {
        match self {
            Organizations::Any => true,
            Organizations::Only(set) => set.contains(organization_id),
        }
    }
}

/// What a bearer token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The calling system, for logs.
    pub system: String,
    /// The organizations it may act for.
    pub organizations: Organizations,
}

/// Bearer token → grant. Empty: no authentication (development only).
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<String, Grant>);

impl Tokens {
    /// Whether no token is configured (development: calls are not authenticated).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tokens from (token, grant) pairs.
    pub fn new(grants: impl IntoIterator<Item = (String, Grant)>) -> Self {
        Tokens(grants.into_iter().collect())
    }

    fn get(&self, token: &str) -> Option<&Grant> {
        self.0.get(token)
    }
}

/// What a user may do in their organization, as the calling system asserts it in the
/// `x-user-role` metadata (like the user id: the calling system, holding the token, is who
/// vouches for its users).
///
/// * A **member** (the default) acts for themselves: sends from the numbers they own or share
///   through a group, cancels and moves their own scheduled messages, edits their own
///   templates, reads the organization's messages, numbers, groups, settings and usage, checks
///   opt-outs and opts a contact out by hand.
/// * An **administrator** may also do what changes the organization for everyone: the calls in
///   [`ADMIN_METHODS`] (numbers and their rates, groups and their members, settings, webhook
///   endpoints, opting a contact back in, the automatic replies), and cancel, move or edit
///   what other users made. An administrator still sends only as themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// A user of the organization.
    #[default]
    Member,
    /// An administrator of the organization.
    Admin,
}

impl Role {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// The gRPC methods only an administrator may call (by method name: every service's names are
/// distinct, and a test holds this list to the protos).
pub const ADMIN_METHODS: &[&str] = &[
    // NumbersService: what the organization's numbers are, who sends from them, how fast.
    "RentNumber",
    "ImportNumber",
    "AddNumber",
    "ReleaseNumber",
    "SetNumberRate",
    "SetNumberCarrier",
    "CreateGroup",
    "AddGroupMember",
    "RemoveGroupMember",
    // SettingsService: quiet hours and the daily cap, for every send.
    "UpdateSettings",
    // WebhooksService: where every event of the organization goes, and with which secret.
    "CreateWebhookEndpoint",
    "ListWebhookEndpoints",
    "SetWebhookEndpointEnabled",
    "DeleteWebhookEndpoint",
    "RotateWebhookSecret",
    "ListWebhookAttempts",
    "ReplayWebhookEvents",
    // OptOutsService: texting a contact who said STOP again, and what the automatic answers say.
    "RemoveOptOut",
    "SetReplies",
];

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The organization; every query is scoped to it.
    pub organization_id: String,
    /// The user, where the call has one.
    pub user_id: Option<String>,
    /// What the user may do (`x-user-role`; a member when not said).
    pub role: Role,
    /// The calling system (none without authentication).
    pub system: Option<String>,
}

impl Caller {
    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may call `method` at all (see [`ADMIN_METHODS`]).
    pub fn may_call(&self, method: &'static str) -> Result<(), AuthError> {
        if ADMIN_METHODS.contains(&method) && !self.is_admin() {
            tracing::info!(method, user = ?self.user_id, "call refused: administrators only");
            return Err(AuthError::AdminRequired { method });
        }
        Ok(())
    }

    /// Whether the caller may change something `owner` made: its owner, or an administrator.
    pub fn owns_or_administers(&self, owner: &str) -> bool {
        self.is_admin() || self.user_id.as_deref() == Some(owner)
    }
}

/// Why a call is not authenticated or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// No `x-organization-id`.
    #[error("the x-organization-id metadata is required")]
    MissingOrganization,
    /// The token does not grant the organization asked for.
    #[error("this token may not act for organization {}", text::quote(.organization_id))]
    OrganizationNotAllowed {
        /// The organization asked for.
        organization_id: String,
    },
    /// An id in the metadata is too long or holds characters it may not.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// `x-user-role` is neither `member` nor `admin`.
    #[error("x-user-role {} is not a role: use member or admin", text::quote(.0))]
    InvalidRole(String),
    /// The call changes the organization for everyone: administrators only.
    #[error("{method} is for the organization's administrators (x-user-role: admin)")]
    AdminRequired {
        /// The method called.
        method: &'static str,
    },
}

/// The value of metadata `key`, trimmed, if present and not empty; checked like any field.
fn metadata_id(metadata: &MetadataMap, key: &'static str) -> Result<Option<String>, AuthError> {
    let Some(value) = metadata.get(key) else {
        return Ok(None);
    };
    // gRPC's text metadata is printable ASCII; anything else is named, not dropped silently.
    let raw = String::from_utf8_lossy(value.as_bytes());
    let value = raw.trim();
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic() && *c != ' ')
    {
        return Err(FieldError::InvalidCharacter {
            field: key,
            character: c,
            position: i + 1,
        }
        .into());
    }
    text::check(key, value, MAX_ID_LEN, Lines::Single)?;
    Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
}

/// Checks the bearer token (when `tokens` is not empty), reads the organization and user, and
/// checks that the token may act for the organization.
pub fn authenticate(tokens: &Tokens, metadata: &MetadataMap) -> Result<Caller, AuthError> {
    let grant = if tokens.is_empty() {
        None
    } else {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::Unauthenticated)?;
        let grant = tokens.get(token.trim()).ok_or(AuthError::Unauthenticated)?;
        tracing::Span::current().record("system", grant.system.as_str());
        Some(grant)
    };
    let organization_id =
        metadata_id(metadata, "x-organization-id")?.ok_or(AuthError::MissingOrganization)?;
    let user_id = metadata_id(metadata, "x-user-id")?;
    let role = match metadata_id(metadata, "x-user-role")?.as_deref() {
        None | Some("member") => Role::Member,
        Some("admin") => Role::Admin,
        Some(other) => return Err(AuthError::InvalidRole(other.to_owned())),
    };
    if let Some(grant) = grant
        && !grant.organizations.allows(&organization_id)
    {
        tracing::warn!(system = %grant.system, "token used for an organization it does not grant");
        return Err(AuthError::OrganizationNotAllowed { organization_id });
    }
    Ok(Caller {
        organization_id,
        user_id,
        role,
        system: grant.map(|g| g.system.clone()),
    })
}

/// [`authenticate`], then whether the caller may call `method` ([`Caller::may_call`]).
pub fn authorize(
    tokens: &Tokens,
    metadata: &MetadataMap,
    method: &'static str,
) -> Result<Caller, AuthError> {
    let caller = authenticate(tokens, metadata)?;
    caller.may_call(method)?;
    Ok(caller)
}

/// `SMS_API_TOKENS`: `system:token:organizations` entries, comma-separated, where
/// organizations is `*` (any, explicitly) or `org-a|org-b`. Empty only in development mode
/// (`development`), where calls are not authenticated.
pub fn tokens_from_env(env: &Env<'_>, development: bool) -> Result<Tokens, ConfigError> {
    let bad = |why: &str| ConfigError::new("SMS_API_TOKENS", "(hidden)", why);
    let mut tokens = HashMap::new();
    for entry in env
        .string_or("SMS_API_TOKENS", "")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(system), Some(token), Some(orgs)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                "expected system:token:organizations entries (organizations: * or org-a|org-b)",
            ));
        };
        let (system, token, orgs) = (system.trim(), token.trim(), orgs.trim());
        if system.is_empty() {
            return Err(bad("a system name is empty"));
        }
        if token.len() < 16 {
            return Err(bad("tokens must be at least 16 characters"));
        }
        let organizations = if orgs == "*" {
            Organizations::Any
        } else {
            let set: BTreeSet<String> = orgs
                .split('|')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            if set.is_empty() {
                return Err(bad(
                    "each token names the organizations it may act for (* for any)",
                ));
            }
            Organizations::Only(set)
        };
        let grant = Grant {
            system: system.to_owned(),
            organizations,
        };
        if tokens.insert(token.to_owned(), grant).is_some() {
            return Err(bad("a token appears twice"));
        }
    }
    if tokens.is_empty() && !development {
        return Err(ConfigError::new(
            "SMS_API_TOKENS",
            "",
            "no API tokens: set system:token:organizations entries, or SMS_DEV_MODE=true to run \
             without authentication (development only)",
        ));
    }
    Ok(Tokens(tokens))
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

/// A field that cannot be used, as a gRPC status: `INVALID_ARGUMENT`, reason `FIELD_TOO_LONG`
/// or `INVALID_CHARACTER`, and the field (and the limit or position) in the metadata.
pub fn field_status(e: &FieldError) -> tonic::Status {
    status(
        tonic::Code::InvalidArgument,
        e.to_string(),
        e.reason(),
        field_metadata(e),
    )
}

/// The `ErrorInfo` metadata of a field error.
pub fn field_metadata(e: &FieldError) -> HashMap<String, String> {
    let mut m = HashMap::from([("field".to_owned(), e.field().to_owned())]);
    match e {
        FieldError::TooLong { length, max, .. } => {
            m.insert("length".into(), length.to_string());
            m.insert("limit".into(), max.to_string());
        }
        FieldError::InvalidCharacter {
            character,
            position,
            ..
        } => {
            m.insert("character".into(), format!("U+{:04X}", *character as u32));
            m.insert("position".into(), position.to_string());
        }
    }
    m
}

impl AuthError {
    /// The gRPC code.
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::Unauthenticated => tonic::Code::Unauthenticated,
            AuthError::MissingOrganization | AuthError::Field(_) | AuthError::InvalidRole(_) => {
                tonic::Code::InvalidArgument
            }
            AuthError::OrganizationNotAllowed { .. } | AuthError::AdminRequired { .. } => {
                tonic::Code::PermissionDenied
            }
        }
    }

    /// The machine-readable `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated => "UNAUTHENTICATED",
            AuthError::MissingOrganization => "MISSING_ORGANIZATION",
            AuthError::OrganizationNotAllowed { .. } => "ORGANIZATION_NOT_ALLOWED",
            AuthError::Field(e) => e.reason(),
            AuthError::InvalidRole(_) => "INVALID_ROLE",
            AuthError::AdminRequired { .. } => "ADMIN_REQUIRED",
        }
    }

    /// The `ErrorInfo` metadata.
    pub fn metadata(&self) -> HashMap<String, String> {
        match self {
            AuthError::Field(e) => field_metadata(e),
            AuthError::InvalidRole(_) => HashMap::from([("field".into(), "x-user-role".into())]),
            AuthError::AdminRequired { method } => HashMap::from([
                ("method".into(), (*method).to_owned()),
                ("required_role".into(), Role::Admin.as_str().to_owned()),
            ]),
            AuthError::Unauthenticated
            | AuthError::MissingOrganization
            | AuthError::OrganizationNotAllowed { .. } => HashMap::new(),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            // Someone without a valid token, or with one for another organization.
            AuthError::Unauthenticated | AuthError::OrganizationNotAllowed { .. } => {
                tracing::warn!(reason = e.reason(), "call refused");
            }
            _ => tracing::info!(reason = e.reason(), error = %e, "request refused"),
        }
        status(e.code(), e.to_string(), e.reason(), e.metadata())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_tokens(value: &str, development: bool) -> Result<Tokens, ConfigError> {
        let pairs = [("SMS_API_TOKENS", value)];
        tokens_from_env(&Env::from_pairs(&pairs), development)
    }

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn tokens_name_their_organizations() {
        let tokens = env_tokens(
            "crm:0123456789abcdef:org-a|org-b, ops:fedcba9876543210:*",
            false,
        )
        .unwrap();
        let call = |token: &str, org: &str| {
            authenticate(
                &tokens,
                &metadata(&[
                    ("authorization", &format!("Bearer {token}")),
                    ("x-organization-id", org),
                ]),
            )
        };
        assert_eq!(
            call("0123456789abcdef", "org-a").unwrap().system.as_deref(),
            Some("crm")
        );
        assert_eq!(
            call("0123456789abcdef", "org-c").unwrap_err(),
            AuthError::OrganizationNotAllowed {
                organization_id: "org-c".into()
            }
        );
        assert!(call("fedcba9876543210", "anything").is_ok());
        assert_eq!(
            call("wrong-token-00000", "org-a").unwrap_err(),
            AuthError::Unauthenticated
        );
    }

    #[test]
    fn configuration_errors() {
        for bad in [
            "crm:0123456789abcdef",
            "crm:short:*",
            ":0123456789abcdef:*",
            "crm:0123456789abcdef:",
        ] {
            assert!(env_tokens(bad, false).is_err(), "{bad}");
        }
        assert!(
            env_tokens("", false).is_err(),
            "tokens are required outside development"
        );
        assert!(env_tokens("", true).unwrap().is_empty());
    }

    #[test]
    fn roles_are_said_by_the_calling_system() {
        let none = Tokens::default();
        let call = |role: Option<&str>| {
            let mut pairs = vec![("x-organization-id", "org-a"), ("x-user-id", "ana")];
            if let Some(r) = role {
                pairs.push(("x-user-role", r));
            }
            authenticate(&none, &metadata(&pairs))
        };
        assert_eq!(call(None).unwrap().role, Role::Member);
        assert_eq!(call(Some("member")).unwrap().role, Role::Member);
        let admin = call(Some(" admin ")).unwrap();
        assert!(admin.is_admin());
        assert!(admin.may_call("AddNumber").is_ok());
        assert_eq!(call(Some("root")).unwrap_err().reason(), "INVALID_ROLE");
        let member = call(None).unwrap();
        let refused = member.may_call("AddGroupMember").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert_eq!(refused.reason(), "ADMIN_REQUIRED");
        assert!(member.may_call("SendMessage").is_ok());
        assert!(member.owns_or_administers("ana"));
        assert!(!member.owns_or_administers("bo"));
        assert!(admin.owns_or_administers("bo"));
    }

    #[test]
    fn ids_are_checked_like_fields() {
        let none = Tokens::default();
        let long = "o".repeat(MAX_ID_LEN + 1);
        let e = authenticate(&none, &metadata(&[("x-organization-id", &long)])).unwrap_err();
        assert_eq!(e.reason(), "FIELD_TOO_LONG");
        assert_eq!(e.metadata()["field"], "x-organization-id");
        let missing = authenticate(&none, &metadata(&[])).unwrap_err();
        assert_eq!(missing, AuthError::MissingOrganization);
        let ok = authenticate(&none, &metadata(&[("x-organization-id", " org-a ")])).unwrap();
        assert_eq!(ok.organization_id, "org-a");
    }
}
