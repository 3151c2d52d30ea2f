//! Prometheus metrics. One recorder per process (the `metrics` facade), rendered at `/metrics`
//! by every health router; so `smsd`, which runs every service in one process, shows them all
//! on one page. The names of every metric the services record are here, with their help text.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Messages accepted by SendMessage, by `kind` (`sms`, `mms`) and `when` (`now`, `later`, or
/// `held` for quiet hours).
pub const MESSAGES_ACCEPTED: &str = "sms_messages_accepted_total";
/// SendMessage calls refused, by `reason` (the machine-readable reason of the gRPC error).
pub const SENDS_REFUSED: &str = "sms_sends_refused_total";
/// Status changes applied to messages, by `status`.
pub const MESSAGE_STATUSES: &str = "sms_message_statuses_total";
/// Segments the carrier took (what is billed), by `encoding`.
pub const SEGMENTS_BILLED: &str = "sms_segments_billed_total";
/// Calls to the carrier's API, by `outcome` (`accepted`, `refused`, `retryable_error`,
/// `unknown`: no answer after the request may have reached the carrier).
pub const CARRIER_REQUESTS: &str = "sms_carrier_requests_total";
/// How long the carrier's API took to answer.
pub const CARRIER_REQUEST_SECONDS: &str = "sms_carrier_request_seconds";
/// Sends the dispatcher stopped before the carrier, by `reason`.
pub const SENDS_BLOCKED: &str = "sms_sends_blocked_total";
/// Carrier webhooks received, by `kind` (`status`, `incoming`) and `outcome`.
pub const WEBHOOKS: &str = "sms_webhooks_total";
/// Scheduled messages handed on, by `late` (`true` when the scheduler was behind).
pub const SCHEDULED_FIRED: &str = "sms_scheduled_fired_total";
/// How long after its due time a scheduled message was handed on.
pub const SCHEDULE_LAG_SECONDS: &str = "sms_schedule_lag_seconds";
/// Opt-out changes recorded by the registry, by `change` (`opted_out`, `opted_in`) and
/// `source` (`keyword`, `carrier`, `manual`).
pub const OPTOUT_CHANGES: &str = "sms_optout_changes_total";

/// Carrier callbacks the composer did not apply, by `why` (another carrier sid, a message that
/// was not sent, no sid).
pub const STATUSES_IGNORED: &str = "sms_statuses_ignored_total";

/// Outbox events, by `outbox` (the service) and `outcome` (`published`, `failed`: left for a
/// later round).
pub const OUTBOX_EVENTS: &str = "sms_outbox_events_total";
/// How long an event waited in its outbox before JetStream acknowledged it, by `outbox`.
pub const OUTBOX_LAG_SECONDS: &str = "sms_outbox_lag_seconds";

/// Sends in doubt resolved by asking the carrier, by `outcome` (`found`, `absent`: sent now or
/// failed for a stated reason, `lookup_failed`: asked again later, `unreadable`).
pub const IN_DOUBT_RESOLVED: &str = "sms_in_doubt_resolved_total";
/// Status checks: the composer's questions about messages whose status stopped moving, by
/// `outcome` at the dispatcher (`reported`, `pending`, `unknown`, `lookup_failed`).
pub const STATUS_CHECKS: &str = "sms_status_checks_total";

/// Dispatch partitions this dispatcher replica holds (it alone sends for their senders).
pub const DISPATCH_PARTITIONS_HELD: &str = "sms_dispatch_partitions_held";
/// Messages waiting for their sender's rate (or the account's) before their carrier call.
pub const DISPATCH_WAITING: &str = "sms_dispatch_waiting";
/// How long messages waited for their sender's rate, by `sender_kind` (`long_code`,
/// `toll_free`, `short_code`).
pub const DISPATCH_WAIT_SECONDS: &str = "sms_dispatch_wait_seconds";
/// SMPP binds open now, by `connection`.
pub const SMPP_BINDS: &str = "sms_smpp_binds";
/// `deliver_sm`s received on SMPP binds, by `kind` (`receipt`, `message`) and `outcome`
/// (`matched`, `waiting`, `stored`, `refused`, `retry`).
pub const SMPP_DELIVERIES: &str = "sms_smpp_deliveries_total";

