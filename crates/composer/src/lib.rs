//! The composer: the gRPC front door of the platform.
//!
//! It validates every send with `sms-core` (sender ownership, countries, body), stores the
//! message with its segments and status history in its own schema, publishes it for the
//! dispatcher, and applies status events so `GetMessage` shows the whole lifecycle.
//!
//! By capability: [`grpc`] (the only place that sees protobuf requests), [`send`] (the typed
//! command, the rules, accepting and publishing), [`status`], [`schedule`], [`inbox`]
//! (inbound messages, conversations, inboxes), [`messages`] (reads and reports),
//! [`numbers`], [`templates`], [`media`], and [`store`] with one module per aggregate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use sms_bus::ConsumerKind;
use sms_proto::events::v1::StatusChanged;
use sms_proto::v1::contacts_service_server::ContactsServiceServer;
use sms_proto::v1::events_service_server::EventsServiceServer;
use sms_proto::v1::messaging_service_server::MessagingServiceServer;
use sms_proto::v1::numbers_service_server::NumbersServiceServer;
use sms_proto::v1::settings_service_server::SettingsServiceServer;
use sms_proto::v1::templates_service_server::TemplatesServiceServer;
use sms_proto::v1::webhooks_service_server::WebhooksServiceServer;
use sms_runtime::{CommonConfig, ConfigError, Env};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub mod check;
pub mod contacts;
pub mod error;
pub mod feed;
pub mod fields;
pub mod grpc;
pub mod inbox;
pub mod media;
pub mod messages;
pub mod schedule;
pub mod send;
pub mod settings;
pub mod status;
pub mod store;
pub mod templates;

pub use error::{
    Common, ContactsError, MediaError, MessagesError, SendError, SettingsError, TemplatesError,
};

/// The standard health service's name.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Largest gRPC message (attachments travel in SendMessage and GetMedia).
pub const MAX_GRPC_MESSAGE: usize = 16 * 1024 * 1024;
/// Writer tasks storing accepted messages: one gathers a batch while the others commit.
const WRITERS: usize = 4;

