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

/// Connections a listener keeps waiting to be accepted (the kernel caps it at
/// `net.core.somaxconn`). Rust's standard listener asks for 128, tokio's for 1,024: a burst of
/// new connections beyond that (a dispatcher replica starting its 128 carrier calls at once,
/// beside the others) has its SYNs dropped, and each such connection waits a second or more
/// for the SYN to be sent again. A carrier call that waits so outlives its timeout without its
/// request ever leaving, and is taken for a call of unknown outcome.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with [`BACKLOG`], naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(named)?;
    socket.set_reuseaddr(true).map_err(named)?;
    socket.bind(addr).map_err(named)?;
    socket.listen(BACKLOG).map_err(named)
}

/// Binds `addr` with [`BACKLOG`] as a standard listener, for a server whose runtime starts
/// later (a peer served from a thread of its own), naming `addr` in the error.
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(named)?;
    socket.set_reuse_address(true).map_err(named)?;
    socket.bind(&addr.into()).map_err(named)?;
    socket
        .listen(i32::try_from(BACKLOG).unwrap_or(i32::MAX))
        .map_err(named)?;
    Ok(socket.into())
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
