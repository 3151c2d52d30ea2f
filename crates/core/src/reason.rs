//! The error catalogue: why a message failed, in our words (each carrier crate maps its own
//! error codes onto these).
//!
//! Every reason has a snake_case name (stored on the message, shown to users) and an
//! upper-case form used as the `google.rpc.ErrorInfo` reason at the gRPC edge, and says whether
//! trying again later can help.

use std::fmt;

use serde::Serialize;

/// Why a message failed or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The recipient opted out (STOP), here or at the carrier (21610).
    OptedOut,
    /// The recipient is a landline or otherwise cannot take SMS (30006, 21614, 21635).
    NotSmsCapable,
    /// The sender number was released or lost its SMS capability before the message went out.
    SenderUnavailable,
    /// The carrier filtered the message as spam (30007).
    FilteredAsSpam,
    /// The handset is off or out of coverage (30003).
    Unreachable,
    /// The number does not exist at the carrier (30005).
    UnknownDestination,
    /// The carrier blocked the message (30004).
    Blocked,
    /// The carrier's queue was full (30001).
    QueueOverflow,
    /// The carrier or our account was rate-limited (HTTP 429, 20429, 30022).
    RateLimited,
    /// The recipient number is invalid (21211).
    InvalidRecipient,
    /// The sender number cannot send this message (21606, 21212).
    InvalidSender,
    /// Sending to this region is not enabled on the carrier account (21408, 21612).
    RegionNotEnabled,
    /// The carrier account cannot send (suspended, 30002; not registered, 30034).
    AccountProblem,
    /// The message outlived its validity period in the carrier's queue (30036).
    Expired,
    /// The carrier reported an error it did not explain (30008), or one we do not know.
    UnknownCarrierError,
    /// The carrier could not be reached or answered with a server error.
    CarrierUnavailable,
    /// The carrier refused the attachments: too big, wrong type, or not fetchable (30019,
    /// 12300, 21620, 11751).
    MediaRejected,
    /// The message as the dispatcher received it breaks a rule the composer enforces (a bad
    /// number, an empty or too long body): it was not sent.
    InvalidMessage,
}

