//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer) over HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A readiness check: `Ok` when ready, `Err(why)` otherwise.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The health routes, to merge into a service's own router or serve alone.
pub fn router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready)
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
