//! The event feed and webhook delivery: a service of its own, so that slow CRM endpoints and
//! many feed readers scale apart from the accept path.
//!
//! The feed is written by the composer, in the transactions of the changes it announces
//! (statuses, inbound messages, number changes), with [`entries::entry`] and
//! [`store::feed::append`]; its tables are in the composer's schema for that reason, and this
//! service works on them without migrating them (it waits until the composer has). This
//! service:
//! * serves `sms.v1.EventsService` ([`Feed`]: a subscription resumes exactly after its cursor)
//!   and `sms.v1.WebhooksService` ([`Webhooks`]: endpoints, attempts, replays); the composer
//!   serves both too, so that one address answers everything on a laptop;
//! * delivers webhooks (fan-out and signed POSTs, retried; any number of replicas share the
//!   work through the database);
//! * writes opt-out changes to the feed (the registry's state events, consumer `FeedOptOut`);
//! * prunes the feed and webhook attempts after their retention.
//!
//! Readers are woken after each commit that wrote the feed ([`Written`], over core NATS
//! between processes) and look on their own every quarter second.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use sms_bus::{Bus, ConsumerKind};
use sms_proto::v1::events_service_server::EventsServiceServer;
use sms_proto::v1::webhooks_service_server::WebhooksServiceServer;
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub mod entries;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod signal;
pub mod store;
pub mod webhooks;

pub use error::FeedError;
pub use feed::Feed;
pub use signal::Written;
pub use store::feed::NewEntry;
pub use webhooks::{WebhookConfig, Webhooks};

/// The schema the feed's tables are in: the composer's, which writes it.
pub const SCHEMA: &str = "composer";
/// The tables this service needs before it starts.
const TABLES: [&str; 5] = [
    "composer.feed",
    "composer.feed_horizon",
    "composer.webhook_endpoints",
    "composer.webhook_deliveries",
    "composer.webhook_attempts",
];
/// The standard health service's name.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// Events kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The feed service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_API_TOKENS`: as the composer's.
    pub api_tokens: sms_runtime::auth::Tokens,
    /// `SMS_FEED_RETENTION_DAYS`: how long the event feed keeps events (30 days); webhook
    /// attempts are kept as long.
    pub feed_retention: Duration,
    /// How webhooks are delivered (`SMS_WEBHOOK_*`).
    pub webhooks: WebhookConfig,
}

impl Config {
    /// Reads the feed service's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        let dev = common.development;
        let fetch = sms_runtime::config::fetch_policy(env, dev, webhooks::RESPONSE_KEPT)?;
        Ok(Config {
            health_addr: sms_runtime::config::health_addr(env)?,
            api_tokens: sms_runtime::auth::tokens_from_env(env, dev)?,
            feed_retention: Duration::from_secs(
                24 * 3600
                    * env
                        .parse_or::<u64>("SMS_FEED_RETENTION_DAYS", 30)?
                        .clamp(1, 3650),
            ),
            webhooks: WebhookConfig::from_env(env, &fetch)?,
            common,
        })
    }
}

/// The feed's two gRPC services over `pool`, woken by `written`, checking endpoint URLs by
/// `webhooks`' policy: what this service serves, and what the composer serves beside its own.
pub fn apis(
    pool: &PgPool,
    written: &Written,
    webhooks: &WebhookConfig,
    auth: &sms_runtime::rpc::Auth,
    shutdown: &CancellationToken,
) -> anyhow::Result<(grpc::EventsApi, grpc::WebhooksApi)> {
    let feed = Feed::new(pool.clone(), written.clone(), shutdown.clone());
    let hooks = Webhooks::new(
        pool.clone(),
        written.clone(),
        sms_runtime::fetch::Fetcher::new(webhooks.policy())?,
    );
    Ok((
        grpc::EventsApi::new(auth.clone(), feed),
        grpc::WebhooksApi::new(auth.clone(), hooks),
    ))
}

/// Runs the feed service until `shutdown`: webhook delivery, opt-out entries and pruning,
/// and the feed's gRPC services on `listener` when there is one (`smsd` runs it without:
/// there the composer serves them).
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    sms_runtime::metrics::install();
    let common = &config.common;
    let pool = sms_runtime::db::attach(&common.database_url, SCHEMA, common.db_max_connections)
        .await
        .context("feed database")?;
    let bus = Bus::connect(sms_runtime::service::bus_config(common))
        .await
        .context("feed bus")?;
    if let Some(addr) = config.health_addr {
        let b = bus.clone();
        sms_runtime::health::spawn_standard(
            addr,
            pool.clone(),
            move || b.is_connected(),
            shutdown.clone(),
        )
        .await
        .context("health endpoint")?;
    }
    if !sms_runtime::db::wait_for_tables(&pool, &TABLES, &shutdown).await {
        return Ok(());
    }
    let written = Written::over(&bus, shutdown.clone()).await?;
    let feed = Feed::new(pool.clone(), written.clone(), shutdown.clone());
    let hooks = Webhooks::new(
        pool.clone(),
        written.clone(),
        sms_runtime::fetch::Fetcher::new(config.webhooks.policy())?,
    );
    // Opt-outs are the registry's: their feed entries come from its state events, the entry
    // itself the marker that makes a redelivery change nothing.
    // The same capabilities serve the calls and run the loops (one fetcher, one wake-up).
    let auth = sms_runtime::rpc::Auth::new(config.api_tokens.clone());
    let apis = (
        grpc::EventsApi::new(auth.clone(), feed.clone()),
        grpc::WebhooksApi::new(auth, hooks.clone()),
    );
    let opt_outs = bus.consume(
        ConsumerKind::FeedOptOut,
        shutdown.clone(),
        move |e: sms_proto::events::v1::OptOutChanged, _| {
            let feed = feed.clone();
            async move { feed.on_opt_out(&e).await }
        },
    );
    let pruned = feed::prune(pool.clone(), config.feed_retention, shutdown.clone());
    let delivered = hooks.run_webhooks(config.webhooks.clone(), shutdown.clone());
    let served = async {
        let Some(listener) = listener else {
            return Ok(());
        };
        let (events, webhooks) = apis;
        serve(listener, events, webhooks, shutdown.clone()).await
    };
    tracing::info!("feed service running");
    let (opt_outs, (), (), served) = tokio::join!(opt_outs, pruned, delivered, served);
    opt_outs.context("opt-out feed consumer")?;
    served.context("gRPC server")?;
    tracing::info!("feed service stopped");
    Ok(())
}

async fn serve(
    listener: TcpListener,
    events: grpc::EventsApi,
    webhooks: grpc::WebhooksApi,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<EventsServiceServer<grpc::EventsApi>>()
        .await;
    health_reporter
        .set_serving::<WebhooksServiceServer<grpc::WebhooksApi>>()
        .await;
    let reflection = sms_proto::Reflection::new(
        &[
            <EventsServiceServer<grpc::EventsApi> as NamedService>::NAME,
            <WebhooksServiceServer<grpc::WebhooksApi> as NamedService>::NAME,
            HEALTH_SERVICE,
        ],
        &[tonic_health::pb::FILE_DESCRIPTOR_SET],
    );
    let reflection_v1alpha = reflection.v1alpha().context("gRPC reflection")?;
    let reflection = reflection.v1().context("gRPC reflection")?;
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "feed serving gRPC");
    tonic::transport::Server::builder()
        .layer(sms_runtime::grpc_limits::ReasonedLimits)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(EventsServiceServer::new(events))
        .add_service(WebhooksServiceServer::new(webhooks))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
