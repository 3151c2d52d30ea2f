//! What a service with state needs before it runs: its database schema, the bus, and health.

use std::net::SocketAddr;

use sms_bus::{Bus, BusConfig, BusError};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::CommonConfig;
use crate::db::{self, DbError};
use crate::outbox::{Outbox, OutboxConfig};

/// A service's connections.
#[derive(Debug)]
pub struct Base {
    /// The pool, on the service's own schema, migrated.
    pub pool: PgPool,
    /// The bus of the configured namespace.
    pub bus: Bus,
    /// The service's outbox (in its schema), whose relay runs until shutdown.
    pub outbox: Outbox,
    /// The outbox's relay: [`Relay::finish`] it last, once nothing writes to the outbox any
    /// more, so that it publishes what is left before the service stops.
    pub relay: Relay,
}

/// A running outbox relay.
#[derive(Debug)]
pub struct Relay {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying `outbox` until [`Relay::finish`].
    pub fn start(outbox: &Outbox) -> Relay {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(outbox.clone().run(stop.clone()));
        Relay { stop, handle }
    }

    /// Publishes what is left (for a few seconds at most) and stops.
    pub async fn finish(self) {
        self.stop.cancel();
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "outbox relay stopped abnormally");
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error("{schema} database: {source}")]
    Database {
        /// The service's schema.
        schema: String,
        /// The cause.
        source: DbError,
    },
    /// The bus.
    #[error("{schema} bus: {source}")]
    Bus {
        /// The service's schema.
        schema: String,
        /// The cause.
        source: BusError,
    },
    /// The health listener.
    #[error("health endpoint: {0}")]
    Health(std::io::Error),
}

/// The bus settings of `common`.
pub fn bus_config(common: &CommonConfig) -> BusConfig {
    let mut config = BusConfig::new(&common.nats_url, &common.namespace);
    config.ack_wait = common.ack_wait;
    config.max_deliver = common.max_deliver;
    config.replicas = common.stream_replicas;
    config.auth = common.nats_auth.clone();
    config.tls = common.nats_tls.clone();
    config
}

/// Connects the database (schema `schema`, migrated by `migrator`) and the bus, starts the
/// outbox relay, and serves `/healthz` and `/readyz` on `health_addr` when given.
pub async fn start(
    common: &CommonConfig,
    schema: &str,
    migrator: &Migrator,
    health_addr: Option<SocketAddr>,
    shutdown: &CancellationToken,
) -> Result<Base, StartError> {
    crate::metrics::install();
    let pool = db::connect(
        &common.database_url,
        schema,
        common.db_max_connections,
        migrator,
    )
    .await
    .map_err(|source| StartError::Database {
        schema: schema.to_owned(),
        source,
    })?;
    let bus = Bus::connect(bus_config(common))
        .await
        .map_err(|source| StartError::Bus {
            schema: schema.to_owned(),
            source,
        })?;
    if let Some(addr) = health_addr {
        let b = bus.clone();
        crate::health::spawn_standard(
            addr,
            pool.clone(),
            move || b.is_connected(),
            shutdown.clone(),
        )
        .await
        .map_err(StartError::Health)?;
    }
    let outbox = Outbox::new(
        schema,
        pool.clone(),
        bus.clone(),
        OutboxConfig {
            poll: common.outbox_poll,
            ..OutboxConfig::default()
        },
    );
    let relay = Relay::start(&outbox);
    Ok(Base {
        pool,
        bus,
        outbox,
        relay,
    })
}
