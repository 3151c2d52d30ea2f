//! Full-pipeline load generator (run with `cargo bench -p sms-e2e --bench pipeline`).
//!
//! Every service in-process on the real NATS and PostgreSQL, the Twilio-compatible simulator
//! answering and calling back. Measures, against PERFORMANCE.md's targets:
//! * P1b: gRPC SendMessage → stored and published, as fast as 128 callers can go;
//! * P1: the same messages through the dispatcher, the carrier and its status callbacks until
//!   `delivered` is stored;
//! * P2: accept latency at 1,000 messages/s offered.
//!
//! `SMS_BENCH_DISPATCHERS=0` measures the accept path alone (P1b and P2 with nothing
//! dispatching; P1 is skipped).
//!
//! First, raw baselines on the same machine in the same run (PERFORMANCE.md: figures are quoted
//! as ratios to them): PostgreSQL single-row INSERTs with one commit each on 8 connections, and
//! JetStream publishes with 256 acknowledgements in flight.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message as _;
use sms_proto::events::v1::StatusChanged;
use sms_proto::v1::SendMessageRequest;
use sms_testkit::{Options, Stack, as_user};

const BURST: usize = 20_000;
const CALLERS: usize = 128;

fn request(i: usize) -> SendMessageRequest {
    SendMessageRequest {
        to: format!("+1201555{:04}", 1000 + i % 8000),
        from: "+12015550100".into(),
        body: format!("Hi, this is Sam from Acme about your order {i}"),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Raw PostgreSQL: single-row INSERT, one commit each, 8 connections, for `secs`.
async fn raw_postgres(database_url: &str, secs: u64) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(database_url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS raw_baseline (id bigserial PRIMARY KEY, body text)")
        .execute(&pool)
        .await
        .unwrap();
    let stop = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop {
                    sqlx::query("INSERT INTO raw_baseline (body) VALUES ($1)")
                        .bind("Hi, this is Sam from Acme about your order")
                        .execute(&pool)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    sqlx::query("DROP TABLE raw_baseline")
        .execute(&pool)
        .await
        .unwrap();
    total as f64 / secs as f64
}

/// Raw JetStream: publishes with `Nats-Msg-Id`, 256 acknowledgements in flight.
async fn raw_jetstream(bus: &sms_bus::Bus, count: usize) -> f64 {
    let js = bus.jetstream();
    let subject = format!("{}.msg.inbound", bus.subjects().namespace());
    let start = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    for i in 0..count {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("raw-{i}").as_str());
        acks.push_back(
            js.publish_with_headers(subject.clone(), headers, vec![0u8; 96].into())
                .await
                .unwrap(),
        );
        if acks.len() >= 256 {
            acks.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// An OTLP collector that takes spans and keeps nothing, for `SMS_BENCH_EXPORT=1`.
struct Sink;

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Sink {
    async fn export(
        &self,
        _request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Telemetry as a service has it (the standard variables: with no exporter, no OpenTelemetry
/// at all), installed before the stack's own. `SMS_BENCH_EXPORT=1`: every span exported to an
/// in-process collector; `SMS_BENCH_CONTEXT=1`: the tests' mode, trace context carried with
/// nothing exported.
async fn telemetry() -> sms_runtime::Telemetry {
    let mut config = sms_runtime::TelemetryConfig::from_env(&sms_runtime::Env::from_process())
        .expect("telemetry variables");
    config.log = "warn".into();
    if std::env::var_os("SMS_BENCH_EXPORT").is_some() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config.otlp_endpoint = Some(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(Sink),
                )
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }
    config.context_without_export = std::env::var_os("SMS_BENCH_CONTEXT").is_some();
    println!(
        "telemetry: {}",
        if config.sdk_disabled {
            "OpenTelemetry disabled (OTEL_SDK_DISABLED)".to_owned()
        } else if let Some(e) = &config.otlp_endpoint {
            format!("every span exported to {e}")
        } else if config.context_without_export {
            "trace context carried, nothing exported".to_owned()
        } else {
            "no exporter configured".to_owned()
        }
    );
    sms_runtime::Telemetry::init("pipeline-bench", &config)
}

#[tokio::main]
async fn main() {
    let dispatchers: usize = std::env::var("SMS_BENCH_DISPATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut options = Options {
        dispatchers,
        db_max_connections: 16,
        ack_wait: Duration::from_secs(30),
        ..Options::default()
    };
    options.sim.behaviour.callback_delay = Duration::ZERO;
    let _telemetry = telemetry().await;
    let stack = Stack::start_with(options).await;
    stack.add_number("+12015550100").await;
    let client = stack.messaging().await;
    let raw_pg = raw_postgres(&stack.database_url, 5).await;
    let raw_js = raw_jetstream(&stack.bus, 50_000).await;
    println!(
        "raw baselines: PostgreSQL {raw_pg:.0} single-row commits/s (8 connections); JetStream {raw_js:.0} publishes/s (256 acks in flight)"
    );

    // Accepted messages as they reach the bus (from the composer's outbox).
    let mut published = stack
        .bus
        .client()
        .subscribe(stack.bus.subjects().msg_accepted_all())
        .await
        .unwrap();

    // Delivered statuses as they are published (the composer stores each right after).
    let mut delivered = stack
        .bus
        .client()
        .subscribe(stack.bus.subjects().status(sms_core::Status::Delivered))
        .await
        .unwrap();
    stack.bus.client().flush().await.unwrap();

    // P1b and P1: a burst.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (mut client, next) = (client.clone(), next.clone());
        callers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= BURST {
                    return lat;
                }
                let t = Instant::now();
                client.send_message(as_user(request(i))).await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for c in callers {
        lat.extend(c.await.unwrap());
    }
    let accepted_in = start.elapsed();
    lat.sort_by(f64::total_cmp);
    println!(
        "P1b accept: {BURST} messages in {:.2} s = {:.0} msg/s (target ≥ 10,000) = {:.2}× raw PostgreSQL commits; latency p50 {:.1} ms, p99 {:.1} ms",
        accepted_in.as_secs_f64(),
        BURST as f64 / accepted_in.as_secs_f64(),
        BURST as f64 / accepted_in.as_secs_f64() / raw_pg,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let mut on_bus = HashSet::new();
    while on_bus.len() < BURST {
        let msg = tokio::time::timeout(Duration::from_secs(120), published.next())
            .await
            .expect("publishing stalled")
            .unwrap();
        let e = sms_proto::events::v1::MessageAccepted::decode(msg.payload).unwrap();
        on_bus.insert(e.meta.unwrap().message_id);
    }
    let published_in = start.elapsed();
    println!(
        "P1b published: all {BURST} on the bus in {:.2} s = {:.0} msg/s ({:.2}× raw PostgreSQL commits, {:.2}× raw JetStream publishes)",
        published_in.as_secs_f64(),
        BURST as f64 / published_in.as_secs_f64(),
        BURST as f64 / published_in.as_secs_f64() / raw_pg,
        BURST as f64 / published_in.as_secs_f64() / raw_js
    );
    drop(published);
    let mut seen = HashSet::new();
    while dispatchers > 0 && seen.len() < BURST {
        let msg = tokio::time::timeout(Duration::from_secs(120), delivered.next())
            .await
            .expect("deliveries stalled")
            .unwrap();
        let e = StatusChanged::decode(msg.payload).unwrap();
        seen.insert(e.meta.unwrap().message_id);
    }
    let all_in = start.elapsed();
    if dispatchers > 0 {
        println!(
            "P1 end to end: {BURST} delivered in {:.2} s = {:.0} msg/s (target ≥ 3,000) = {:.2}× raw PostgreSQL commits",
            all_in.as_secs_f64(),
            BURST as f64 / all_in.as_secs_f64(),
            BURST as f64 / all_in.as_secs_f64() / raw_pg
        );
    }
    // Let the composer drain the last statuses before measuring latency alone.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // P2: accept latency at 1,000 msg/s offered for 10 s.
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut tasks = Vec::new();
    for i in 0..10_000 {
        ticker.tick().await;
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            client
                .send_message(as_user(request(BURST + i)))
                .await
                .unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.unwrap());
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "P2 accept latency at 1,000 msg/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 15 ms)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    stack.shutdown().await;
}