/// The composer's schema.
pub const SCHEMA: &str = "composer";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Composer settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_API_TOKENS`: `system:token:organizations` entries, comma-separated. Empty only in
    /// development: no authentication.
    pub api_tokens: sms_runtime::auth::Tokens,
    /// `SMS_SCHEDULE_HORIZON_DAYS`: how far ahead a message may be scheduled.
    pub schedule_horizon_days: i64,
    /// `SMS_MEDIA_PUBLIC_URL`, `SMS_MEDIA_SECRET`, and the Twilio accounts with their media
    /// hosts (`SMS_TWILIO_MEDIA_HOSTS`, for inbound media).
    pub media: media::MediaConfig,
    /// How attachment URLs and carrier media are fetched (`SMS_FETCH_ALLOW_HTTP`,
    /// `SMS_FETCH_ALLOW_PRIVATE`, development only).
    pub fetch: sms_runtime::fetch::FetchPolicy,
    /// How messages whose status stopped moving are asked about.
    pub status_check: check::CheckConfig,
    /// How webhook endpoints are checked (`SMS_WEBHOOK_*`, as the feed service reads them):
    /// the composer answers the feed's calls too.
    pub webhooks: sms_feed::WebhookConfig,
    /// The carrier account numbers are rented from (`SMS_TWILIO_API_URL`,
    /// `SMS_TWILIO_ACCOUNT_SID`, `SMS_TWILIO_AUTH_TOKEN`, `SMS_PUBLIC_URL`,
    /// `SMS_CARRIER_TIMEOUT_MS`, `SMS_CARRIER_RELEASE_RETRY_MS`); none: searching, renting and importing are refused.
    pub carrier: Option<sms_numbers::CarrierConfig>,
    /// `SMS_CARRIER_CONNECTIONS`: the carrier connections numbers may be routed to (comma
    /// separated; by default `twilio`, and the SMPP connection `SMS_SMPP_NAME` (`smpp`) when
    /// `SMS_SMPP_ADDR` is set or `SMS_CARRIER=smpp`). Set it where the composer does not see
    /// the dispatchers' variables.
    pub carrier_connections: Vec<String>,
    /// `SMS_CARRIER=smpp`: numbers with no route of their own send over SMPP, text only (an
    /// MMS from them is refused).
    pub smpp_default: bool,
}

impl Config {
    /// Reads the composer's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env)?;
        let dev = common.development;
        let accounts = sms_runtime::config::twilio_accounts(env)?;
        let hosts = sms_runtime::config::twilio_media_hosts(env, &accounts)?;
        let carriers = accounts
            .into_iter()
            .map(|(sid, auth_token)| {
                let media_hosts = hosts.get(&sid).cloned().unwrap_or_default();
                (
                    sid,
                    media::CarrierAccount {
                        auth_token,
                        media_hosts,
                    },
                )
            })
            .collect();
        let fetch = sms_runtime::config::fetch_policy(env, dev, media::MAX_FETCH)?;
        Ok(Config {
            carrier_connections: carrier_connections(env)?,
            smpp_default: env.raw("SMS_CARRIER").as_deref() == Some("smpp"),
            carrier: carrier_config(env)?,
            webhooks: sms_feed::WebhookConfig::from_env(env, &fetch)?,
            health_addr: sms_runtime::config::health_addr(env)?,
            api_tokens: sms_runtime::auth::tokens_from_env(env, dev)?,
            schedule_horizon_days: env.parse_or(
                "SMS_SCHEDULE_HORIZON_DAYS",
                sms_core::schedule::DEFAULT_HORIZON_DAYS,
            )?,
            media: media::MediaConfig {
                public_url: env.string_or("SMS_MEDIA_PUBLIC_URL", "http://127.0.0.1:8081"),
                secret: sms_runtime::config::signing_key(env, "SMS_MEDIA_SECRET", dev)?,
                carriers,
            },
            fetch,
            status_check: status_check(env)?,
            common,
        })
    }
}

/// The carrier connections numbers may be routed to.
fn carrier_connections(env: &Env<'_>) -> Result<Vec<String>, ConfigError> {
    let names: Vec<String> = match env.raw("SMS_CARRIER_CONNECTIONS") {
        Some(list) => list
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
        None => {
            let mut names = vec![TWILIO_CONNECTION.to_owned()];
            if env.raw("SMS_SMPP_ADDR").is_some()
                || env.raw("SMS_CARRIER").as_deref() == Some("smpp")
            {
                names.push(env.string_or("SMS_SMPP_NAME", "smpp"));
            }
            names
        }
    };
    if let Some(bad) = names.iter().find(|n| !is_connection_name(n)) {
        return Err(ConfigError::new(
            "SMS_CARRIER_CONNECTIONS",
            bad.clone(),
            "a connection name is 1 to 32 letters, digits, - or _",
        ));
    }
    Ok(names)
}

pub use sms_numbers::{TWILIO_CONNECTION, is_connection_name};

/// The carrier account numbers are rented from: set when `SMS_TWILIO_ACCOUNT_SID` is.
fn carrier_config(env: &Env<'_>) -> Result<Option<sms_numbers::CarrierConfig>, ConfigError> {
    let Some(account_sid) = env.raw("SMS_TWILIO_ACCOUNT_SID") else {
        return Ok(None);
    };
    let auth_token = env.raw("SMS_TWILIO_AUTH_TOKEN").ok_or_else(|| {
        ConfigError::new(
            "SMS_TWILIO_AUTH_TOKEN",
            "",
            "the Twilio auth token is required with SMS_TWILIO_ACCOUNT_SID",
        )
    })?;
    let public_url = env.raw("SMS_PUBLIC_URL").ok_or_else(|| {
        ConfigError::new(
            "SMS_PUBLIC_URL",
            "",
            "where the carrier reaches our webhooks is required with SMS_TWILIO_ACCOUNT_SID \
             (rented numbers send their incoming messages there)",
        )
    })?;
    if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
        return Err(ConfigError::new(
            "SMS_PUBLIC_URL",
            public_url,
            "expected an http(s) URL",
        ));
    }
    Ok(Some(sms_numbers::CarrierConfig {
        api_url: env.string_or("SMS_TWILIO_API_URL", "https://api.twilio.com"),
        account_sid,
        auth_token,
        public_url,
        timeout: env.millis_or("SMS_CARRIER_TIMEOUT_MS", Duration::from_secs(15))?,
        release_retry: env
            .millis_or("SMS_CARRIER_RELEASE_RETRY_MS", sms_numbers::GIVE_BACK_EVERY)?,
    }))
}

/// `SMS_STATUS_CHECK_AFTER_MS` and `SMS_STATUS_CHECKS`.
fn status_check(env: &Env<'_>) -> Result<check::CheckConfig, ConfigError> {
    let defaults = check::CheckConfig::default();
    let after = env.millis_or("SMS_STATUS_CHECK_AFTER_MS", defaults.after)?;
    if after < Duration::from_secs(1) {
        return Err(ConfigError::new(
            "SMS_STATUS_CHECK_AFTER_MS",
            after.as_millis().to_string(),
            "must be at least 1000 (a status needs time to move)",
        ));
    }
    let max_checks = env.parse_or("SMS_STATUS_CHECKS", defaults.max_checks)?;
    if !(0..=100).contains(&max_checks) {
        return Err(ConfigError::new(
            "SMS_STATUS_CHECKS",
            max_checks.to_string(),
            "expected 0 (never ask) to 100",
        ));
    }
    Ok(check::CheckConfig { after, max_checks })
}

/// Runs the composer, serving gRPC on `listener` and attachments to carriers on
/// `media_listener`, until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    media_listener: TcpListener,
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
    let (pool, bus, outbox) = (base.pool, base.bus, base.outbox);
    if config.api_tokens.is_empty() {
        tracing::warn!(
            "SMS_API_TOKENS is empty: gRPC calls are not authenticated (development only)"
        );
    }
    let opt_outs = bus
        .state_set(
            sms_bus::StateKind::OptOut,
            shutdown.clone(),
            Duration::from_secs(30),
            sms_bus::opted_out_entry,
        )
        .await?;
    // Held numbers by sender: every add and release elsewhere drops the entry here.
    let senders = sms_numbers::SenderCache::default();
    let forget = senders.clone();
    bus.follow_state(
        sms_bus::StateKind::Number,
        shutdown.clone(),
        move |e: sms_proto::events::v1::NumberChanged| {
            let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
            forget.forget(&org, &e.number);
        },
    )
    .await?;
    // The capabilities, each holding only what it uses.
    let written = sms_feed::Written::over(&bus, shutdown.clone()).await?;
    let settings = settings::OrgSettings::new(pool.clone());
    let media = media::Media::new(
        pool.clone(),
        config.media.clone(),
        sms_runtime::fetch::Fetcher::new(config.fetch.clone())?,
    );
    let handoff = send::accept::Handoff::new(outbox.clone(), media.config().clone());
    let messages = messages::Messages::new(pool.clone(), settings.clone());
    let statuses = status::Statuses::new(pool.clone(), outbox.clone(), written.clone());
    let routes = sms_numbers::Routes {
        connections: config.carrier_connections.clone(),
        smpp_default: config.smpp_default,
    };
    let numbers = sms_numbers::Numbers::new(
        pool.clone(),
        outbox.clone(),
        written.clone(),
        senders.clone(),
        config
            .carrier
            .clone()
            .map(sms_numbers::Carrier::new)
            .transpose()?,
        routes.clone(),
    );
    let horizon = send::command::Horizon(config.schedule_horizon_days);
    let sending = send::Sending::new(send::SendingParts {
        pool: pool.clone(),
        writer: send::accept::Writer::start(pool.clone(), outbox.clone(), WRITERS),
        senders: send::policy::Senders::new(pool.clone(), senders),
        routes,
        settings: settings.clone(),
        opt_outs,
        media: media.clone(),
        horizon,
        handoff: handoff.clone(),
    });
    let inbox = inbox::Inbox::new(
        pool.clone(),
        outbox.clone(),
        written.clone(),
        media.clone(),
        messages.clone(),
        settings.clone(),
        handoff,
    );
    let scheduling = schedule::Scheduling::new(
        pool.clone(),
        bus.clone(),
        horizon,
        statuses.clone(),
        messages.clone(),
        settings.clone(),
    );
    let auth = grpc::Auth::new(config.api_tokens.clone());
    // The feed's services, answered here too (one address serves everything); webhook
    // delivery, opt-out entries and pruning are the feed service's (sms-feed, or smsd).
    let (events_api, webhooks_api) =
        sms_feed::apis(&pool, &written, &config.webhooks, &auth, &shutdown)?;
    tokio::spawn(sms_runtime::health::serve(
        media_listener,
        media::router(media),
        shutdown.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MessagingServiceServer<grpc::MessagingApi>>()
        .await;
    health_reporter
        .set_serving::<NumbersServiceServer<sms_numbers::grpc::NumbersApi>>()
        .await;
    health_reporter
        .set_serving::<TemplatesServiceServer<grpc::TemplatesApi>>()
        .await;
    health_reporter
        .set_serving::<SettingsServiceServer<grpc::SettingsApi>>()
        .await;
    health_reporter
        .set_serving::<ContactsServiceServer<grpc::ContactsApi>>()
        .await;
    health_reporter
        .set_serving::<EventsServiceServer<sms_feed::grpc::EventsApi>>()
        .await;
    health_reporter
        .set_serving::<WebhooksServiceServer<sms_feed::grpc::WebhooksApi>>()
        .await;
    let reflection = sms_proto::Reflection::new(
        &[
            <MessagingServiceServer<grpc::MessagingApi> as NamedService>::NAME,
            <NumbersServiceServer<sms_numbers::grpc::NumbersApi> as NamedService>::NAME,
            <TemplatesServiceServer<grpc::TemplatesApi> as NamedService>::NAME,
            <SettingsServiceServer<grpc::SettingsApi> as NamedService>::NAME,
            <ContactsServiceServer<grpc::ContactsApi> as NamedService>::NAME,
            <EventsServiceServer<sms_feed::grpc::EventsApi> as NamedService>::NAME,
            <WebhooksServiceServer<sms_feed::grpc::WebhooksApi> as NamedService>::NAME,
            HEALTH_SERVICE,
        ],
        &[tonic_health::pb::FILE_DESCRIPTOR_SET],
    );
    let reflection_v1alpha = reflection.v1alpha().context("gRPC reflection")?;
    let reflection = reflection.v1().context("gRPC reflection")?;

    let applier = statuses;
    // Statuses arrive three or four per message: applied a batch per transaction.
    let statuses = bus.consume_batches(
        ConsumerKind::ComposerStatus,
        shutdown.clone(),
        move |batch: Vec<(StatusChanged, sms_bus::Delivery)>| {
            let statuses = applier.clone();
            async move {
                let events: Vec<StatusChanged> = batch.into_iter().map(|(e, _)| e).collect();
                statuses.apply_statuses(&events).await
            }
        },
    );
    let inbound_inbox = inbox.clone();
    let inbound = bus.consume(
        ConsumerKind::ComposerInbound,
        shutdown.clone(),
        move |e: sms_proto::events::v1::InboundReceived, _| {
            let inbox = inbound_inbox.clone();
            async move { inbox.on_inbound(&e).await }
        },
    );
    let reply_inbox = inbox.clone();
    let replies = bus.consume(
        ConsumerKind::ComposerAutoReply,
        shutdown.clone(),
        move |e: sms_proto::events::v1::AutoReply, _| {
            let inbox = reply_inbox.clone();
            async move { inbox.on_auto_reply(&e).await }
        },
    );
    let checks = check::run(
        check::StatusChecks::new(pool.clone(), outbox.clone()),
        config.status_check,
        shutdown.clone(),
    );
    let give_backs = numbers.clone().run_give_backs(shutdown.clone());
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "composer serving gRPC");
    let server = tonic::transport::Server::builder()
        // Tonic's own refusal of an over-large request, with a reason like every other.
        .layer(sms_runtime::grpc_limits::ReasonedLimits)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            MessagingServiceServer::new(grpc::MessagingApi::new(
                auth.clone(),
                sending,
                messages,
                inbox,
                scheduling,
            ))
            .max_encoding_message_size(MAX_GRPC_MESSAGE)
            .max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(NumbersServiceServer::new(
            sms_numbers::grpc::NumbersApi::new(auth.clone(), numbers),
        ))
        .add_service(SettingsServiceServer::new(grpc::SettingsApi::new(
            auth.clone(),
            settings,
        )))
        .add_service(ContactsServiceServer::new(grpc::ContactsApi::new(
            auth.clone(),
            contacts::Contacts::new(pool.clone()),
        )))
        .add_service(EventsServiceServer::new(events_api))
        .add_service(WebhooksServiceServer::new(webhooks_api))
        .add_service(TemplatesServiceServer::new(grpc::TemplatesApi::new(
            auth,
            templates::Templates::new(pool.clone()),
        )))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.clone().cancelled_owned(),
        );
    let (served, consumed, inbound, replies, (), ()) =
        tokio::join!(server, statuses, inbound, replies, checks, give_backs);
    // Last: the relay publishes what the final commits left.
    base.relay.finish().await;
    served.context("gRPC server")?;
    consumed.context("status consumer")?;
    inbound.context("inbound consumer")?;
    replies.context("auto-reply consumer")?;
    tracing::info!("composer stopped");
    Ok(())
}
