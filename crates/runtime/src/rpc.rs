//! What every gRPC service does with a call before its body runs: a span continuing the
//! caller's trace, and the caller authenticated.

use std::collections::HashMap;
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

/// Runs a gRPC call's body in its span, with the authenticated caller (who must be allowed the
/// method: the table in [`crate::auth`]); the body's error type `$error` becomes the call's
/// status. Each service wraps it in a `call!` of its own that names its error type.
#[macro_export]
macro_rules! rpc_call {
    ($self:ident, $request:ident, $method:literal, $error:ty, |$caller:ident| $body:expr) => {{
        use ::tracing::Instrument as _;
        let span = $crate::rpc::span($method, $request.metadata());
        async {
            let $caller = $self.auth.caller($request.metadata())?;
            $caller.may_call($method)?;
            let reply: Result<_, $error> = $body;
            Ok(::tonic::Response::new(reply?))
        }
        .instrument(span)
        .await
    }};
}

/// An error a gRPC call is answered with: its code, its machine-readable reason and the facts
/// a caller can act on.
pub trait Refusal: std::fmt::Display {
    /// The gRPC code.
    fn code(&self) -> tonic::Code;
    /// `google.rpc.ErrorInfo.reason`.
    fn reason(&self) -> &'static str;
    /// `google.rpc.ErrorInfo.metadata`.
    fn metadata(&self) -> HashMap<String, String>;
    /// A failure of ours (the database) rather than a refusal: logged, never shown.
    fn internal(&self) -> Option<&dyn std::fmt::Display>;
}

/// The status `e` is answered with: a failure of ours is logged at ERROR and answered "internal
/// error; try again"; a refusal is logged at INFO and answered in its own words.
pub fn refused(e: &impl Refusal) -> tonic::Status {
    let message = match e.internal() {
        Some(inner) => {
            tracing::error!(error = %inner, "database error");
            "internal error; try again".to_owned()
        }
        None => {
            tracing::info!(reason = e.reason(), error = %e, "request refused");
            e.to_string()
        }
    };
    crate::auth::status(e.code(), message, e.reason(), e.metadata())
}
