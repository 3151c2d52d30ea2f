//! What every gRPC service does with a call before its body runs: a span continuing the
//! caller's trace, and the caller authenticated.

use std::sync::Arc;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::MetadataMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::{AuthError, Caller, Tokens};

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// A span for one call, continuing the caller's trace when it sent a `traceparent`.
pub fn span(method: &'static str, metadata: &MetadataMap) -> tracing::Span {
    // A server span (RPC semantic conventions), named after the method.
    let span = tracing::info_span!(
        "grpc",
        otel.name = method,
        otel.kind = "server",
        "rpc.system" = "grpc",
        "rpc.method" = method,
        method,
        system = tracing::field::Empty,
    );
    let cx = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    let _ = span.set_parent(cx);
    span
}

/// Who may call: every gRPC service authenticates its calls with this.
#[derive(Clone)]
pub struct Auth(Arc<Tokens>);

impl Auth {
    /// Calls authenticated by `tokens` (none: development only, no authentication).
    pub fn new(tokens: Tokens) -> Self {
        Auth(Arc::new(tokens))
    }

    /// Authenticates the call and reads the organization and user it acts for.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        crate::auth::authenticate(&self.0, metadata)
    }
}
