//! `carrier-sim`: the Twilio-compatible carrier simulator as a standalone server.
//!
//! Configuration (`SMS_SIM_*`): `ADDR` (default 127.0.0.1:8090), `ACCOUNT_SID`, `AUTH_TOKEN`,
//! `LANDLINES`, `SPAM`, `UNKNOWN_ERROR`, `UNREACHABLE`, `OPTED_OUT` (comma-separated E.164
//! numbers), `LATENCY_MS`, `CALLBACK_DELAY_MS`, `RATE_429`, `RATE_5XX`, `INCOMING_URL` (where
//! contacts' messages go: the platform's incoming-message webhook), `AUTO_REPLY` (a contact
//! who answers every message taken with this text) and `AUTO_REPLY_WHEN` (only messages
//! containing this). `POST /_sim/reply` (`smsctl sim reply`) makes a contact text us.

use std::net::SocketAddr;

use anyhow::Context;
use sms_carrier_sim::Sim;
use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("carrier-sim", &TelemetryConfig::from_env(&env)?);
    let addr: SocketAddr =
        env.parse_or("SMS_SIM_ADDR", SocketAddr::from(([127, 0, 0, 1], 8090)))?;
    let config = sms_carrier_sim::config_from_env(&env)?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let listener = sms_runtime::health::bind(addr).await?;
    tracing::info!(%addr, "carrier simulator listening");
    Sim::new(config)?
        .serve(listener, shutdown)
        .await
        .context("carrier simulator")?;
    telemetry.shutdown().await;
    Ok(())
}
