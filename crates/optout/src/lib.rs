//! The opt-out registry: classifies every inbound message with `sms-core`'s keywords and keeps
//! the opt-out state per (organization, contact number), publishing every change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sms_bus::{Bus, ConsumerKind, HandleError};
use sms_core::{Keyword, PhoneNumber};
use sms_proto::v1::events::{InboundReceived, OptOutChanged};
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The registry's schema.
pub const SCHEMA: &str = "optout";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Registry settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz` and `/readyz` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
}

impl Config {
    /// Reads the registry's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            health_addr: sms_runtime::config::health_addr(env)?,
        })
    }
}

struct Registry {
    pool: PgPool,
    bus: Bus,
}

/// Runs the registry until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let base = sms_runtime::service::start(
        &config.common,
        SCHEMA,
        &MIGRATOR,
        config.health_addr,
        &shutdown,
    )
    .await?;
    let (pool, bus) = (base.pool, base.bus);
    let registry = Arc::new(Registry {
        pool,
        bus: bus.clone(),
    });
    tracing::info!("opt-out registry running");
    bus.consume(
        ConsumerKind::OptOutInbound,
        shutdown,
        move |e: InboundReceived, _| {
            let r = registry.clone();
            async move { r.on_inbound(e).await }
        },
    )
    .await
    .context("inbound consumer")
}

impl Registry {
    async fn on_inbound(&self, e: InboundReceived) -> Result<(), HandleError> {
        let opted_out = match sms_core::keywords::classify(&e.body) {
            Some(Keyword::OptOut) => true,
            Some(Keyword::OptIn) => false,
            Some(Keyword::Help) | None => return Ok(()),
        };
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("inbound event without meta".into()));
        };
        let contact = PhoneNumber::parse_valid(&e.from, None)
            .map_err(|err| HandleError::Permanent(format!("inbound sender: {err}")))?;
        sqlx::query!(
            "INSERT INTO optout.opt_outs (organization_id, contact_number, opted_out, our_number, source)
             VALUES ($1, $2, $3, $4, 'keyword')
             ON CONFLICT (organization_id, contact_number) DO UPDATE
                SET opted_out = $3, our_number = $4, source = 'keyword', changed_at = now()",
            meta.organization_id,
            contact.e164(),
            opted_out,
            e.to
        )
        .execute(&self.pool)
        .await
        .map_err(|err| HandleError::Retry {
            reason: format!("database: {err}"),
            delay: Duration::from_millis(500),
        })?;
        let change = OptOutChanged {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[&meta.event_id, "optout"]),
                &meta.organization_id,
                "",
            )),
            contact_number: contact.e164().to_owned(),
            opted_out,
            our_number: e.to.clone(),
            source: "keyword".into(),
        };
        self.bus
            .publish_durably(&change)
            .await
            .map_err(|err| HandleError::Retry {
                reason: err.to_string(),
                delay: Duration::from_millis(500),
            })
    }
}
