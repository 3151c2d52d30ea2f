//! Every way a call about numbers, groups or renting can fail, and the one mapping to gRPC
//! statuses with a machine-readable `google.rpc.ErrorInfo` reason (the same reasons the
//! composer gave these refusals before numbers had a crate of their own).

use std::collections::HashMap;

use sms_core::PhoneError;
use sms_core::text::{FieldError, quote};
use tonic::Code;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum NumbersError {
    /// No `x-user-id` where one is needed.
    #[error("the x-user-id metadata is required")]
    MissingUser,
    /// A request field is too long or holds a character it may not.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A number in a country we do not serve.
    #[error("we do not send SMS to {region} numbers")]
    UnsupportedCountry {
        /// The number's region.
        region: String,
    },
    /// A number to add is not valid.
    #[error("invalid number: {0}")]
    InvalidNumber(PhoneError),
    /// A number is already rented (by this or another organization).
    #[error("{0} is already in use")]
    NumberTaken(String),
    /// A number needs exactly one owner.
    #[error("a number needs an owner: a user or a group")]
    MissingOwner,
    /// A malformed id.
    #[error("{} is not a valid id", quote(.0))]
    InvalidId(String),
    /// Nothing with that id in this organization.
    #[error("{0} not found")]
    NotFound(Entity),
    /// A name is required.
    #[error("a name is required")]
    MissingName,
    /// A group with that name exists.
    #[error("a group named {} already exists", quote(.0))]
    GroupNameTaken(String),
    /// A send rate or burst that cannot be used.
    #[error("{0}")]
    Rate(#[from] sms_core::rate::RateError),
    /// Searching, renting and importing numbers need the carrier's account.
    #[error(
        "no carrier account is configured for renting numbers (SMS_TWILIO_ACCOUNT_SID, \
         SMS_TWILIO_AUTH_TOKEN and SMS_PUBLIC_URL)"
    )]
    CarrierNotConfigured,
    /// The carrier could not be asked, or did not answer; retrying is safe.
    #[error("the carrier is not available now ({0}); try again: retrying is safe")]
    CarrierUnavailable(String),
    /// The carrier said no.
    #[error("the carrier refused: {message}")]
    CarrierRefused {
        /// Its error code.
        code: Option<u32>,
        /// Its words.
        message: String,
    },
    /// Not an ISO country code.
    #[error("{} is not a country code (ISO 3166-1, such as US or GB)", quote(.0))]
    InvalidCountry(String),
    /// A carrier connection the platform does not have.
    #[error("{} is not a carrier connection of this platform; it has {}", quote(.name), .known.join(", "))]
    UnknownCarrierConnection {
        /// What was asked for.
        name: String,
        /// The connections there are.
        known: Vec<String>,
    },
    /// A number type this API does not know.
    #[error("{0} is not a number type; the types are local, mobile and toll_free")]
    UnknownNumberType(i32),
    /// A bad area code.
    #[error("invalid area code {}: {why}", quote(.area_code))]
    InvalidAreaCode {
        /// As given.
        area_code: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A bad `contains` pattern.
    #[error("invalid pattern {}: {why}", quote(.pattern))]
    InvalidPattern {
        /// As given.
        pattern: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The number cannot be rented (any more).
    #[error("{number} is not available for rent: {why}")]
    NumberUnavailable {
        /// E.164.
        number: String,
        /// Why.
        why: String,
    },
    /// A voice-only number asked for without `allow_voice_only`.
    #[error(
        "{0} cannot send or receive SMS (the carrier lists it as voice-only); set \
         allow_voice_only to rent it anyway"
    )]
    VoiceOnlyNumber(String),
    /// Import of a number the carrier account does not hold.
    #[error("the carrier account does not hold {0}; rent it, or import a number it holds")]
    NotAtCarrier(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Kinds of things that can be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A number.
    Number,
    /// A group.
    Group,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Number => "number",
            Entity::Group => "group",
        })
    }
}

