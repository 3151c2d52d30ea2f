//! The opt-out registry: who may no longer be texted by an organization.
//!
//! * Inbound keywords (sms-core's list): STOP and synonyms opt the contact out for the whole
//!   organization (recording which of our numbers received it, and when) and trigger a one-time
//!   confirmation reply; START / YES / UNSTOP opt back in; HELP / INFO get the organization's
//!   help text. Replies are sent by the composer (`msg.autoreply`), so they appear on the
//!   conversation like any other message.
//! * A carrier's own opt-out error on a send (Twilio 21610) records the opt-out too, as the
//!   composer reports it (`msg.optout`) once it has matched the failure to the message it
//!   belongs to: a callback for a message we never sent, or signed by another account, opts
//!   no one out.
//! * gRPC `OptOuts`: check, list, add and remove by hand (who and why are recorded).
//! * Every change is published on the compacted state stream; the composer and every dispatcher
//!   replica keep a local copy of it. A change, its event and its reply are written in one
//!   transaction with the marker that the inbound message was handled (the outbox publishes
//!   them), so a crash or a database error at any point neither loses a STOP nor answers it
//!   twice.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sms_bus::ConsumerKind;
use sms_proto::events::v1::{CarrierOptOut, InboundReceived};
use sms_runtime::{CommonConfig, ConfigError, Env};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod grpc;
mod registry;

pub use registry::{Change, DEFAULT_CONFIRMATION, DEFAULT_HELP, OptOutRow, Registry};

/// The registry's schema.
pub const SCHEMA: &str = "optout";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
/// Registry settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_API_TOKENS`: `system:token:organizations` entries for the gRPC API (empty only in
    /// development: no authentication).
    pub api_tokens: sms_runtime::auth::Tokens,
}

impl Config {
    /// Reads the registry's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        Ok(Config {
            health_addr: sms_runtime::config::health_addr(env)?,
            api_tokens: sms_runtime::auth::tokens_from_env(env, common.development)?,
            common,
        })
    }
}
/// Runs the registry, serving gRPC `OptOuts` on `listener`, until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let base = sms_runtime::service::start(
        &config.common,
        SCHEMA,
        &MIGRATOR,
        config.health_addr,
        &shutdown,
    )
    .await?;
    let registry = Arc::new(Registry {
        pool: base.pool,
        outbox: base.outbox.clone(),
        tokens: config.api_tokens,
    });
    let r = registry.clone();
    let inbound = base.bus.consume(
        ConsumerKind::OptOutInbound,
        shutdown.clone(),
        move |e: InboundReceived, _| {
            let r = r.clone();
            async move { r.on_inbound(e).await }
        },
    );
    let r = registry.clone();
    let carrier = base.bus.consume(
        ConsumerKind::OptOutCarrier,
        shutdown.clone(),
        move |e: CarrierOptOut, _| {
            let r = r.clone();
            async move { r.on_carrier_opt_out(e).await }
        },
    );
    let server = grpc::serve(registry, listener, shutdown.clone());
    tracing::info!("opt-out registry running");
    let (a, b, c) = tokio::join!(inbound, carrier, server);
    base.relay.finish().await;
    a.context("inbound consumer")?;
    b.context("carrier opt-out consumer")?;
    c.context("OptOuts gRPC server")?;
    Ok(())
}
