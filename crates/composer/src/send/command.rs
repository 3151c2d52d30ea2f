//! A send as the send path takes it, parsed once from its request by `grpc::command`: numbers
//! as [`PhoneNumber`]s, the body or template with its context checked field by field, the send
//! time resolved, attachments bounded, and the fingerprint a repeated idempotency key is
//! checked against. Nothing after the adapter handles the request's raw strings.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sms_core::schedule::{self, ScheduleError};
use sms_core::{PhoneNumber, TemplateId};

use crate::error::SendError;

/// Longest lead or contact id (the CRM's own ids).
pub const MAX_CRM_ID: usize = 255;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest text value in a template context.
pub const MAX_CONTEXT_VALUE: usize = 10_000;
/// Longest key of a context's custom fields.
pub const MAX_CONTEXT_KEY: usize = 200;
/// Most custom fields in one context map.
pub const MAX_CONTEXT_ENTRIES: usize = 500;
/// Longest attachment file name.
pub const MAX_FILE_NAME: usize = 255;
/// Longest declared content type.
pub const MAX_CONTENT_TYPE: usize = 255;
/// Longest attachment URL.
pub const MAX_URL: usize = 2048;
/// Longest local date-time or time zone name.
pub const MAX_TIME_FIELD: usize = 64;

/// What to send: a body as written, or a template to render.
#[derive(Debug, Clone)]
pub enum Content {
    /// The body (checked for characters; its length is checked after smart encoding).
    Body(String),
    /// A template and what to render it against.
    Template {
        /// The template.
        id: TemplateId,
        /// The CRM's context.
        context: Box<sms_core::template::Context>,
    },
}

/// When to send.
#[derive(Debug, Clone)]
pub enum When {
    /// Now.
    Now,
    /// At an instant.
    At(jiff::Timestamp),
    /// At a local time in a zone, resolved to an instant.
    Local {
        /// The instant.
        at: jiff::Timestamp,
        /// The local time occurs twice (clocks go back) and the earlier instant was taken.
        ambiguous: bool,
        /// As asked.
        date_time: String,
        /// The zone.
        zone: String,
    },
}

/// How far ahead a message may be scheduled, in days.
#[derive(Debug, Clone, Copy)]
pub struct Horizon(pub i64);

impl Horizon {
    /// The send time of `when`, checked against now and the horizon; `None` to send now.
    pub fn send_time(
        &self,
        when: &When,
        notes: &mut Vec<String>,
    ) -> Result<Option<DateTime<Utc>>, SendError> {
        let instant = match when {
            When::Now => return Ok(None),
            When::At(at) => *at,
            When::Local {
                at,
                ambiguous,
                date_time,
                zone,
            } => {
                if *ambiguous {
                    notes.push(format!(
                        "{date_time} happens twice in {zone} (clocks go back); the earlier one, \
                         {at}, was taken"
                    ));
                }
                *at
            }
        };
        schedule::check_window(instant, jiff::Timestamp::now(), self.0)?;
        DateTime::from_timestamp(
            instant.as_second(),
            u32::try_from(instant.subsec_nanosecond()).unwrap_or(0),
        )
        .map(Some)
        .ok_or_else(|| SendError::Schedule(ScheduleError::InvalidDateTime(instant.to_string())))
    }
}

/// Where an attachment's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Given in the request.
    Bytes(Vec<u8>),
    /// To fetch (through the fetch policy).
    Url(String),
}

/// An attachment to send.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The file name, as given (may be empty).
    pub file_name: String,
    /// The declared type.
    pub content_type: String,
    /// The bytes or where to get them.
    pub source: Source,
}

/// A send, checked.
#[derive(Debug, Clone)]
pub struct SendCommand {
    /// The recipient, parsed (in the sender's region when it is given in national format).
    pub to: PhoneNumber,
    /// The sender, when the caller chose one (E.164).
    pub from: Option<PhoneNumber>,
    /// The body or template.
    pub content: Content,
    /// The CRM's lead.
    pub lead_id: Option<String>,
    /// The CRM's contact.
    pub contact_id: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When.
    pub when: When,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Replace look-alike characters when that saves segments.
    pub smart_encoding: bool,
    /// How long it may wait to be handed to the carrier, from when it is due (1 to 36,000 s).
    pub validity_seconds: u32,
    /// Whether the caller asked for it (the default does not run while quiet hours hold a
    /// message; an asked-for validity does).
    pub validity_given: bool,
    /// What identifies the request, for a repeated idempotency key: SHA-256 of its fields,
    /// numbers normalized.
    pub fingerprint: [u8; 32],
}

/// Writes length-prefixed fields, so that no two different requests share a fingerprint.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        self.field(s.as_bytes())
    }
}

impl SendCommand {
    pub(crate) fn compute_fingerprint(&self) -> [u8; 32] {
        let mut f = Fingerprint(Sha256::new());
        f.text("send/v1")
            .text(self.to.e164())
            .text(self.from.as_ref().map_or("", PhoneNumber::e164));
        match &self.content {
            Content::Body(b) => {
                f.text("body").text(b);
            }
            Content::Template { id, context } => {
                // The context's JSON form is canonical: its maps are ordered.
                let context = serde_json::to_vec(context).unwrap_or_default();
                f.text("template").text(&id.to_string()).field(&context);
            }
        }
        f.text(self.lead_id.as_deref().unwrap_or(""))
            .text(self.contact_id.as_deref().unwrap_or(""));
        match &self.when {
            When::Now => f.text("now"),
            When::At(t) => f.text("at").text(&t.to_string()),
            When::Local {
                date_time, zone, ..
            } => f.text("local").text(date_time).text(zone),
        };
        f.text(if self.smart_encoding {
            "smart"
        } else {
            "as-written"
        });
        // Only when asked for, so that fingerprints of requests without it stay as they were.
        if self.validity_seconds != sms_core::MAX_VALIDITY_SECS {
            f.text("validity").text(&self.validity_seconds.to_string());
        }
        for a in &self.attachments {
            f.text(&a.file_name).text(&a.content_type);
            match &a.source {
                Source::Bytes(b) => f.text("bytes").field(&Sha256::digest(b)),
                Source::Url(u) => f.text("url").text(u),
            };
        }
        f.0.finalize().into()
    }
}