impl NumbersError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            NumbersError::MissingUser => "MISSING_USER",
            NumbersError::Field(e) => e.reason(),
            NumbersError::UnsupportedCountry { .. } => "UNSUPPORTED_COUNTRY",
            NumbersError::InvalidNumber(_) => "INVALID_NUMBER",
            NumbersError::NumberTaken(_) => "NUMBER_ALREADY_EXISTS",
            NumbersError::MissingOwner => "MISSING_OWNER",
            NumbersError::InvalidId(_) => "INVALID_ID",
            NumbersError::NotFound(Entity::Number) => "NUMBER_NOT_FOUND",
            NumbersError::NotFound(Entity::Group) => "GROUP_NOT_FOUND",
            NumbersError::MissingName => "MISSING_NAME",
            NumbersError::GroupNameTaken(_) => "GROUP_ALREADY_EXISTS",
            NumbersError::Rate(sms_core::rate::RateError::PerSecond(_)) => "INVALID_SEND_RATE",
            NumbersError::Rate(sms_core::rate::RateError::Burst(_)) => "INVALID_SEND_BURST",
            NumbersError::CarrierNotConfigured => "CARRIER_NOT_CONFIGURED",
            NumbersError::CarrierUnavailable(_) => "CARRIER_UNAVAILABLE",
            NumbersError::CarrierRefused { .. } => "CARRIER_REFUSED",
            NumbersError::InvalidCountry(_) => "INVALID_COUNTRY",
            NumbersError::UnknownCarrierConnection { .. } => "UNKNOWN_CARRIER_CONNECTION",
            NumbersError::UnknownNumberType(_) => "UNKNOWN_NUMBER_TYPE",
            NumbersError::InvalidAreaCode { .. } => "INVALID_AREA_CODE",
            NumbersError::InvalidPattern { .. } => "INVALID_PATTERN",
            NumbersError::NumberUnavailable { .. } => "NUMBER_UNAVAILABLE",
            NumbersError::VoiceOnlyNumber(_) => "VOICE_ONLY_NUMBER",
            NumbersError::NotAtCarrier(_) => "NUMBER_NOT_AT_CARRIER",
            NumbersError::Database(_) => "INTERNAL",
        }
    }

    /// Facts a caller can act on (`ErrorInfo.metadata`).
    pub fn metadata(&self) -> HashMap<String, String> {
        let pairs: Vec<(&str, String)> = match self {
            NumbersError::Field(e) => return sms_runtime::auth::field_metadata(e),
            NumbersError::UnsupportedCountry { region } => vec![("region", region.clone())],
            NumbersError::Rate(e) => vec![(
                "field",
                match e {
                    sms_core::rate::RateError::PerSecond(_) => "send_rate",
                    sms_core::rate::RateError::Burst(_) => "send_burst",
                }
                .to_owned(),
            )],
            NumbersError::CarrierRefused { code, .. } => {
                vec![(
                    "carrier_code",
                    code.map(|c| c.to_string()).unwrap_or_default(),
                )]
            }
            NumbersError::InvalidCountry(_) => vec![("field", "country".to_owned())],
            NumbersError::UnknownCarrierConnection { known, .. } => vec![
                ("field", "carrier_connection".to_owned()),
                ("known", known.join(",")),
            ],
            NumbersError::UnknownNumberType(t) => {
                vec![("field", "type".to_owned()), ("value", t.to_string())]
            }
            NumbersError::InvalidAreaCode { .. } => vec![("field", "area_code".to_owned())],
            NumbersError::InvalidPattern { .. } => vec![("field", "contains".to_owned())],
            NumbersError::NumberUnavailable { number, .. }
            | NumbersError::NotAtCarrier(number)
            | NumbersError::VoiceOnlyNumber(number) => vec![("number", number.clone())],
            _ => Vec::new(),
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            NumbersError::MissingUser
            | NumbersError::Field(_)
            | NumbersError::UnsupportedCountry { .. }
            | NumbersError::InvalidNumber(_)
            | NumbersError::MissingOwner
            | NumbersError::InvalidId(_)
            | NumbersError::MissingName
            | NumbersError::Rate(_)
            | NumbersError::InvalidCountry(_)
            | NumbersError::UnknownCarrierConnection { .. }
            | NumbersError::UnknownNumberType(_)
            | NumbersError::InvalidAreaCode { .. }
            | NumbersError::InvalidPattern { .. } => Code::InvalidArgument,
            NumbersError::CarrierNotConfigured
            | NumbersError::CarrierRefused { .. }
            | NumbersError::NumberUnavailable { .. }
            | NumbersError::VoiceOnlyNumber(_) => Code::FailedPrecondition,
            NumbersError::CarrierUnavailable(_) => Code::Unavailable,
            NumbersError::NotAtCarrier(_) | NumbersError::NotFound(_) => Code::NotFound,
            NumbersError::NumberTaken(_) | NumbersError::GroupNameTaken(_) => Code::AlreadyExists,
            NumbersError::Database(e) if sms_runtime::db::is_unavailable(e) => Code::Unavailable,
            NumbersError::Database(_) => Code::Internal,
        }
    }
}

impl sms_runtime::rpc::Refusal for NumbersError {
    fn code(&self) -> Code {
        NumbersError::code(self)
    }

    fn reason(&self) -> &'static str {
        NumbersError::reason(self)
    }

    fn metadata(&self) -> HashMap<String, String> {
        NumbersError::metadata(self)
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            NumbersError::Database(inner) => Some(inner),
            _ => None,
        }
    }
}

impl From<NumbersError> for tonic::Status {
    fn from(e: NumbersError) -> Self {
        sms_runtime::rpc::refused(&e)
    }
}

pub(crate) use sms_runtime::db::on_constraint;
