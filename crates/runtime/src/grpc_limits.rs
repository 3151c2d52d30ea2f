//! Tonic refuses a request larger than a service's decoding limit before any handler sees it,
//! with `OUT_OF_RANGE` and a sentence only. This layer gives that refusal the shape of every
//! other one: `RESOURCE_EXHAUSTED` (what gRPC itself uses for a message over the limit) with
//! the `REQUEST_TOO_LARGE` reason and the size and limit in the `ErrorInfo` metadata.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The reason a request over the size limit gets.
pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";

/// Tonic's words for a request over the decoding limit.
const TONIC_TOO_LARGE: &str = "decoded message length too large";

/// The layer; see the module's documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReasonedLimits;

impl<S> tower::Layer<S> for ReasonedLimits {
    type Service = ReasonedLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReasonedLimitsService { inner }
    }
}

/// The service [`ReasonedLimits`] wraps around a gRPC server.
#[derive(Debug, Clone)]
pub struct ReasonedLimitsService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for ReasonedLimitsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(match too_large(response.headers()) {
                Some(status) => status.into_http(),
                None => response,
            })
        })
    }
}

/// The refusal to send instead, when `headers` are tonic's refusal of an over-large request.
fn too_large(headers: &http::HeaderMap) -> Option<tonic::Status> {
    let code = headers.get("grpc-status")?.to_str().ok()?;
    if code != (tonic::Code::OutOfRange as i32).to_string() {
        return None;
    }
    let message = headers.get("grpc-message")?.to_str().ok()?;
    let message = percent_decode(message);
    if !message.contains(TONIC_TOO_LARGE) {
        return None;
    }
    // "…: found {len} bytes, the limit is: {limit} bytes"
    let number_after = |marker: &str| {
        message
            .split_once(marker)
            .map(|(_, rest)| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .filter(|n| !n.is_empty())
    };
    let size = number_after("found ");
    let limit = number_after("limit is: ");
    let mut metadata = HashMap::new();
    let text = match (&size, &limit) {
        (Some(size), Some(limit)) => {
            metadata.insert("size".to_owned(), size.clone());
            metadata.insert("limit".to_owned(), limit.clone());
            format!("the request has {size} bytes; this service takes at most {limit}")
        }
        _ => "the request is larger than this service takes".to_owned(),
    };
    tracing::info!(size, limit, "gRPC request refused: larger than the limit");
    Some(crate::auth::status(
        tonic::Code::ResourceExhausted,
        text,
        REQUEST_TOO_LARGE,
        metadata,
    ))
}

/// `grpc-message` is percent-encoded (gRPC's HTTP/2 mapping).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(code: &str, message: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", code.parse().unwrap());
        h.insert("grpc-message", message.parse().unwrap());
        h
    }

    #[test]
    fn tonics_refusal_gets_a_reason() {
        let status = too_large(&headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%2020971520%20bytes,%20the%20limit%20is:%2016777216%20bytes",
        ))
        .unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        use tonic_types::StatusExt as _;
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, REQUEST_TOO_LARGE);
        assert_eq!(info.metadata["size"], "20971520");
        assert_eq!(info.metadata["limit"], "16777216");
    }

    #[test]
    fn other_answers_pass_untouched() {
        assert!(too_large(&headers("11", "CURSOR_EXPIRED")).is_none());
        assert!(too_large(&headers("3", "decoded message length too large")).is_none());
        assert!(too_large(&http::HeaderMap::new()).is_none());
    }
}
