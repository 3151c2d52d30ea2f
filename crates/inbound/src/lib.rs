//! The inbound receiver: the stateless HTTP edge where carriers call us.
//!
//! * `POST /webhooks/twilio/status`: Twilio status callbacks → `{ns}.status.<status>` events;
//! * `POST /webhooks/twilio/incoming`: incoming messages → `{ns}.inbound.received` events.
//!
//! Every request must carry a valid `X-Twilio-Signature` for the public URL the carrier called
//! (403 otherwise, and nothing is published). A request is acknowledged only once its event is
//! durably stored in JetStream; events have ids derived from the carrier's `MessageSid`, so a
//! carrier retrying a webhook cannot create a second event.
//!
//! By concern: `config`, `app` (the receiver's state, the signature check, refusals),
//! `status` (status callbacks), `incoming` (contacts' messages).

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use sms_bus::Bus;
use sms_proto::events::v1::NumberChanged;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod app;
mod config;
mod incoming;
mod status;

pub use config::{Config, MAX_BODY_BYTES};

use crate::app::App;
use std::net::SocketAddr;

/// Runs the receiver on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = Bus::connect(sms_runtime::service::bus_config(&config.common))
        .await
        .context("inbound bus")?;
    let numbers = sms_bus::Holders::default();
    let copy = numbers.clone();
    let mut follower = bus
        .follow_state(
            sms_bus::StateKind::Number,
            shutdown.clone(),
            move |e: NumberChanged| copy.apply(&e),
        )
        .await?;
    if !follower
        .wait_ready(std::time::Duration::from_secs(30))
        .await
    {
        tracing::warn!("number copy not caught up after 30 s; starting anyway");
    }
    let app = Arc::new(App {
        bus,
        numbers,
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        accounts: config.twilio_accounts,
        patience: config.patience,
    });
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "inbound receiver listening");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("inbound HTTP server")
}

fn router(app: Arc<App>) -> Router {
    let bus = app.bus.clone();
    let ready: sms_runtime::health::ReadyCheck = Arc::new(move || {
        let connected = bus.is_connected();
        Box::pin(async move {
            if connected {
                Ok(())
            } else {
                Err("NATS is not connected".to_owned())
            }
        })
    });
    Router::new()
        .route("/webhooks/twilio/status", post(status::status_callback))
        .route("/webhooks/twilio/incoming", post(incoming::incoming))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
        .merge(sms_runtime::health::router(ready))
}
