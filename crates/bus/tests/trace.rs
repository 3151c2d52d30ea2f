//! Trace context goes into and comes out of NATS headers, whatever the log filter says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn a_quiet_log_filter_keeps_the_trace_context_flowing() {
    let config = sms_runtime::TelemetryConfig {
        log: "error".into(),
        context_without_export: true,
        ..Default::default()
    };
    let _telemetry = sms_runtime::Telemetry::init("trace-test", &config);
    let mut incoming = async_nats::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    // A span of the trace's skeleton (it has an `otel.kind`): kept with no exporter too.
    let span = tracing::info_span!("consume", otel.kind = "consumer");
    sms_bus::trace::set_parent_from(&span, Some(&incoming));
    let _entered = span.enter();
    let mut outgoing = async_nats::HeaderMap::new();
    sms_bus::trace::inject_current(&mut outgoing);
    let tp = outgoing
        .get("traceparent")
        .map(|v| v.as_str().to_owned())
        .unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "a new span id for this hop: {tp}"
    );
}
