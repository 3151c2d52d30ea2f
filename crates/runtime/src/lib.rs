//! What every service binary shares: configuration from `SMS_*` variables, tracing and
//! OpenTelemetry, the Postgres pool with the service's own schema and migrations, health
//! endpoints, and graceful shutdown on SIGINT / SIGTERM.

pub mod config;
pub mod db;
pub mod health;
pub mod telemetry;

pub use config::{CommonConfig, ConfigError, Env};
pub use telemetry::{Telemetry, TelemetryConfig};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGINT or SIGTERM; a second signal exits at once.
pub fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (send the signal again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
