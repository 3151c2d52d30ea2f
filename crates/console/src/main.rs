//! `sms-console`: the operator console on its own.

use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = Telemetry::init("console", &TelemetryConfig::from_env(&env)?);
    let config = sms_console::Config::from_env(&env)?;
    let addr = env.parse_or("SMS_CONSOLE_ADDR", sms_console::DEFAULT_ADDR)?;
    let listener = sms_runtime::health::bind(addr).await?;
    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let result = sms_console::run(config, listener, shutdown).await;
    telemetry.shutdown().await;
    result
}
