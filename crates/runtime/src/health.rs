//! `/healthz` (the process is alive), `/readyz` (its dependencies answer) and `/metrics`
//! (Prometheus) over HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A readiness check: `Ok` when ready, `Err(why)` otherwise.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The health and metrics routes, to merge into a service's own router or serve alone.
/// Installs the process's metrics recorder if nothing has yet.
pub fn router(ready: ReadyCheck) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn metrics() -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    match crate::metrics::render() {
        Some(text) => (StatusCode::OK, content_type, text),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            content_type,
            "another metrics recorder is installed in this process\n".into(),
        ),
    }
}

async fn readyz(State(ready): State<ReadyCheck>) -> (StatusCode, String) {
    match ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves `/healthz` and `/readyz` on `addr` until `shutdown`, ready while `nats_connected`
/// says so and PostgreSQL answers `SELECT 1`.
pub async fn spawn_standard(
    addr: SocketAddr,
    pool: sqlx::PgPool,
    nats_connected: impl Fn() -> bool + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = bind(addr).await?;
    let nats_connected = Arc::new(nats_connected);
    let ready: ReadyCheck = Arc::new(move || {
        let pool = pool.clone();
        let connected = nats_connected();
        Box::pin(async move {
            if !connected {
                return Err("NATS is not connected".to_owned());
            }
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| format!("PostgreSQL: {e}"))
        })
    });
    tokio::spawn(serve(listener, router(ready), shutdown));
    Ok(())
}
