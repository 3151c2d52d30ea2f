//! How sending, and cancelling or moving a scheduled message, fail.

use std::collections::HashMap;

use sms_core::schedule::ScheduleError;
use sms_core::text::quote;
use sms_core::{BodyError, PhoneError};
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{
    Common, MediaError, MessagesError, SettingsError, TemplatesError, body_metadata, body_reason,
    capability_error, pairs,
};

/// Why a send, a cancel or a reschedule failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// Its template could not be read or rendered.
    #[error(transparent)]
    Templates(#[from] TemplatesError),
    /// Its attachments could not be taken.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Its organization's settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The message it names could not be read.
    #[error(transparent)]
    Messages(#[from] MessagesError),
    /// An idempotency key already used for a different request.
    #[error(
        "the idempotency key {} was used for a different request (message {message_id}); use a \
         new key for a new message",
        quote(.key)
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The message the key created.
        message_id: String,
    },
    /// The body is empty or too long.
    #[error("{0}")]
    Body(#[from] BodyError),
    /// The recipient is not a valid number.
    #[error("invalid recipient: {0}")]
    InvalidRecipient(PhoneError),
    /// The recipient is in a country we do not serve.
    #[error("we do not send SMS to {region} numbers")]
    UnsupportedCountry {
        /// The recipient's region.
        region: String,
    },
    /// The recipient is a kind of line that cannot take SMS (a landline).
    #[error("{number} is a {number_type} number and cannot receive SMS")]
    RecipientNotSmsCapable {
        /// The recipient.
        number: String,
        /// Its type.
        number_type: String,
    },
    /// Sender and recipient have different calling codes.
    #[error("international SMS is not allowed: sender +{from} and recipient +{to}")]
    InternationalNotAllowed {
        /// The sender's calling code.
        from: u16,
        /// The recipient's calling code.
        to: u16,
    },
    /// The sender is not a valid number.
    #[error("invalid sender: {0}")]
    InvalidSender(PhoneError),
    /// The sender is not one of the organization's numbers.
    #[error("{0} is not one of this organization's numbers")]
    UnknownSender(String),
    /// The sender is an external number.
    #[error("{0} is an external number; messages are sent only from rented numbers")]
    ExternalSender(String),
    /// The sender cannot send SMS.
    #[error("{0} cannot send SMS")]
    SenderNotSmsCapable(String),
    /// The user neither owns the sender nor belongs to its group.
    #[error("the user may not send from {0}")]
    SenderNotOwned(String),
    /// No sender was given and the user has none for the recipient's country.
    #[error("the user has no SMS number for +{calling_code} recipients")]
    NoSenderAvailable {
        /// The recipient's calling code.
        calling_code: u16,
    },
    /// A send with both a body and a template.
    #[error("give either a body or a template, not both")]
    BodyAndTemplate,
    /// Only the user who sent a message (or an administrator) may cancel or move it.
    #[error("only the user who sent this message, or an administrator, may cancel or move it")]
    NotMessageOwner,
    /// A send time that cannot be used.
    #[error("{0}")]
    Schedule(#[from] ScheduleError),
    /// Both an instant and a local time.
    #[error("give send_at or send_at_local, not both")]
    TwoSendTimes,
    /// A validity period out of the carrier's range.
    #[error("validity_seconds must be 1 to 36000, not {0}")]
    ValidityOutOfRange(u32),
    /// The organization's segments for the day would go over its cap.
    #[error(
        "the organization's daily cap of {cap} segments for {day} (UTC) is reached: {used} used, \
         this message needs {segments}"
    )]
    DailyCapReached {
        /// The cap.
        cap: i64,
        /// Segments counted that day.
        used: i64,
        /// The message's segments.
        segments: i64,
        /// The day.
        day: chrono::NaiveDate,
    },
    /// Cancel or reschedule of a message that is not scheduled.
    #[error("the message is {status}, not scheduled")]
    NotScheduled {
        /// Its status.
        status: String,
    },
    /// The scheduler had already started firing it.
    #[error("too late: the message has already fired ({state})")]
    AlreadyFired {
        /// The schedule's state.
        state: String,
    },
    /// The sender number cannot send MMS.
    #[error("{0} cannot send MMS")]
    SenderNotMmsCapable(String),
    /// The sender's carrier connection carries text only (SMPP).
    #[error(
        "{number} sends through {connection}, an SMPP connection, which carries text only: no MMS"
    )]
    TextOnlyCarrier {
        /// The sender.
        number: String,
        /// Its connection.
        connection: String,
    },
    /// The recipient opted out of the organization's messages.
    #[error("{0} opted out of this organization's messages")]
    OptedOut(String),
    /// The scheduler did not answer.
    #[error("the scheduler is not available: {0}")]
    SchedulerUnavailable(String),
}