/// Webhook delivery attempts, by `outcome` (`delivered`, `retrying`, `failed`).
pub const WEBHOOK_ATTEMPTS: &str = "sms_webhook_attempts_total";

/// Bucket bounds (seconds) of every latency histogram.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None` when
/// another recorder was installed first, in which case `/metrics` says so.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new().set_buckets(SECONDS) {
                Ok(builder) => builder.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "metrics: bad histogram buckets");
                    return None;
                }
            };
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics is empty");
                return None;
            }
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric of this process.
pub fn render() -> Option<String> {
    install().map(PrometheusHandle::render)
}

fn describe() {
    sms_bus::metrics::describe();
    describe_counter!(
        MESSAGES_ACCEPTED,
        Unit::Count,
        "Messages accepted by SendMessage."
    );
    describe_counter!(
        SENDS_REFUSED,
        Unit::Count,
        "SendMessage calls refused, by reason."
    );
    describe_counter!(
        MESSAGE_STATUSES,
        Unit::Count,
        "Status changes applied to messages."
    );
    describe_counter!(
        OUTBOX_EVENTS,
        Unit::Count,
        "Outbox events published or failed (left for a later round), by service."
    );
    describe_histogram!(
        OUTBOX_LAG_SECONDS,
        Unit::Seconds,
        "How long an event waited in its outbox before JetStream acknowledged it."
    );
    describe_counter!(
        STATUSES_IGNORED,
        Unit::Count,
        "Carrier callbacks not applied: another carrier sid, or a message that was not sent."
    );
    describe_counter!(
        SEGMENTS_BILLED,
        Unit::Count,
        "Segments the carrier took, by encoding."
    );
    describe_counter!(
        CARRIER_REQUESTS,
        Unit::Count,
        "Calls to the carrier's API, by outcome."
    );
    describe_histogram!(
        CARRIER_REQUEST_SECONDS,
        Unit::Seconds,
        "How long the carrier's API took to answer."
    );
    describe_counter!(
        SENDS_BLOCKED,
        Unit::Count,
        "Sends stopped before the carrier, by reason."
    );
    describe_counter!(
        WEBHOOKS,
        Unit::Count,
        "Carrier webhooks received, by kind and outcome."
    );
    describe_counter!(
        SCHEDULED_FIRED,
        Unit::Count,
        "Scheduled messages handed on."
    );
    describe_histogram!(
        SCHEDULE_LAG_SECONDS,
        Unit::Seconds,
        "How long after its due time a scheduled message was handed on."
    );
    describe_counter!(
        OPTOUT_CHANGES,
        Unit::Count,
        "Opt-out changes recorded by the registry."
    );
    describe_gauge!(
        DISPATCH_PARTITIONS_HELD,
        Unit::Count,
        "Dispatch partitions held by this replica."
    );
    describe_gauge!(SMPP_BINDS, Unit::Count, "SMPP binds open now.");
    describe_counter!(
        SMPP_DELIVERIES,
        Unit::Count,
        "deliver_sm received on SMPP binds."
    );
    describe_gauge!(
        DISPATCH_WAITING,
        Unit::Count,
        "Messages waiting for their sender's rate."
    );
    describe_histogram!(
        DISPATCH_WAIT_SECONDS,
        Unit::Seconds,
        "How long messages waited for their sender's rate, by sender kind."
    );
    describe_counter!(
        IN_DOUBT_RESOLVED,
        Unit::Count,
        "Carrier calls without an outcome, resolved by asking the carrier, by outcome."
    );
    describe_counter!(
        STATUS_CHECKS,
        Unit::Count,
        "Questions about messages whose status stopped moving, by outcome."
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "Webhook delivery attempts, by outcome."
    );
}
