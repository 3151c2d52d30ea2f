//! The bus's own metrics (recorded through the `metrics` facade; `sms-runtime` installs the
//! recorder and serves them).

use metrics::{Unit, describe_counter, describe_histogram};

/// Events a consumer finished with, by `consumer` and `outcome` (`ok`, `retry`, `unavailable`,
/// `later`, `dead_lettered`).
pub const EVENTS: &str = "sms_bus_events_total";
/// How long a handler took, by `consumer`.
pub const HANDLE_SECONDS: &str = "sms_bus_handle_seconds";

/// Gives the bus's metrics their help text.
pub fn describe() {
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Events handled, by consumer and outcome."
    );
    describe_histogram!(
        HANDLE_SECONDS,
        Unit::Seconds,
        "How long an event's handler took."
    );
}
