//! Scheduler load generator (run with `cargo bench -p sms-e2e --bench scheduler`).
//!
//! On the real NATS and PostgreSQL, with one scheduler running in-process:
//! 1. burst: 100,000 messages due in the same second; how long from that second until every
//!    one is handed to the dispatcher (published on `msg.due` and stored by JetStream);
//! 2. steady: 1,000 messages due per second for 30 s; the fire lag (`msg.due` seen minus
//!    `send_at`), p50 / p99 / max.
//!
//! Rows are seeded straight into the scheduler's table (as `msg.scheduled` would leave them),
//! so what is measured is the firing path alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use sms_proto::events::v1::{MessageDue, OutboundMessage};
use tokio_util::sync::CancellationToken;

const BURST: usize = 100_000;
const RATE: usize = 1_000;
const STEADY_SECONDS: usize = 30;

async fn seed(pool: &sqlx::PgPool, times: &[DateTime<Utc>]) {
    for chunk in times.chunks(10_000) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut bodies = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let id = uuid::Uuid::now_v7();
            let m = OutboundMessage {
                message_id: id.to_string(),
                organization_id: "bench".into(),
                user_id: "u".into(),
                from: "+12015550100".into(),
                to: "+12015550123".into(),
                body: "benchmark message".into(),
                encoding: "GSM-7".into(),
                encoding_type: sms_proto::v1::Encoding::Gsm7 as i32,
                segments: 1,
                allow_opted_out: false,
                media_urls: Vec::new(),
                valid_until: None,
                validity_seconds: 0,
            };
            ids.push(id);
            bodies.push(m.encode_to_vec());
        }
        sqlx::query(
            "INSERT INTO scheduler.scheduled (message_id, organization_id, send_at, message)
             SELECT id, 'bench', at, msg FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bytea[])
                 AS t(id, at, msg)",
        )
        .bind(&ids)
        .bind(chunk)
        .bind(&bodies)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    sms_testkit::init_tracing();
    let database_url = sms_testkit::fresh_database().await;
    let namespace = sms_testkit::fresh_namespace();
    let common = sms_testkit::common_config(&namespace, &database_url, 8, Duration::from_secs(30));
    let bus = sms_bus::Bus::connect(sms_runtime::service::bus_config(&common))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let config = sms_scheduler::Config {
        common: common.clone(),
        health_addr: None,
        batch: std::env::var("SMS_FIRE_BATCH")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(1000),
        poll: Duration::from_secs(1),
        late_after: Duration::from_secs(5),
    };
    println!("scheduler batch: {} rows per firing round", config.batch);
    let scheduler = tokio::spawn(sms_scheduler::run(config, shutdown.clone()));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(
            database_url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .options([("search_path", "scheduler")]),
        )
        .await
        .unwrap();
    // Wait for the scheduler's migrations.
    while sqlx::query("SELECT 1 FROM scheduler.scheduled LIMIT 1")
        .execute(&pool)
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut due = bus
        .client()
        .subscribe(bus.subjects().msg_due_all())
        .await
        .unwrap();
    bus.client().flush().await.unwrap();

    // Both phases are seeded up front: rows written straight to the table do not wake a
    // sleeping scheduler the way a `msg.scheduled` event does, so the scheduler must see them
    // before it next computes how long to sleep.
    let at = Utc::now() + chrono::Duration::seconds(20);
    let start = at + chrono::Duration::seconds(40);
    let times: Vec<DateTime<Utc>> = (0..RATE * STEADY_SECONDS)
        .map(|i| start + chrono::Duration::microseconds((i * 1_000_000 / RATE) as i64))
        .collect();
    let seeding = Instant::now();
    seed(&pool, &vec![at; BURST]).await;
    seed(&pool, &times).await;
    println!(
        "seeded {BURST} rows due at {at} and {} due from {start} at {RATE}/s in {:.1?}",
        times.len(),
        seeding.elapsed()
    );

    // 1. Burst.
    let mut seen = 0usize;
    let mut last = Utc::now();
    while seen < BURST {
        let msg = tokio::time::timeout(Duration::from_secs(120), due.next())
            .await
            .unwrap()
            .unwrap();
        let _ = MessageDue::decode(msg.payload).unwrap();
        seen += 1;
        last = Utc::now();
    }
    let took = (last - at).to_std().unwrap_or_default();
    println!(
        "burst: all {BURST} handed on {:.2} s after they fell due ({:.0} msg/s); target ≤ 20 s",
        took.as_secs_f64(),
        BURST as f64 / took.as_secs_f64()
    );

    // 2. Steady 1,000 per second.
    let mut lags = Vec::with_capacity(times.len());
    while lags.len() < times.len() {
        let msg = tokio::time::timeout(Duration::from_secs(90), due.next())
            .await
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let due = MessageDue::decode(msg.payload).unwrap();
        let t = due.send_at.unwrap();
        let send_at = DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap();
        lags.push((now - send_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "steady: {} messages at {RATE}/s; fire lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; target p99 ≤ 250 ms",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags[lags.len() - 1]
    );
    shutdown.cancel();
    let _ = scheduler.await;
    let _ = bus.delete_streams().await;
}
