//! Every way a composer call can fail, and the one mapping to gRPC statuses with a
//! machine-readable `google.rpc.ErrorInfo` reason.

use std::collections::HashMap;

use sms_core::schedule::ScheduleError;
use sms_core::template::TemplateError;
use sms_core::text::{FieldError, quote};
use sms_core::{BodyError, PhoneError};
use tonic::Code;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ComposerError {
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
    /// A number to add is not valid.
    #[error("invalid number: {0}")]
    InvalidNumber(PhoneError),
    /// A contact registration with neither a lead nor a contact id.
    #[error("a contact needs a lead_id or a contact_id")]
    ContactWithoutIds,
    /// A malformed id.
    #[error("{} is not a valid id", quote(.0))]
    InvalidId(String),
    /// The page token is not one we issued.
    #[error("invalid page token")]
    InvalidPageToken,
    /// Nothing with that id in this organization (or not visible to the user).
    #[error("{0} not found")]
    NotFound(Entity),
    /// A template that does not parse.
    #[error("invalid template: {0}")]
    Template(#[from] TemplateError),
    /// A send with both a body and a template.
    #[error("give either a body or a template, not both")]
    BodyAndTemplate,
    /// Only a template's creator (or an administrator) may change it.
    #[error("only the creator of a template, or an administrator, may change or delete it")]
    NotTemplateOwner,
    /// Only the user who sent a message (or an administrator) may cancel or move it.
    #[error("only the user who sent this message, or an administrator, may cancel or move it")]
    NotMessageOwner,
    /// A name is required.
    #[error("a name is required")]
    MissingName,
    /// A send time that cannot be used.
    #[error("{0}")]
    Schedule(#[from] ScheduleError),
    /// Both an instant and a local time.
    #[error("give send_at or send_at_local, not both")]
    TwoSendTimes,
    /// A validity period out of the carrier's range.
    #[error("validity_seconds must be 1 to 36000, not {0}")]
    ValidityOutOfRange(u32),
    /// Quiet hours that cannot be used.
    #[error("invalid quiet hours: {0}")]
    QuietHours(sms_core::quiet::QuietError),
    /// A daily cap out of range.
    #[error("daily_segment_cap must be 0 (no cap) to {max}, not {given}")]
    InvalidDailyCap {
        /// What was asked for.
        given: i64,
        /// The largest cap.
        max: i64,
    },
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
    /// Attachments break an MMS rule.
    #[error("{0}")]
    Mms(#[from] sms_core::mms::MmsError),
    /// An attachment URL could not be fetched.
    #[error("cannot fetch the attachment at {}: {why}", quote(.url))]
    MediaFetch {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
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
    /// A month that is not `YYYY-MM`, or a range that runs backwards.
    #[error("{} is not a month (YYYY-MM), or the range runs backwards", quote(.0))]
    InvalidMonth(String),
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

impl ComposerError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ComposerError::MissingUser => "MISSING_USER",
            ComposerError::Field(e) => e.reason(),
            ComposerError::TooManyEntries { .. } => "TOO_MANY_ENTRIES",
            ComposerError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            ComposerError::Body(BodyError::Empty) => "BODY_EMPTY",
            ComposerError::Body(BodyError::TooLong { .. }) => "BODY_TOO_LONG",
            ComposerError::InvalidRecipient(_) => "INVALID_RECIPIENT",
            ComposerError::UnsupportedCountry { .. } => "UNSUPPORTED_COUNTRY",
            ComposerError::RecipientNotSmsCapable { .. } => "RECIPIENT_NOT_SMS_CAPABLE",
            ComposerError::InternationalNotAllowed { .. } => "INTERNATIONAL_NOT_ALLOWED",
            ComposerError::InvalidSender(_) => "INVALID_SENDER",
            ComposerError::UnknownSender(_) => "UNKNOWN_SENDER",
            ComposerError::ExternalSender(_) => "EXTERNAL_SENDER",
            ComposerError::SenderNotSmsCapable(_) => "SENDER_NOT_SMS_CAPABLE",
            ComposerError::SenderNotOwned(_) => "SENDER_NOT_OWNED",
            ComposerError::NoSenderAvailable { .. } => "NO_SENDER_AVAILABLE",
            ComposerError::InvalidNumber(_) => "INVALID_NUMBER",
            ComposerError::InvalidId(_) => "INVALID_ID",
            ComposerError::InvalidPageToken => "INVALID_PAGE_TOKEN",
            ComposerError::NotFound(Entity::Message) => "MESSAGE_NOT_FOUND",
            ComposerError::NotFound(Entity::Template) => "TEMPLATE_NOT_FOUND",
            ComposerError::NotFound(Entity::Number) => "NUMBER_NOT_FOUND",
            ComposerError::NotFound(Entity::Contact) => "CONTACT_NOT_FOUND",
            ComposerError::NotFound(Entity::Attachment) => "ATTACHMENT_NOT_FOUND",
            ComposerError::ContactWithoutIds => "CONTACT_WITHOUT_IDS",
            ComposerError::Template(TemplateError::TooLong { .. }) => "TEMPLATE_TOO_LONG",
            ComposerError::Template(TemplateError::Unclosed { .. }) => "TEMPLATE_UNCLOSED_TAG",
            ComposerError::Template(TemplateError::Empty { .. }) => "TEMPLATE_EMPTY_TAG",
            ComposerError::Template(TemplateError::Malformed { .. }) => "TEMPLATE_MALFORMED_TAG",
            ComposerError::Template(TemplateError::Unknown { .. }) => "TEMPLATE_UNKNOWN_TAG",
            ComposerError::BodyAndTemplate => "BODY_AND_TEMPLATE",
            ComposerError::NotTemplateOwner => "NOT_TEMPLATE_OWNER",
            ComposerError::NotMessageOwner => "NOT_MESSAGE_OWNER",
            ComposerError::MissingName => "MISSING_NAME",
            ComposerError::InvalidMonth(_) => "INVALID_MONTH",
            ComposerError::Schedule(ScheduleError::UnknownTimeZone(_)) => "UNKNOWN_TIME_ZONE",
            ComposerError::Schedule(ScheduleError::InvalidDateTime(_)) => "INVALID_LOCAL_TIME",
            ComposerError::Schedule(ScheduleError::NonexistentLocalTime { .. }) => {
                "LOCAL_TIME_DOES_NOT_EXIST"
            }
            ComposerError::Schedule(ScheduleError::InPast(_)) => "SEND_AT_IN_PAST",
            ComposerError::Schedule(
                ScheduleError::TooFar { .. } | ScheduleError::BeyondCalendar { .. },
            ) => "SEND_AT_TOO_FAR",
            ComposerError::Schedule(ScheduleError::InvalidInstant { .. }) => "INVALID_SEND_AT",
            ComposerError::Schedule(ScheduleError::Required) => "SEND_AT_REQUIRED",
            ComposerError::TwoSendTimes => "TWO_SEND_TIMES",
            ComposerError::ValidityOutOfRange(_) => "VALIDITY_OUT_OF_RANGE",
            ComposerError::QuietHours(sms_core::quiet::QuietError::Time { .. }) => {
                "INVALID_QUIET_HOURS_TIME"
            }
            ComposerError::QuietHours(sms_core::quiet::QuietError::Backwards { .. }) => {
                "QUIET_HOURS_BACKWARDS"
            }
            ComposerError::QuietHours(sms_core::quiet::QuietError::Day(_)) => {
                "INVALID_QUIET_HOURS_DAY"
            }
            ComposerError::InvalidDailyCap { .. } => "INVALID_DAILY_CAP",
            ComposerError::DailyCapReached { .. } => "DAILY_CAP_REACHED",
            ComposerError::NotScheduled { .. } => "NOT_SCHEDULED",
            ComposerError::AlreadyFired { .. } => "ALREADY_FIRED",
            ComposerError::SchedulerUnavailable(_) => "SCHEDULER_UNAVAILABLE",
            ComposerError::OptedOut(_) => "OPTED_OUT",
            ComposerError::Mms(e) => e.reason(),
            ComposerError::MediaFetch { .. } => "MEDIA_FETCH_FAILED",
            ComposerError::SenderNotMmsCapable(_) | ComposerError::TextOnlyCarrier { .. } => {
                "SENDER_NOT_MMS_CAPABLE"
            }
            ComposerError::Database(_) => "INTERNAL",
        }
    }

    /// Facts a caller can act on (`ErrorInfo.metadata`): limits, positions, codes.
    pub fn metadata(&self) -> HashMap<String, String> {
        let pairs: Vec<(&str, String)> = match self {
            ComposerError::Field(e) => return sms_runtime::auth::field_metadata(e),
            ComposerError::TooManyEntries { field, count, max } => vec![
                ("field", (*field).to_owned()),
                ("entries", count.to_string()),
                ("limit", max.to_string()),
            ],
            ComposerError::IdempotencyKeyReused { message_id, .. } => {
                vec![("message_id", message_id.clone())]
            }
            ComposerError::Body(BodyError::TooLong { chars }) => vec![
                ("characters", chars.to_string()),
                ("limit", sms_core::MAX_BODY_CHARS.to_string()),
            ],
            ComposerError::Template(t) => {
                let mut v = Vec::new();
                if let TemplateError::Malformed { tag, .. } | TemplateError::Unknown { tag, .. } = t
                {
                    v.push(("tag", tag.clone()));
                }
                if let Some(at) = t.position() {
                    v.push(("line", at.line.to_string()));
                    v.push(("column", at.column.to_string()));
                }
                v
            }
            ComposerError::InternationalNotAllowed { from, to } => vec![
                ("from_calling_code", from.to_string()),
                ("to_calling_code", to.to_string()),
            ],
            ComposerError::UnsupportedCountry { region } => vec![("region", region.clone())],
            ComposerError::NotScheduled { status } => vec![("status", status.clone())],
            ComposerError::ValidityOutOfRange(_) => vec![
                ("field", "validity_seconds".to_owned()),
                ("min", "1".to_owned()),
                ("max", sms_core::MAX_VALIDITY_SECS.to_string()),
            ],
            ComposerError::AlreadyFired { state } => vec![("state", state.clone())],
            ComposerError::QuietHours(e) => vec![(
                "field",
                match e {
                    sms_core::quiet::QuietError::Time { field, .. } => {
                        format!("quiet_hours.{field}")
                    }
                    sms_core::quiet::QuietError::Backwards { .. } => "quiet_hours.end".to_owned(),
                    sms_core::quiet::QuietError::Day(_) => "quiet_hours.days".to_owned(),
                },
            )],
            ComposerError::InvalidDailyCap { max, .. } => vec![
                ("field", "daily_segment_cap".to_owned()),
                ("min", "0".to_owned()),
                ("max", max.to_string()),
            ],
            ComposerError::DailyCapReached {
                cap,
                used,
                segments,
                day,
            } => vec![
                ("cap", cap.to_string()),
                ("used", used.to_string()),
                ("segments", segments.to_string()),
                ("day", day.to_string()),
            ],
            ComposerError::Schedule(ScheduleError::TooFar { days, .. }) => {
                vec![("horizon_days", days.to_string())]
            }
            ComposerError::RecipientNotSmsCapable { number_type, .. } => {
                vec![("number_type", number_type.clone())]
            }
            _ => Vec::new(),
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn code(&self) -> Code {
        match self {
            ComposerError::MissingUser
            | ComposerError::Field(_)
            | ComposerError::TooManyEntries { .. }
            | ComposerError::Body(_)
            | ComposerError::InvalidRecipient(_)
            | ComposerError::UnsupportedCountry { .. }
            | ComposerError::RecipientNotSmsCapable { .. }
            | ComposerError::InternationalNotAllowed { .. }
            | ComposerError::InvalidSender(_)
            | ComposerError::InvalidNumber(_)
            | ComposerError::ContactWithoutIds
            | ComposerError::InvalidId(_)
            | ComposerError::InvalidPageToken
            | ComposerError::Template(_)
            | ComposerError::BodyAndTemplate
            | ComposerError::MissingName
            | ComposerError::InvalidMonth(_)
            | ComposerError::Schedule(_)
            | ComposerError::TwoSendTimes
            | ComposerError::ValidityOutOfRange(_)
            | ComposerError::QuietHours(_)
            | ComposerError::InvalidDailyCap { .. }
            | ComposerError::Mms(_)
            | ComposerError::MediaFetch { .. } => Code::InvalidArgument,
            ComposerError::SenderNotMmsCapable(_) | ComposerError::TextOnlyCarrier { .. } => {
                Code::FailedPrecondition
            }
            ComposerError::NotScheduled { .. }
            | ComposerError::AlreadyFired { .. }
            | ComposerError::OptedOut(_) => Code::FailedPrecondition,
            ComposerError::SchedulerUnavailable(_) => Code::Unavailable,
            ComposerError::UnknownSender(_)
            | ComposerError::ExternalSender(_)
            | ComposerError::SenderNotSmsCapable(_)
            | ComposerError::NoSenderAvailable { .. } => Code::FailedPrecondition,
            ComposerError::SenderNotOwned(_)
            | ComposerError::NotTemplateOwner
            | ComposerError::NotMessageOwner => Code::PermissionDenied,
            ComposerError::IdempotencyKeyReused { .. } => Code::AlreadyExists,
            ComposerError::NotFound(_) => Code::NotFound,
            ComposerError::DailyCapReached { .. } => Code::ResourceExhausted,
            ComposerError::Database(e) if sms_runtime::db::is_unavailable(e) => Code::Unavailable,
            ComposerError::Database(_) => Code::Internal,
        }
    }
}

impl sms_runtime::rpc::Refusal for ComposerError {
    fn code(&self) -> Code {
        ComposerError::code(self)
    }

    fn reason(&self) -> &'static str {
        ComposerError::reason(self)
    }

    fn metadata(&self) -> HashMap<String, String> {
        ComposerError::metadata(self)
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            ComposerError::Database(inner) => Some(inner),
            _ => None,
        }
    }
}

impl From<ComposerError> for tonic::Status {
    fn from(e: ComposerError) -> Self {
        sms_runtime::rpc::refused(&e)
    }
}
