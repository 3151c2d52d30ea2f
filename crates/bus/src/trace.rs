//! W3C trace context in NATS headers, so one trace follows a message across services.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into `headers`.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context in `headers`, if there is one.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed: then there is no trace to follow.
    let _ = span.set_parent(cx);
}

/// Links `span` to the trace context in `headers`, if there is one: for a span that handles
/// several events at once, each from its own trace.
pub fn link_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span_context = cx.span().span_context().clone();
    if span_context.is_valid() {
        span.add_link(span_context);
    }
}

/// The current span's `traceparent` value, for HTTP calls (empty when tracing is off).
pub fn current_traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers.get("traceparent").map(|v| v.as_str().to_owned())
}