capability_error!(SendError);

impl From<sms_core::mms::MmsError> for SendError {
    fn from(e: sms_core::mms::MmsError) -> Self {
        SendError::Media(MediaError::Mms(e))
    }
}

impl From<sms_core::template::TemplateError> for SendError {
    fn from(e: sms_core::template::TemplateError) -> Self {
        SendError::Templates(TemplatesError::Template(e))
    }
}

impl Refusal for SendError {
    fn code(&self) -> Code {
        match self {
            SendError::Common(e) => e.code(),
            SendError::Templates(e) => e.code(),
            SendError::Media(e) => e.code(),
            SendError::Settings(e) => e.code(),
            SendError::Messages(e) => e.code(),
            SendError::Body(_)
            | SendError::InvalidRecipient(_)
            | SendError::UnsupportedCountry { .. }
            | SendError::RecipientNotSmsCapable { .. }
            | SendError::InternationalNotAllowed { .. }
            | SendError::InvalidSender(_)
            | SendError::BodyAndTemplate
            | SendError::Schedule(_)
            | SendError::TwoSendTimes
            | SendError::ValidityOutOfRange(_) => Code::InvalidArgument,
            SendError::SenderNotMmsCapable(_)
            | SendError::TextOnlyCarrier { .. }
            | SendError::NotScheduled { .. }
            | SendError::AlreadyFired { .. }
            | SendError::OptedOut(_)
            | SendError::UnknownSender(_)
            | SendError::ExternalSender(_)
            | SendError::SenderNotSmsCapable(_)
            | SendError::NoSenderAvailable { .. } => Code::FailedPrecondition,
            SendError::SchedulerUnavailable(_) => Code::Unavailable,
            SendError::SenderNotOwned(_) | SendError::NotMessageOwner => Code::PermissionDenied,
            SendError::IdempotencyKeyReused { .. } => Code::AlreadyExists,
            SendError::DailyCapReached { .. } => Code::ResourceExhausted,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            SendError::Common(e) => e.reason(),
            SendError::Templates(e) => e.reason(),
            SendError::Media(e) => e.reason(),
            SendError::Settings(e) => e.reason(),
            SendError::Messages(e) => e.reason(),
            SendError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            SendError::Body(e) => body_reason(e),
            SendError::InvalidRecipient(_) => "INVALID_RECIPIENT",
            SendError::UnsupportedCountry { .. } => "UNSUPPORTED_COUNTRY",
            SendError::RecipientNotSmsCapable { .. } => "RECIPIENT_NOT_SMS_CAPABLE",
            SendError::InternationalNotAllowed { .. } => "INTERNATIONAL_NOT_ALLOWED",
            SendError::InvalidSender(_) => "INVALID_SENDER",
            SendError::UnknownSender(_) => "UNKNOWN_SENDER",
            SendError::ExternalSender(_) => "EXTERNAL_SENDER",
            SendError::SenderNotSmsCapable(_) => "SENDER_NOT_SMS_CAPABLE",
            SendError::SenderNotOwned(_) => "SENDER_NOT_OWNED",
            SendError::NoSenderAvailable { .. } => "NO_SENDER_AVAILABLE",
            SendError::BodyAndTemplate => "BODY_AND_TEMPLATE",
            SendError::NotMessageOwner => "NOT_MESSAGE_OWNER",
            SendError::Schedule(ScheduleError::UnknownTimeZone(_)) => "UNKNOWN_TIME_ZONE",
            SendError::Schedule(ScheduleError::InvalidDateTime(_)) => "INVALID_LOCAL_TIME",
            SendError::Schedule(ScheduleError::NonexistentLocalTime { .. }) => {
                "LOCAL_TIME_DOES_NOT_EXIST"
            }
            SendError::Schedule(ScheduleError::InPast(_)) => "SEND_AT_IN_PAST",
            SendError::Schedule(
                ScheduleError::TooFar { .. } | ScheduleError::BeyondCalendar { .. },
            ) => "SEND_AT_TOO_FAR",
            SendError::Schedule(ScheduleError::InvalidInstant { .. }) => "INVALID_SEND_AT",
            SendError::Schedule(ScheduleError::Required) => "SEND_AT_REQUIRED",
            SendError::TwoSendTimes => "TWO_SEND_TIMES",
            SendError::ValidityOutOfRange(_) => "VALIDITY_OUT_OF_RANGE",
            SendError::DailyCapReached { .. } => "DAILY_CAP_REACHED",
            SendError::NotScheduled { .. } => "NOT_SCHEDULED",
            SendError::AlreadyFired { .. } => "ALREADY_FIRED",
            SendError::SchedulerUnavailable(_) => "SCHEDULER_UNAVAILABLE",
            SendError::OptedOut(_) => "OPTED_OUT",
            SendError::SenderNotMmsCapable(_) | SendError::TextOnlyCarrier { .. } => {
                "SENDER_NOT_MMS_CAPABLE"
            }
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            SendError::Common(e) => e.metadata(),
            SendError::Templates(e) => e.metadata(),
            SendError::Media(e) => e.metadata(),
            SendError::Settings(e) => e.metadata(),
            SendError::Messages(e) => e.metadata(),
            SendError::IdempotencyKeyReused { message_id, .. } => {
                pairs(vec![("message_id", message_id.clone())])
            }
            SendError::Body(e) => body_metadata(e),
            SendError::InternationalNotAllowed { from, to } => pairs(vec![
                ("from_calling_code", from.to_string()),
                ("to_calling_code", to.to_string()),
            ]),
            SendError::UnsupportedCountry { region } => pairs(vec![("region", region.clone())]),
            SendError::NotScheduled { status } => pairs(vec![("status", status.clone())]),
            SendError::ValidityOutOfRange(_) => pairs(vec![
                ("field", "validity_seconds".to_owned()),
                ("min", "1".to_owned()),
                ("max", sms_core::MAX_VALIDITY_SECS.to_string()),
            ]),
            SendError::AlreadyFired { state } => pairs(vec![("state", state.clone())]),
            SendError::DailyCapReached {
                cap,
                used,
                segments,
                day,
            } => pairs(vec![
                ("cap", cap.to_string()),
                ("used", used.to_string()),
                ("segments", segments.to_string()),
                ("day", day.to_string()),
            ]),
            SendError::Schedule(ScheduleError::TooFar { days, .. }) => {
                pairs(vec![("horizon_days", days.to_string())])
            }
            SendError::RecipientNotSmsCapable { number_type, .. } => {
                pairs(vec![("number_type", number_type.clone())])
            }
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            SendError::Common(e) => e.internal(),
            SendError::Templates(e) => e.internal(),
            SendError::Media(e) => e.internal(),
            SendError::Settings(e) => e.internal(),
            SendError::Messages(e) => e.internal(),
            _ => None,
        }
    }
}
