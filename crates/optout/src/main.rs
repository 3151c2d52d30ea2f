//! `sms-optout`: the opt-out registry service.

use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("optout", &TelemetryConfig::from_env(&env)?);
    let config = sms_optout::Config::from_env(&env)?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let result = sms_optout::run(config, shutdown).await;
    telemetry.shutdown().await;
    result
}
