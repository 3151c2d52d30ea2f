//! What can go wrong talking to NATS, and how a handler says it failed.

use std::time::Duration;

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// The server refused our credentials: trying again will not help.
    #[error("NATS at {url} refused the credentials of {how}: {source}")]
    Refused {
        /// The server URL.
        url: String,
        /// Which credentials (the variables that gave them).
        how: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// A credentials file could not be read.
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A JetStream call failed (stream or consumer set-up, publish, fetch).
    #[error("JetStream {what} failed: {source}")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    pub(crate) fn js(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BusError::JetStream {
            what,
            source: Box::new(source),
        }
    }
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth trying again after `delay` (a database or carrier hiccup).
    #[error("retryable: {reason}")]
    Retry {
        /// What went wrong.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Something the handler depends on is down (the database restarting, say): tried again
    /// after `delay` for as long as it takes, never dead-lettered, because the event itself is
    /// fine and dropping it would lose it.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What is down.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Not to be handled here now, in the normal course of things: the event came ahead of
    /// the one it follows (events of one message travel apart and can be handled out of
    /// order), or it is another replica's to handle (a dispatch partition that moved). Back to
    /// the stream, to be delivered again after `delay`. Logged at DEBUG only; the handler
    /// decides for how long an event may come back before it is dead-lettered.
    #[error("later: {reason}")]
    Later {
        /// What it waits for.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Will never succeed: the event goes to the dead-letter stream.
    #[error("permanent: {0}")]
    Permanent(String),
}
