//! What a service with state needs before it runs: its database schema, the bus, and health.

use std::net::SocketAddr;

use sms_bus::{Bus, BusConfig, BusError};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::CommonConfig;
use crate::db::{self, DbError};

/// A service's connections.
#[derive(Debug, Clone)]
pub struct Base {
    /// The pool, on the service's own schema, migrated.
    pub pool: PgPool,
    /// The bus of the configured namespace.
    pub bus: Bus,
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
    config
}

/// Connects the database (schema `schema`, migrated by `migrator`) and the bus, and serves
/// `/healthz` and `/readyz` on `health_addr` when given.
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
    Ok(Base { pool, bus })
}
