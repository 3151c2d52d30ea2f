//! `sms-composer`: the composer service.

use std::net::SocketAddr;

use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("composer", &TelemetryConfig::from_env(&env)?);
    let config = sms_composer::Config::from_env(&env)?;
    let addr: SocketAddr =
        env.parse_or("SMS_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?;
    let listener = sms_runtime::health::bind(addr).await?;
    let media_addr: SocketAddr =
        env.parse_or("SMS_MEDIA_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?;
    let media = sms_runtime::health::bind(media_addr).await?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let result = sms_composer::run(config, listener, media, shutdown).await;
    telemetry.shutdown().await;
    result
}
