//! `sms-optout`: the opt-out registry service.

use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("optout", &TelemetryConfig::from_env(&env)?);
    let config = sms_optout::Config::from_env(&env)?;
    let addr: std::net::SocketAddr = env.parse_or(
        "SMS_OPTOUT_GRPC_ADDR",
        std::net::SocketAddr::from(([127, 0, 0, 1], 50052)),
    )?;
    let listener = sms_runtime::health::bind(addr).await?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let result = sms_optout::run(config, listener, shutdown).await;
    telemetry.shutdown().await;
    result
}