impl Reason {
    /// The snake_case name, e.g. `opted_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OptedOut => "opted_out",
            Reason::NotSmsCapable => "not_sms_capable",
            Reason::SenderUnavailable => "sender_unavailable",
            Reason::FilteredAsSpam => "filtered_as_spam",
            Reason::Unreachable => "unreachable",
            Reason::UnknownDestination => "unknown_destination",
            Reason::Blocked => "blocked",
            Reason::QueueOverflow => "queue_overflow",
            Reason::RateLimited => "rate_limited",
            Reason::InvalidRecipient => "invalid_recipient",
            Reason::InvalidSender => "invalid_sender",
            Reason::RegionNotEnabled => "region_not_enabled",
            Reason::AccountProblem => "account_problem",
            Reason::Expired => "expired",
            Reason::UnknownCarrierError => "unknown_carrier_error",
            Reason::CarrierUnavailable => "carrier_unavailable",
            Reason::MediaRejected => "media_rejected",
            Reason::InvalidMessage => "invalid_message",
        }
    }

    /// What happened, in plain words for the people who read a message's page.
    pub fn explanation(self) -> &'static str {
        match self {
            Reason::OptedOut => {
                "The contact opted out (replied STOP or was opted out by hand); texting them \
                 is not allowed until they reply START."
            }
            Reason::NotSmsCapable => {
                "The number is a landline or another line that cannot receive text messages."
            }
            Reason::SenderUnavailable => {
                "Our number was released or lost its SMS capability before the message went out."
            }
            Reason::FilteredAsSpam => {
                "The carrier filtered the message as spam. Rewording it, or registering the \
                 sending number for its use case, usually helps."
            }
            Reason::Unreachable => {
                "The phone was off or out of coverage until the carrier gave up."
            }
            Reason::UnknownDestination => "The number does not exist at the carrier.",
            Reason::Blocked => {
                "The carrier blocked the message (the recipient or its carrier \
                                refuses messages from this sender)."
            }
            Reason::QueueOverflow => {
                "The carrier's queue for our number was full: too much was sent too fast."
            }
            Reason::RateLimited => "The carrier refused the message because we sent too fast.",
            Reason::InvalidRecipient => "The recipient's number is not a valid phone number.",
            Reason::InvalidSender => "Our number cannot send this message at the carrier.",
            Reason::RegionNotEnabled => {
                "Sending to this country is not enabled on the carrier account."
            }
            Reason::AccountProblem => {
                "The carrier account cannot send (suspended, or not registered for this traffic)."
            }
            Reason::Expired => {
                "The message waited in the carrier's queue longer than it was allowed to, and \
                 was dropped unsent."
            }
            Reason::UnknownCarrierError => {
                "The carrier reported an error without saying why (see the carrier's code)."
            }
            Reason::CarrierUnavailable => {
                "The carrier could not be reached or answered with a server error."
            }
            Reason::MediaRejected => {
                "The carrier refused the attachments: too big, of a type it does not take, or \
                 not fetchable."
            }
            Reason::InvalidMessage => {
                "The message broke a sending rule (a bad number or body) and was not sent."
            }
        }
    }

    /// The `google.rpc.ErrorInfo` reason: the name in upper case, e.g. `OPTED_OUT`.
    pub fn grpc_reason(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// Whether sending again later may succeed. Permanent reasons must never be retried:
    /// carriers punish senders that keep texting landlines and opted-out numbers.
    pub fn is_retryable(self) -> bool {
        match self {
            Reason::Unreachable
            | Reason::QueueOverflow
            | Reason::RateLimited
            | Reason::UnknownCarrierError
            | Reason::CarrierUnavailable => true,
            Reason::OptedOut
            | Reason::NotSmsCapable
            | Reason::SenderUnavailable
            | Reason::FilteredAsSpam
            | Reason::UnknownDestination
            | Reason::Blocked
            | Reason::InvalidRecipient
            | Reason::InvalidSender
            | Reason::RegionNotEnabled
            | Reason::AccountProblem
            | Reason::Expired
            | Reason::MediaRejected
            | Reason::InvalidMessage => false,
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Reason> {
        ALL_REASONS.into_iter().find(|r| r.as_str() == s)
    }
}

/// Why a message failed, as a message and its history keep it: a reason of the catalogue, or
/// the words of a producer that gave none of the catalogue's (an older release, a carrier's own
/// text), kept as they came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A reason of the catalogue.
    Known(Reason),
    /// Other words.
    Other(String),
}

impl Failure {
    /// Reads a stored or received text: the catalogue's reason when it names one.
    pub fn from_text(text: &str) -> Failure {
        Reason::parse(text).map_or_else(|| Failure::Other(text.to_owned()), Failure::Known)
    }

    /// The catalogue's reason, if it is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Failure::Known(r) => Some(*r),
            Failure::Other(_) => None,
        }
    }

    /// The text: the reason's snake_case name, or the other words.
    pub fn as_str(&self) -> &str {
        match self {
            Failure::Known(r) => r.as_str(),
            Failure::Other(words) => words,
        }
    }
}

impl From<Reason> for Failure {
    fn from(r: Reason) -> Self {
        Failure::Known(r)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every reason.
pub const ALL_REASONS: [Reason; 18] = [
    Reason::OptedOut,
    Reason::NotSmsCapable,
    Reason::SenderUnavailable,
    Reason::FilteredAsSpam,
    Reason::Unreachable,
    Reason::UnknownDestination,
    Reason::Blocked,
    Reason::QueueOverflow,
    Reason::RateLimited,
    Reason::InvalidRecipient,
    Reason::InvalidSender,
    Reason::RegionNotEnabled,
    Reason::AccountProblem,
    Reason::Expired,
    Reason::UnknownCarrierError,
    Reason::CarrierUnavailable,
    Reason::MediaRejected,
    Reason::InvalidMessage,
];

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_is_the_catalogue_reason_it_names_or_the_words_it_came_with() {
        use super::Failure;
        for r in super::ALL_REASONS {
            assert_eq!(Failure::from_text(r.as_str()), Failure::Known(r));
            assert_eq!(Failure::from(r).as_str(), r.as_str());
        }
        let other = Failure::from_text("the carrier said no");
        assert_eq!(other.reason(), None);
        assert_eq!(other.to_string(), "the carrier said no");
        assert_eq!(Failure::from_text("OPTED_OUT").reason(), None);
    }

    use super::*;

    #[test]
    fn names() {
        assert_eq!(Reason::OptedOut.as_str(), "opted_out");
        assert_eq!(Reason::OptedOut.grpc_reason(), "OPTED_OUT");
        for r in ALL_REASONS {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
