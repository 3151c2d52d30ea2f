//! `carrier-sim`: the Twilio-compatible carrier simulator as a standalone server.
//!
//! Configuration (`SMS_SIM_*`): `ADDR` (default 127.0.0.1:8090), `ACCOUNT_SID`, `AUTH_TOKEN`,
//! `LANDLINES`, `SPAM`, `UNKNOWN_ERROR`, `UNREACHABLE`, `OPTED_OUT` (comma-separated E.164
//! numbers), `LATENCY_MS`, `CALLBACK_DELAY_MS`, `RATE_429`, `RATE_5XX`, `INCOMING_URL` (where
//! contacts' messages go: the platform's incoming-message webhook), `AUTO_REPLY` (a contact
//! who answers every message taken with this text) and `AUTO_REPLY_WHEN` (only messages
//! containing this). `POST /_sim/reply` (`smsctl sim reply`) makes a contact text us.
//!
//! SMPP: `SMPP_ADDR` (the SMSC's address; none when unset), `SMPP_SYSTEM_ID` and
//! `SMPP_PASSWORD` (default `sim`/`simpass`), `SMPP_GSM7` (`unpacked` or `packed`), `SMPP_MO`
//! (`all`: every contact's message comes over SMPP).

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
    let sim = Sim::new(config)?;
    let smpp = match env.raw("SMS_SIM_SMPP_ADDR") {
        Some(_) => {
            let smpp_addr: SocketAddr = env.parse_or(
                "SMS_SIM_SMPP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 2775)),
            )?;
            let listener = sms_runtime::health::bind(smpp_addr).await?;
            tracing::info!(addr = %smpp_addr, "SMSC listening");
            Some(tokio::spawn(
                sim.clone().serve_smpp(listener, shutdown.clone()),
            ))
        }
        None => None,
    };
    sim.serve(listener, shutdown)
        .await
        .context("carrier simulator")?;
    if let Some(smpp) = smpp {
        smpp.await.context("SMSC")??;
    }
    telemetry.shutdown().await;
    Ok(())
}
