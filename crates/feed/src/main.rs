//! `sms-feed`: the event feed and webhook delivery.

use std::net::SocketAddr;

use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("feed", &TelemetryConfig::from_env(&env)?);
    let config = sms_feed::Config::from_env(&env)?;
    let addr: SocketAddr =
        env.parse_or("SMS_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50053)))?;
    let listener = sms_runtime::health::bind(addr).await?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let result = sms_feed::run(config, Some(listener), shutdown).await;
    telemetry.shutdown().await;
    result
}
