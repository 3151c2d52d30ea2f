//! What every test starts from: the servers, the test accounts, a database and a namespace of
//! its own, and the services' common settings.

use std::time::Duration;

use sms_runtime::CommonConfig;
use sqlx::Connection;

/// PostgreSQL server for tests.
pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

/// NATS server for tests.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// The simulator account used by tests.
pub const ACCOUNT_SID: &str = "ACtest0000000000000000000000000000";

/// Its auth token.
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789";

/// A second carrier account the stack's inbound receiver also takes callbacks from (a
/// deployment with several, `SMS_TWILIO_ACCOUNTS`); no message is sent through it.
pub const OTHER_ACCOUNT_SID: &str = "ACother000000000000000000000000000";

/// Its auth token.
pub const OTHER_AUTH_TOKEN: &str = "other-auth-token-0123456789";

/// The organization tests act as.
pub const ORG: &str = "org-a";

/// The user tests act as.
pub const USER: &str = "user-1";

/// Installs tracing once per process (so trace ids exist and propagate).
pub fn init_tracing() {
    // The standard OTEL_* variables apply (OTEL_SDK_DISABLED=true, say, for a benchmark
    // without any span bookkeeping); the log filter is SMS_TEST_LOG's.
    let mut config = sms_runtime::TelemetryConfig::from_env(&sms_runtime::Env::from_process())
        .unwrap_or_default();
    config.log = std::env::var("SMS_TEST_LOG").unwrap_or_else(|_| "warn".into());
    // Tests follow trace context through the services with no collector.
    config.context_without_export = true;
    // Kept for the life of the process: tests never flush spans anywhere.
    std::mem::forget(sms_runtime::Telemetry::init("tests", &config));
}

/// A fresh database `sms_test_<time>_<random>`; old ones from earlier runs are dropped.
pub async fn fresh_database() -> String {
    let mut admin = sqlx::PgConnection::connect(&format!("{PG_BASE}/postgres"))
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Databases of runs more than an hour old are garbage; dropping is best-effort.
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'sms_test_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in old {
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let name = format!("sms_test_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{PG_BASE}/{name}")
}

/// A fresh subject namespace.
pub fn fresh_namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// The common service settings for the local NATS and `database_url`, in `namespace`.
pub fn common_config(
    namespace: &str,
    database_url: &str,
    db_max_connections: u32,
    ack_wait: Duration,
) -> CommonConfig {
    CommonConfig {
        nats_url: NATS_URL.into(),
        namespace: namespace.to_owned(),
        database_url: database_url.to_owned(),
        db_max_connections,
        ack_wait,
        max_deliver: 5,
        stream_replicas: 1,
        development: true,
        outbox_poll: Duration::from_millis(200),
        nats_auth: sms_bus::NatsAuth::None,
        nats_tls: sms_bus::NatsTls::default(),
    }
}
