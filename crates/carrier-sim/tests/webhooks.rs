//! The simulator calls webhooks as Twilio does: the URL's fragment (connection overrides) sets
//! which failures are retried and how often, and is neither sent nor signed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use sms_carrier_sim::{Sim, SimConfig};

/// A receiver that answers 503 to its first `failures` requests, then 200; it records the
/// requested URIs and whether each signature verified for the URL without its fragment.
async fn receiver(failures: u32) -> (String, Arc<AtomicU32>, Arc<Mutex<Vec<(String, bool)>>>) {
    let hits = Arc::new(AtomicU32::new(0));
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (h, s, b) = (hits.clone(), seen.clone(), base.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |uri: Uri, headers: HeaderMap, body: String| {
            let (hits, seen, base) = (h.clone(), s.clone(), b.clone());
            async move {
                let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let pairs: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let signature = headers
                    .get("X-Twilio-Signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let url = format!("{base}{uri}");
                let valid = sms_twilio::verify("tok", &url, &pairs, signature);
                seen.lock().unwrap().push((uri.to_string(), valid));
                if hits.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits, seen)
}

fn sim() -> Sim {
    Sim::new(SimConfig::new("AC1", "tok")).unwrap()
}

#[tokio::test]
async fn without_overrides_a_5xx_is_not_retried() {
    let (base, hits, _) = receiver(2).await;
    let status = sim()
        .post_webhook(&format!("{base}/hook"), "tok", [("A", "1")])
        .await;
    assert_eq!(status, Ok(503));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_fragment_asks_for_retries_and_is_neither_sent_nor_signed() {
    let (base, hits, seen) = receiver(2).await;
    let status = sim()
        .post_webhook(
            &format!("{base}/hook?mid=7#rc=5&rp=5xx,ct,rt"),
            "tok",
            [("A", "1")],
        )
        .await;
    assert_eq!(status, Ok(200));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "two 503s, then taken");
    for (uri, valid) in seen.lock().unwrap().iter() {
        assert_eq!(uri, "/hook?mid=7");
        assert!(valid, "signed for the URL without its fragment");
    }
}

#[tokio::test]
async fn the_retry_count_bounds_the_attempts() {
    let (base, hits, _) = receiver(10).await;
    let status = sim()
        .post_webhook(&format!("{base}/hook#rc=2&rp=5xx"), "tok", [("A", "1")])
        .await;
    assert_eq!(status, Ok(503));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "the first attempt and two retries"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_once_by_default() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status = sim()
        .post_webhook(
            &format!("http://127.0.0.1:{port}/hook"),
            "tok",
            [("A", "1")],
        )
        .await;
    assert!(status.unwrap_err().starts_with("connection failed"));
}
