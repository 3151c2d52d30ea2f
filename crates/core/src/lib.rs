//! The domain rules of the SMS platform, pure and I/O-free.
//!
//! Everything the platform decides that costs money or carrier standing lives here, so that
//! every service applies the same rules and they can be tested densely:
//!
//! * [`encoding`]: GSM-7 / UCS-2 detection and segment counting as carriers bill;
//! * [`smart`]: opt-in replacement of look-alike Unicode characters;
//! * [`phone`]: phone numbers, supported countries, the same-calling-code rule, short codes;
//! * [`template`]: CRM tags in SMS templates;
//! * [`body`]: body limits;
//! * [`keywords`]: STOP / START / HELP;
//! * [`mms`]: attachment limits and type sniffing;
//! * [`rate`]: how fast a sender may send (in segments), and a token bucket;
//! * [`status`]: the message status machine;
//! * [`reason`]: the error catalogue and carrier codes;
//! * [`text`]: limits and forbidden characters of text from outside, and quoting it in errors.

pub mod body;
pub mod encoding;
pub mod id;
pub mod keywords;
pub mod mms;
pub mod phone;
pub mod quiet;
pub mod rate;
pub mod reason;
pub mod schedule;
pub mod smart;
#[cfg(feature = "sqlx")]
mod sql;
pub mod status;
pub mod template;
pub mod text;

pub use body::{BodyError, MAX_BODY_CHARS, validate_body};
pub use encoding::{Analysis, Encoding, SegmentCount, analyze, count};
pub use id::{MessageId, TemplateId};
pub use keywords::Keyword;
pub use phone::{Address, NumberKind, NumberType, PhoneError, PhoneNumber, Region};
pub use reason::{Failure, Reason};
pub use status::{Direction, Status, Transition};

/// How long a message may wait before it is handed to the carrier, by default: Twilio's longest
/// `ValidityPeriod` (10 hours). A message not handed on by then fails as `expired`.
pub const DEFAULT_VALIDITY_SECS: i64 = 36_000;
/// The longest validity a send may ask for (Twilio's `ValidityPeriod` range is 1 to 36,000 s).
pub const MAX_VALIDITY_SECS: u32 = 36_000;
