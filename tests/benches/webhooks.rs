//! Webhook ingestion load generator (run with `cargo bench -p sms-e2e --bench webhooks`).
//!
//! The inbound receiver runs in-process on loopback with the real NATS JetStream; concurrent
//! clients post distinct, validly signed Twilio incoming-message webhooks. Each request is
//! answered only after its event is stored by JetStream. Reported: requests per second and
//! latency percentiles, next to a raw baseline (the same load against a handler that does
//! nothing) measured in the same run, since these machines are shared.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sms_proto::events::v1::NumberChanged;
use tokio_util::sync::CancellationToken;

const OURS: &str = "+12015550100";
const ACCOUNT: &str = "ACbench000000000000000000000000000";
const TOKEN: &str = "bench-token";
const CONCURRENCY: usize = 64;
const REQUESTS: usize = 60_000;

/// Pre-built (form body, signature) pairs, so the load side spends no time signing.
fn requests(url: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let sid = format!("SM{i:032x}");
            let params = [
                ("MessageSid", sid.as_str()),
                ("SmsSid", sid.as_str()),
                ("AccountSid", ACCOUNT),
                ("From", "+12015550123"),
                ("To", OURS),
                ("Body", "Sounds good, see you at 10"),
                ("NumMedia", "0"),
                ("NumSegments", "1"),
                ("ApiVersion", "2010-04-01"),
            ];
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            (body, sms_twilio::signature(TOKEN, url, params))
        })
        .collect()
}

/// Posts every request with CONCURRENCY in flight; returns (elapsed, sorted latencies in ms).
async fn load(url: &str, reqs: Vec<(String, String)>) -> (Duration, Vec<f64>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let reqs = Arc::new(reqs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, reqs, next, url) =
            (client.clone(), reqs.clone(), next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, sig)) = reqs.get(i) else {
                    return lat;
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("X-Twilio-Signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort_by(f64::total_cmp);
    (elapsed, all)
}

fn report(label: &str, n: usize, elapsed: Duration, lat: &[f64]) -> f64 {
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{label}: {n} requests in {:.2} s = {rate:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
    rate
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    sms_testkit::init_tracing();
    let namespace = sms_testkit::fresh_namespace();
    let common =
        sms_testkit::common_config(&namespace, "postgres://unused", 1, Duration::from_secs(30));
    let bus = sms_bus::Bus::connect(sms_runtime::service::bus_config(&common))
        .await
        .unwrap();
    bus.publish_durably(&NumberChanged {
        meta: Some(sms_bus::meta(sms_bus::new_event_id(), "bench-org", "")),
        number: OURS.into(),
        active: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();

    // Raw baseline: the same HTTP load against a handler that does nothing.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_url = format!("http://{}/hook", raw.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { "<Response></Response>" }),
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(raw, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    let (elapsed, lat) = load(&raw_url, requests(&raw_url, REQUESTS)).await;
    let raw_rate = report("raw HTTP baseline", REQUESTS, elapsed, &lat);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = sms_inbound::Config {
        common,
        public_url: base.clone(),
        twilio_accounts: HashMap::from([(ACCOUNT.to_owned(), TOKEN.to_owned())]),
        patience: std::time::Duration::from_secs(8),
    };
    tokio::spawn(sms_inbound::run(config, listener, shutdown.clone()));
    let url = format!("{base}/webhooks/twilio/incoming");
    // Wait until it answers (and knows our number).
    let probe = requests(&url, 1);
    loop {
        let r = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", &probe[0].1)
            .body(probe[0].0.clone())
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (elapsed, lat) = load(&url, requests(&url, REQUESTS)).await;
    let rate = report(
        "webhook ingestion (signature + durable publish)",
        REQUESTS,
        elapsed,
        &lat,
    );
    println!(
        "ingestion runs at {:.0}% of the raw HTTP baseline; target ≥ 10,000 req/s",
        100.0 * rate / raw_rate
    );
    let mut stream = bus
        .jetstream()
        .get_stream(bus.subjects().events_stream())
        .await
        .unwrap();
    println!(
        "events stored: {}",
        stream.info().await.unwrap().state.messages
    );
    shutdown.cancel();
    let _ = bus.delete_streams().await;
}
