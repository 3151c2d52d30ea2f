//! The message status machine.
//!
//! Outbound: `accepted` → (`scheduled`) → `queued` → `sending` → `sent` → `delivered` /
//! `undelivered`, or `failed` / `canceled` on the way. Inbound messages are born `received`.
//! Carrier callbacks arrive out of order and more than once, so applying an older or repeated
//! status is not an error: it is [`Transition::Stale`] and changes nothing. A final status
//! never changes again.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "message_status", rename_all = "snake_case")
)]
pub enum Status {
    /// Validated and stored; about to be handed on.
    Accepted,
    /// Waiting for its send-later time.
    Scheduled,
    /// Handed to the dispatcher.
    Queued,
    /// The dispatcher is calling the carrier.
    Sending,
    /// The carrier took it.
    Sent,
    /// The handset got it (final).
    Delivered,
    /// The carrier could not deliver it (final).
    Undelivered,
    /// It could not be sent (final).
    Failed,
    /// Canceled before it was sent (final).
    Canceled,
    /// An inbound message (final).
    Received,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "message_direction", rename_all = "snake_case")
)]
pub enum Direction {
    /// From one of our numbers to a contact.
    Outbound,
    /// From a contact to one of our numbers.
    Inbound,
}

impl Direction {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Every status, in lifecycle order.
pub const ALL: [Status; 10] = [
    Status::Accepted,
    Status::Scheduled,
    Status::Queued,
    Status::Sending,
    Status::Sent,
    Status::Delivered,
    Status::Undelivered,
    Status::Failed,
    Status::Canceled,
    Status::Received,
];

/// What applying a status to a message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The message moves to the new status.
    Advance,
    /// The new status is older than, or the same as, what we know: ignore it.
    Stale,
    /// The move makes no sense (for instance an outbound message becoming `received`).
    Illegal,
}

impl Status {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Received => "received",
        }
    }

    /// Whether the status never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Undelivered
                | Status::Failed
                | Status::Canceled
                | Status::Received
        )
    }

    /// Whether the status is an error (what a user filters as "error").
    pub fn is_error(self) -> bool {
        matches!(self, Status::Undelivered | Status::Failed)
    }

    /// How far along the outbound path a status is; finals share the last rank.
    fn rank(self) -> u8 {
        match self {
            Status::Accepted => 0,
            Status::Scheduled => 1,
            Status::Queued => 2,
            Status::Sending => 3,
            Status::Sent => 4,
            Status::Delivered
            | Status::Undelivered
            | Status::Failed
            | Status::Canceled
            | Status::Received => 5,
        }
    }

    /// What happens when a message in `self` is told it is now `to`.
    pub fn transition(self, to: Status) -> Transition {
        if self.is_final() || self == to {
            // Late or repeated callbacks are normal; a final status is never left.
            return Transition::Stale;
        }
        match to {
            // Only the inbound path creates received messages; nothing becomes one.
            Status::Received => Transition::Illegal,
            Status::Scheduled if self != Status::Accepted => Transition::Illegal,
            // Once handed to the dispatcher a message can no longer be canceled.
            Status::Canceled if self.rank() >= Status::Queued.rank() => Transition::Illegal,
            // Only the dispatcher hands a message to a carrier, and it reports `queued` first:
            // a carrier's word about a message that was never handed on (accepted, scheduled)
            // is about another message, or forged. Nothing skips sending.
            Status::Sending | Status::Sent | Status::Delivered | Status::Undelivered
                if self.rank() < Status::Queued.rank() =>
            {
                Transition::Illegal
            }
            _ if to.rank() > self.rank() => Transition::Advance,
            _ => Transition::Stale,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::Transition::*;
    use super::*;

    #[test]
    fn happy_path_advances() {
        let path = [Accepted, Queued, Sending, Sent, Delivered];
        for w in path.windows(2) {
            assert_eq!(w[0].transition(w[1]), Advance, "{} -> {}", w[0], w[1]);
        }
        assert_eq!(Accepted.transition(Scheduled), Advance);
        assert_eq!(Scheduled.transition(Queued), Advance);
        assert_eq!(Scheduled.transition(Canceled), Advance);
        assert_eq!(Accepted.transition(Failed), Advance);
        assert_eq!(Sent.transition(Undelivered), Advance);
    }

    #[test]
    fn out_of_order_callbacks_are_stale() {
        assert_eq!(Delivered.transition(Sent), Stale);
        assert_eq!(Sent.transition(Queued), Stale);
        assert_eq!(Sent.transition(Sent), Stale);
        // A skipped step is fine: "delivered" may arrive before "sent".
        assert_eq!(Queued.transition(Delivered), Advance);
    }

    #[test]
    fn finals_never_change() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            for to in ALL {
                assert_eq!(from.transition(to), Stale, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn nothing_skips_sending() {
        for from in [Accepted, Scheduled] {
            for to in [Sending, Sent, Delivered, Undelivered] {
                assert_eq!(from.transition(to), Illegal, "{from} -> {to}");
            }
            assert_eq!(from.transition(Queued), Advance, "{from} -> queued");
            // A message can fail or be canceled before it is sent.
            assert_eq!(from.transition(Failed), Advance, "{from} -> failed");
            assert_eq!(from.transition(Canceled), Advance, "{from} -> canceled");
        }
    }

    #[test]
    fn illegal_moves() {
        assert_eq!(Accepted.transition(Received), Illegal);
        assert_eq!(Queued.transition(Scheduled), Illegal);
        assert_eq!(Queued.transition(Canceled), Illegal);
        assert_eq!(Sent.transition(Canceled), Illegal);
    }

    #[test]
    fn names_round_trip() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("error".parse::<Status>().is_err());
    }
}
