//! Test helpers: every test gets its own PostgreSQL database and its own NATS subject
//! namespace, so tests run in parallel without seeing each other; the services run in-process
//! on port 0; the carrier simulator is the only fake.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod cluster;

/// How a carrier's sends in doubt are resolved ([`Options::carrier_resolution`]).
pub use sms_dispatcher::{Resolution, Unanswered};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sms_bus::permissions::Service;
use sms_bus::{Bus, BusConfig};
use sms_carrier_sim::{Sim, SimConfig};
use sms_dispatcher::{Carrier, CarrierError, CarrierMessage, Receipt, Twilio};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use sms_proto::v1::{
    AddNumberRequest, GetMessageRequest, Message, MessageStatus, add_number_request,
};
use sms_runtime::CommonConfig;
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// PostgreSQL server for tests.
pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";
/// NATS server for tests.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// The simulator account used by tests.
pub const ACCOUNT_SID: &str = "ACtest0000000000000000000000000000";
/// Its auth token.
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789";
/// A second carrier account the stack's inbound receiver also takes callbacks from (a
/// deployment with several, `SMS_TWILIO_ACCOUNTS`); no message is sent through it.
pub const OTHER_ACCOUNT_SID: &str = "ACother000000000000000000000000000";
/// Its auth token.
pub const OTHER_AUTH_TOKEN: &str = "other-auth-token-0123456789";
/// The organization tests act as.
pub const ORG: &str = "org-a";
/// The user tests act as.
pub const USER: &str = "user-1";

/// Installs tracing once per process (so trace ids exist and propagate).
pub fn init_tracing() {
    // The standard OTEL_* variables apply (OTEL_SDK_DISABLED=true, say, for a benchmark
    // without any span bookkeeping); the log filter is SMS_TEST_LOG's.
    let mut config = sms_runtime::TelemetryConfig::from_env(&sms_runtime::Env::from_process())
        .unwrap_or_default();
    config.log = std::env::var("SMS_TEST_LOG").unwrap_or_else(|_| "warn".into());
    // Tests follow trace context through the services with no collector.
    config.context_without_export = true;
    // Kept for the life of the process: tests never flush spans anywhere.
    std::mem::forget(sms_runtime::Telemetry::init("tests", &config));
}

/// A fresh database `sms_test_<time>_<random>`; old ones from earlier runs are dropped.
pub async fn fresh_database() -> String {
    let mut admin = sqlx::PgConnection::connect(&format!("{PG_BASE}/postgres"))
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Databases of runs more than an hour old are garbage; dropping is best-effort.
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'sms_test_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in old {
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let name = format!("sms_test_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{PG_BASE}/{name}")
}

/// A fresh subject namespace.
pub fn fresh_namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Options for [`Stack::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Dispatcher instances sharing the consumer.
    pub dispatchers: usize,
    /// Scheduler instances.
    pub schedulers: usize,
    /// How long before an unacknowledged event is redelivered.
    pub ack_wait: Duration,
    /// Simulator settings.
    pub sim: SimConfig,
    /// Bearer tokens and what they grant (empty: no authentication).
    pub api_tokens: sms_runtime::auth::Tokens,
    /// `host:port` of the tests' own servers the composer may fetch from although they are on
    /// loopback (the simulator's is always allowed, for inbound media).
    pub fetch_allow_private: Vec<String>,
    /// PostgreSQL connections per service.
    pub db_max_connections: u32,
    /// The dispatchers' carrier-call timeout.
    pub carrier_timeout: Duration,
    /// How long after a carrier call began a message without an outcome is in doubt, and
    /// the carrier is asked whether it has it.
    pub in_doubt_after: Duration,
    /// Twilio connection overrides on status callback URLs.
    pub callback_overrides: String,
    /// How the composers ask about messages whose status stopped moving.
    pub status_check: sms_composer::check::CheckConfig,
    /// One limit for the whole carrier account (segments a second), if any.
    pub account_rate: Option<sms_core::rate::Rate>,
    /// How long a dispatcher's hold on a dispatch partition lasts without renewal.
    pub partition_lease: Duration,
    /// Whether numbers added with [`Stack::add_number`] keep the carriers' usual rates (1
    /// segment a second for a long code). Off by default: tests send hundreds of messages from
    /// one number, so its rate is set out of the way (10,000 a second).
    pub carrier_rates: bool,
    /// Delays before each webhook retry (fast by default: 7 retries of 200 ms).
    pub webhook_retries: Vec<Duration>,
    /// One webhook attempt's time.
    pub webhook_timeout: Duration,
    /// How long a webhook endpoint may fail every attempt before it is disabled.
    pub webhook_disable_after: Duration,
    /// A NATS of the test's own with a user per service (the deploy configuration's shape);
    /// the machine's, with no credentials, when `None`.
    pub nats: Option<NatsAccess>,
    /// The subject namespace (a fresh one when `None`).
    pub namespace: Option<String>,
    /// Where the dispatchers reach the carrier's API (the simulator's URL when `None`): a
    /// test's own proxy in front of it, to cut the carrier off.
    pub carrier_url: Option<String>,
    /// How the dispatchers resolve sends in doubt (the simulator's Twilio API, looked up by
    /// sender and recipient, by default). An SMPP carrier's is its own.
    pub carrier_resolution: sms_dispatcher::Resolution,
    /// The dispatchers send over SMPP to the simulator's SMSC with these settings (its address
    /// filled in by the stack unless one is named; see [`smpp_config`]), and contacts'
    /// messages come over SMPP.
    pub smpp: Option<sms_dispatcher::smpp::SmppConfig>,
    /// With [`Options::smpp`]: whether SMPP is the default carrier (numbers without a route of
    /// their own send through it), or Twilio (the SMPP connection then serves the numbers
    /// routed to it by name).
    pub smpp_default: bool,
    /// How long a contact's long message over SMPP waits for a missing part.
    pub mo_part_timeout: Duration,
}

/// SMPP settings for the simulator's SMSC: a transceiver, a window of 10, answers within 5 s,
/// UDH concatenation, GSM-7 unpacked, a `submit_sm` left unanswered failed (at most once), and
/// the SMSC's spam code (69) read as spam.
pub fn smpp_config() -> sms_dispatcher::smpp::SmppConfig {
    sms_dispatcher::smpp::SmppConfig {
        session: sms_dispatcher::smpp::SessionConfig {
            name: "smpp-sim".into(),
            addr: String::new(),
            system_id: sms_carrier_sim::DEFAULT_SMPP_SYSTEM_ID.into(),
            password: sms_carrier_sim::DEFAULT_SMPP_PASSWORD.into(),
            system_type: String::new(),
            mode: sms_dispatcher::smpp::BindMode::Transceiver,
            binds: 1,
            window: 10,
            enquire_link: Duration::from_secs(30),
            response_timeout: Duration::from_secs(5),
            gsm7: sms_smpp::parts::Gsm7Packing::Unpacked,
            errors: sms_smpp::errors::ErrorMap::parse(SIM_SMPP_ERRORS).unwrap(),
            tls: None,
        },
        parts: sms_smpp::parts::PartSettings::default(),
        unanswered: Unanswered::Fail,
    }
}

/// The simulator's SMSC's own error codes.
pub const SIM_SMPP_ERRORS: &str = "69=filtered_as_spam";

/// Where the services find NATS and as whom each connects.
#[derive(Debug, Clone)]
pub struct NatsAccess {
    /// The server's URL.
    pub url: String,
    /// Each service's credentials.
    pub users: HashMap<sms_bus::permissions::Service, sms_bus::NatsAuth>,
    /// The test's own (assertions, clean-up): any permissions.
    pub admin: sms_bus::NatsAuth,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dispatchers: 1,
            schedulers: 1,
            ack_wait: Duration::from_secs(3),
            sim: SimConfig::new(ACCOUNT_SID, AUTH_TOKEN),
            api_tokens: sms_runtime::auth::Tokens::default(),
            fetch_allow_private: Vec::new(),
            db_max_connections: 5,
            carrier_timeout: Duration::from_secs(10),
            in_doubt_after: Duration::from_secs(60),
            callback_overrides: sms_dispatcher::DEFAULT_CALLBACK_OVERRIDES.to_owned(),
            status_check: sms_composer::check::CheckConfig::default(),
            account_rate: None,
            partition_lease: Duration::from_secs(2),
            carrier_rates: false,
            webhook_retries: vec![Duration::from_millis(200); 7],
            webhook_timeout: Duration::from_secs(2),
            webhook_disable_after: sms_feed::webhooks::DEFAULT_DISABLE_AFTER,
            nats: None,
            namespace: None,
            carrier_url: None,
            carrier_resolution: sms_dispatcher::Resolution::ListByPair,
            smpp: None,
            smpp_default: true,
            mo_part_timeout: Duration::from_secs(600),
        }
    }
}

/// A carrier wrapper that counts the calls of one dispatcher instance.
pub struct CountingCarrier {
    inner: Arc<dyn Carrier>,
    /// Calls made through this instance.
    pub calls: AtomicU64,
    /// The next this many calls are lost on the way, as when the dispatcher dies during the
    /// call before the request leaves: the carrier never sees them and the caller hears
    /// nothing (an unknown outcome).
    pub lose: std::sync::atomic::AtomicU32,
    /// How its sends in doubt are resolved: Twilio's own (`ListByPair`), or as a carrier that
    /// can only be asked under an id (SMPP's), to try the dispatcher's per-connection policies
    /// with the simulator.
    resolution: sms_dispatcher::Resolution,
}

#[async_trait]
impl Carrier for CountingCarrier {
    fn account(&self) -> &str {
        self.inner.account()
    }
    fn resolution(&self) -> sms_dispatcher::Resolution {
        self.resolution
    }
    fn statuses(&self) -> sms_dispatcher::StatusSource {
        self.inner.statuses()
    }
    fn admission(&self) -> Option<&tokio::sync::Semaphore> {
        self.inner.admission()
    }
    fn start(&self, context: sms_dispatcher::CarrierContext) -> Option<JoinHandle<()>> {
        self.inner.start(context)
    }
    async fn send(&self, message: &CarrierMessage) -> Result<Receipt, CarrierError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let lost = self
            .lose
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(CarrierError::Ambiguous(
                "lost on the way (test): no answer".into(),
            ));
        }
        self.inner.send(message).await
    }

    async fn find(
        &self,
        from: &str,
        to: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<sms_dispatcher::CarrierRecord>, sms_dispatcher::LookupError> {
        self.inner.find(from, to, since).await
    }

    async fn fetch(
        &self,
        sid: &str,
    ) -> Result<Option<sms_dispatcher::CarrierRecord>, sms_dispatcher::LookupError> {
        self.inner.fetch(sid).await
    }
}

/// One dispatcher instance in a [`Stack`].
pub struct DispatcherHandle {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Its carrier calls.
    pub carrier: Arc<CountingCarrier>,
}

/// Every service of the platform, in-process, on an isolated database and namespace.
pub struct Stack {
    /// The database URL.
    pub database_url: String,
    /// The subject namespace.
    pub namespace: String,
    /// The carrier simulator.
    pub sim: Sim,
    /// Its base URL.
    pub sim_url: String,
    /// Its SMSC's address.
    pub smpp_addr: String,
    /// The inbound receiver's base URL (also the public URL).
    pub inbound_url: String,
    /// The composer's gRPC endpoint.
    pub grpc_url: String,
    /// The opt-out registry's gRPC endpoint.
    pub optout_url: String,
    /// The feed service's gRPC endpoint.
    pub feed_url: String,
    /// Where carriers fetch attachments.
    pub media_url: String,
    /// A bus connection for assertions.
    pub bus: Bus,
    /// Dispatcher instances.
    pub dispatchers: Vec<DispatcherHandle>,
    /// Scheduler instances.
    pub schedulers: Vec<JoinHandle<anyhow::Result<()>>>,
    options: Options,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// A loopback listener with the services' accept backlog (see [`sms_runtime::health::BACKLOG`]).
async fn listener() -> TcpListener {
    sms_runtime::health::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

impl Stack {
    /// All services with default options.
    pub async fn start() -> Stack {
        Stack::start_with(Options::default()).await
    }

    /// All services.
    pub async fn start_with(options: Options) -> Stack {
        init_tracing();
        let database_url = fresh_database().await;
        let namespace = options.namespace.clone().unwrap_or_else(fresh_namespace);
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let sim_listener = listener().await;
        let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
        let mut sim_config = options.sim.clone();
        if options.smpp.is_some() {
            sim_config.behaviour.smpp.all_numbers = true;
        }
        let sim = Sim::new(sim_config).unwrap();
        tasks.push(tokio::spawn(
            sim.clone().serve(sim_listener, shutdown.clone()),
        ));
        let smpp_listener = listener().await;
        let smpp_addr = smpp_listener.local_addr().unwrap().to_string();
        tasks.push(tokio::spawn(
            sim.clone().serve_smpp(smpp_listener, shutdown.clone()),
        ));

        let inbound_listener = listener().await;
        let inbound_url = format!("http://{}", inbound_listener.local_addr().unwrap());
        sim.set_incoming_url(&format!("{inbound_url}/webhooks/twilio/incoming"));
        let grpc_listener = listener().await;
        let grpc_url = format!("http://{}", grpc_listener.local_addr().unwrap());
        let media_listener = listener().await;
        let media_url = format!("http://{}", media_listener.local_addr().unwrap());
        let optout_listener = listener().await;
        let optout_url = format!("http://{}", optout_listener.local_addr().unwrap());
        let feed_listener = listener().await;
        let feed_url = format!("http://{}", feed_listener.local_addr().unwrap());

        let mut stack = Stack {
            bus: Bus::connect(match &options.nats {
                None => BusConfig::new(NATS_URL, &namespace),
                Some(n) => {
                    let mut c = BusConfig::new(n.url.clone(), &namespace);
                    c.auth = n.admin.clone();
                    c
                }
            })
            .await
            .unwrap(),
            database_url,
            namespace,
            sim,
            sim_url,
            smpp_addr,
            inbound_url,
            grpc_url,
            optout_url,
            feed_url,
            media_url,
            dispatchers: Vec::new(),
            schedulers: Vec::new(),
            options,
            shutdown: shutdown.clone(),
            tasks,
        };
        let common = stack.common_for(Service::Composer);
        let sim_host = stack.sim_url.trim_start_matches("http://").to_owned();
        let allow_private: Vec<String> = std::iter::once(sim_host.clone())
            .chain(stack.options.fetch_allow_private.iter().cloned())
            .collect();
        let webhooks = sms_feed::WebhookConfig {
            retries: stack.options.webhook_retries.clone(),
            timeout: stack.options.webhook_timeout,
            disable_after: stack.options.webhook_disable_after,
            allow_http: true,
            allow_private: allow_private.clone(),
        };
        let composer = sms_composer::Config {
            common: common.clone(),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
            schedule_horizon_days: 365,
            media: sms_composer::media::MediaConfig {
                public_url: stack.media_url.clone(),
                secret: b"test-media-secret-0123456789".to_vec(),
                carriers: HashMap::from([(
                    ACCOUNT_SID.to_owned(),
                    sms_composer::media::CarrierAccount {
                        auth_token: AUTH_TOKEN.to_owned(),
                        media_hosts: vec![sim_host.clone()],
                    },
                )]),
            },
            // Development: http, and the simulator's loopback host (plus the tests' own
            // servers, when a test names them) are fetched; nothing else on loopback is.
            fetch: sms_runtime::fetch::FetchPolicy {
                allow_http: true,
                allow_private: allow_private.clone(),
                ..sms_runtime::fetch::FetchPolicy::strict(sms_composer::media::MAX_FETCH)
            },
            status_check: stack.options.status_check,
            smpp_default: stack.options.smpp.is_some() && stack.options.smpp_default,
            carrier_connections: std::iter::once(sms_dispatcher::TWILIO_CONNECTION.to_owned())
                .chain(stack.options.smpp.iter().map(|c| c.session.name.clone()))
                .collect(),
            carrier: Some(sms_numbers::CarrierConfig {
                api_url: stack.sim_url.clone(),
                account_sid: ACCOUNT_SID.to_owned(),
                auth_token: AUTH_TOKEN.to_owned(),
                public_url: stack.inbound_url.clone(),
                timeout: stack.options.carrier_timeout,
                release_retry: Duration::from_millis(500),
            }),
            webhooks: webhooks.clone(),
        };
        stack.tasks.push(tokio::spawn(sms_composer::run(
            composer,
            grpc_listener,
            media_listener,
            shutdown.clone(),
        )));
        // The feed service on a port of its own (its gRPC services are the composer's too).
        let feed = sms_feed::Config {
            common: stack.common_for(Service::Feed),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
            feed_retention: sms_feed::DEFAULT_RETENTION,
            webhooks,
        };
        stack.tasks.push(tokio::spawn(sms_feed::run(
            feed,
            Some(feed_listener),
            shutdown.clone(),
        )));
        let inbound = sms_inbound::Config {
            common: stack.common_for(Service::Inbound),
            public_url: stack.inbound_url.clone(),
            twilio_accounts: HashMap::from([
                (ACCOUNT_SID.to_owned(), AUTH_TOKEN.to_owned()),
                (OTHER_ACCOUNT_SID.to_owned(), OTHER_AUTH_TOKEN.to_owned()),
            ]),
            patience: std::time::Duration::from_secs(8),
        };
        stack.tasks.push(tokio::spawn(sms_inbound::run(
            inbound,
            inbound_listener,
            shutdown.clone(),
        )));
        for _ in 0..stack.options.schedulers {
            stack.start_scheduler();
        }
        let optout = sms_optout::Config {
            common: stack.common_for(Service::OptOut),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
        };
        stack.tasks.push(tokio::spawn(sms_optout::run(
            optout,
            optout_listener,
            shutdown.clone(),
        )));
        for _ in 0..stack.options.dispatchers {
            stack.start_dispatcher();
        }
        stack.wait_until_ready().await;
        stack
    }

    /// `service`'s settings: this stack's database and namespace, and its NATS user when the
    /// stack has a NATS of its own.
    fn common_for(&self, service: Service) -> CommonConfig {
        let mut c = common_config(
            &self.namespace,
            &self.database_url,
            self.options.db_max_connections,
            self.options.ack_wait,
        );
        if let Some(n) = &self.options.nats {
            c.nats_url = n.url.clone();
            c.nats_auth = n.users.get(&service).cloned().unwrap_or_default();
        }
        c
    }

    /// Starts one more scheduler instance.
    pub fn start_scheduler(&mut self) {
        let config = sms_scheduler::Config {
            common: self.common_for(Service::Scheduler),
            health_addr: None,
            batch: 1000,
            poll: Duration::from_secs(1),
            late_after: Duration::from_secs(5),
        };
        self.schedulers.push(tokio::spawn(sms_scheduler::run(
            config,
            self.shutdown.child_token(),
        )));
    }

    /// Kills scheduler `index` at once, as a crash would (no graceful stop).
    pub async fn kill_scheduler(&mut self, index: usize) {
        let task = self.schedulers.remove(index);
        task.abort();
        let _ = task.await;
    }

    /// Starts one more dispatcher instance on the shared consumer.
    pub fn start_dispatcher(&mut self) {
        let config = sms_dispatcher::Config {
            common: self.common_for(Service::Dispatcher),
            health_addr: None,
            public_url: self.inbound_url.clone(),
            twilio_api_url: self
                .options
                .carrier_url
                .clone()
                .unwrap_or_else(|| self.sim_url.clone()),
            twilio_account_sid: ACCOUNT_SID.into(),
            twilio_auth_token: AUTH_TOKEN.into(),
            send_attempts: 4,
            carrier_timeout: self.options.carrier_timeout,
            in_doubt_after: self.options.in_doubt_after,
            callback_overrides: self.options.callback_overrides.clone(),
            account_rate: self.options.account_rate,
            partition_lease: self.options.partition_lease,
            smpp_default: self.options.smpp.is_some() && self.options.smpp_default,
            smpp: self.options.smpp.clone().map(|mut c| {
                // A test's own SMSC when it names one; the simulator's otherwise.
                if c.session.addr.is_empty() {
                    c.session.addr.clone_from(&self.smpp_addr);
                }
                c
            }),
            mo_part_timeout: self.options.mo_part_timeout,
        };
        let http = sms_runtime::http_client(config.carrier_timeout).unwrap();
        let twilio: Arc<dyn Carrier> = Arc::new(Twilio::new(
            http,
            &config.twilio_api_url,
            ACCOUNT_SID,
            AUTH_TOKEN,
        ));
        let smpp: Option<(String, Arc<dyn Carrier>)> = config.smpp.as_ref().map(|c| {
            let carrier: Arc<dyn Carrier> = Arc::new(sms_dispatcher::smpp::Smpp::new(
                c.clone(),
                config.carrier_timeout,
            ));
            (c.session.name.clone(), carrier)
        });
        // The default carrier is counted (and its calls can be lost on cue).
        let smpp_default = smpp.is_some() && self.options.smpp_default;
        let inner = match (&smpp, smpp_default) {
            (Some((_, c)), true) => c.clone(),
            _ => twilio.clone(),
        };
        let resolution = if smpp_default {
            inner.resolution()
        } else {
            self.options.carrier_resolution
        };
        let carrier = Arc::new(CountingCarrier {
            inner,
            calls: AtomicU64::new(0),
            lose: std::sync::atomic::AtomicU32::new(0),
            resolution,
        });
        let counted: Arc<dyn Carrier> = carrier.clone();
        let carriers = match smpp {
            Some((name, _)) if smpp_default => sms_dispatcher::Carriers::new(&name, counted)
                .with(sms_dispatcher::TWILIO_CONNECTION, twilio),
            Some((name, smpp)) => {
                sms_dispatcher::Carriers::new(sms_dispatcher::TWILIO_CONNECTION, counted)
                    .with(&name, smpp)
            }
            None => sms_dispatcher::Carriers::new(sms_dispatcher::TWILIO_CONNECTION, counted),
        };
        let shutdown = self.shutdown.child_token();
        let task = tokio::spawn(sms_dispatcher::run_with_carriers(
            config,
            carriers,
            shutdown.clone(),
        ));
        self.dispatchers.push(DispatcherHandle {
            shutdown,
            task,
            carrier,
        });
    }

    /// Stops dispatcher `index` gracefully (finishing what it has in hand) and waits for it.
    pub async fn stop_dispatcher(&mut self, index: usize) -> u64 {
        let d = self.dispatchers.remove(index);
        d.shutdown.cancel();
        d.task.await.unwrap().unwrap();
        d.carrier.calls.load(Ordering::Relaxed)
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(self.grpc_url.clone())
                .unwrap()
                .connect()
                .await
            {
                drop(channel);
                // The consumers exist once every service has connected and the dispatchers hold
                // every partition. (With no dispatcher, nobody creates the dispatcher's.)
                let mut names = vec![sms_bus::ConsumerKind::ComposerStatus.durable_name()];
                if self.options.dispatchers > 0 {
                    for p in 0..sms_bus::DISPATCH_PARTITIONS {
                        names.push(sms_bus::ConsumerKind::DispatcherAccepted(p).durable_name());
                        names.push(sms_bus::ConsumerKind::DispatcherDue(p).durable_name());
                    }
                }
                let stream = self
                    .bus
                    .jetstream()
                    .get_stream(self.bus.subjects().events_stream())
                    .await;
                if let Ok(stream) = stream {
                    let mut all = true;
                    for name in &names {
                        all &= stream
                            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                            .await
                            .is_ok();
                    }
                    if all {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the dispatchers running hold every dispatch partition between them, each
    /// its fair share (the lease rounds take a few seconds after a replica starts or stops,
    /// longer while the whole suite loads the machine).
    pub async fn wait_partitions_shared(&self) {
        let replicas = self.dispatchers.len() as i64;
        let total = i64::from(sms_bus::DISPATCH_PARTITIONS);
        let db = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        eventually(Duration::from_secs(90), "the partitions shared", || {
            let db = db.clone();
            async move {
                let held: Vec<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM dispatcher.partitions
                     WHERE lease_until > now() AND owner IS NOT NULL GROUP BY owner",
                )
                .fetch_all(&db)
                .await
                .ok()?;
                let fair = (total + replicas - 1) / replicas.max(1);
                (held.len() as i64 == replicas
                    && held.iter().sum::<i64>() == total
                    && held.iter().all(|h| *h <= fair))
                .then_some(())
            }
        })
        .await;
    }

    /// A channel to the composer.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.grpc_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A Messaging client (large enough for attachments).
    pub async fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.channel().await)
            .max_decoding_message_size(sms_composer::MAX_GRPC_MESSAGE)
            .max_encoding_message_size(sms_composer::MAX_GRPC_MESSAGE)
    }

    /// A Numbers client.
    pub async fn numbers(&self) -> NumbersServiceClient<Channel> {
        NumbersServiceClient::new(self.channel().await)
    }

    /// An OptOuts client.
    pub async fn opt_outs(&self) -> OptOutsServiceClient<Channel> {
        OptOutsServiceClient::new(
            tonic::transport::Endpoint::from_shared(self.optout_url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    }

    /// The URL the carrier posts incoming messages to.
    pub fn incoming_url(&self) -> String {
        format!("{}/webhooks/twilio/incoming", self.inbound_url)
    }

    /// A Contacts client.
    pub async fn contacts(
        &self,
    ) -> sms_proto::v1::contacts_service_client::ContactsServiceClient<Channel> {
        sms_proto::v1::contacts_service_client::ContactsServiceClient::new(self.channel().await)
    }

    /// A channel to the feed service.
    pub async fn feed_channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.feed_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A Webhooks client, on the feed service.
    pub async fn webhooks(
        &self,
    ) -> sms_proto::v1::webhooks_service_client::WebhooksServiceClient<Channel> {
        sms_proto::v1::webhooks_service_client::WebhooksServiceClient::new(
            self.feed_channel().await,
        )
    }

    /// An Events client, on the feed service.
    pub async fn events(
        &self,
    ) -> sms_proto::v1::events_service_client::EventsServiceClient<Channel> {
        sms_proto::v1::events_service_client::EventsServiceClient::new(self.feed_channel().await)
    }

    /// A Settings client.
    pub async fn settings(
        &self,
    ) -> sms_proto::v1::settings_service_client::SettingsServiceClient<Channel> {
        sms_proto::v1::settings_service_client::SettingsServiceClient::new(self.channel().await)
    }

    /// A Templates client.
    pub async fn templates(&self) -> TemplatesServiceClient<Channel> {
        TemplatesServiceClient::new(self.channel().await)
    }

    /// Adds a number owned by [`USER`] of [`ORG`].
    pub async fn add_number(&self, number: &str) {
        self.add_number_as(ORG, USER, number).await;
    }

    /// Adds a number owned by `user` of `org`.
    pub async fn add_number_as(&self, org: &str, user: &str, number: &str) {
        let mut client = self.numbers().await;
        client
            .add_number(as_caller(
                AddNumberRequest {
                    number: number.into(),
                    kind: sms_proto::v1::NumberKind::Internal as i32,
                    owner: Some(add_number_request::Owner::OwnerUserId(user.into())),
                    send_rate: (!self.options.carrier_rates).then_some(10_000.0),
                    send_burst: (!self.options.carrier_rates).then_some(100_000),
                    ..Default::default()
                },
                org,
                user,
            ))
            .await
            .unwrap();
    }

    /// The message `id` as [`USER`] of [`ORG`] sees it now.
    pub async fn message(&self, id: &str) -> Message {
        self.messaging()
            .await
            .get_message(as_user(GetMessageRequest { id: id.into() }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
    }

    /// Polls GetMessage until the message is in a final status.
    pub async fn wait_final(
        &self,
        client: &mut MessagingServiceClient<Channel>,
        id: &str,
    ) -> Message {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = client
                .get_message(as_user(GetMessageRequest { id: id.into() }))
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap();
            let status = MessageStatus::try_from(m.status).unwrap();
            let done = sms_bus::status_from_proto(status).is_some_and(|s| s.is_final());
            if done {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} still {status:?} after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Both directions between `ours` and `contact`, oldest first, as [`USER`] of [`ORG`].
    pub async fn conversation(&self, ours: &str, contact: &str) -> Vec<Message> {
        self.messaging()
            .await
            .get_conversation(as_user(sms_proto::v1::GetConversationRequest {
                our_number: ours.into(),
                contact_number: contact.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// Waits until exactly `n` of the organization's messages are delivered (counted with
    /// ListMessages, 500 a page).
    pub async fn wait_delivered(&self, n: usize) {
        let client = self.messaging().await;
        eventually(Duration::from_secs(120), "every message delivered", || {
            let mut client = client.clone();
            async move {
                let mut delivered = 0;
                let mut token = String::new();
                loop {
                    let page = client
                        .list_messages(as_user(sms_proto::v1::ListMessagesRequest {
                            status: MessageStatus::Delivered as i32,
                            page_size: 500,
                            page_token: token,
                            ..Default::default()
                        }))
                        .await
                        .unwrap()
                        .into_inner();
                    delivered += page.messages.len();
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                (delivered == n).then_some(())
            }
        })
        .await;
    }

    /// Stops everything and deletes the namespace's streams.
    pub async fn shutdown(self) {
        // The dispatchers first, while the carrier and the receiver still answer: messages in
        // flight end as they would, instead of as calls to a carrier that went away.
        for d in &self.dispatchers {
            d.shutdown.cancel();
        }
        for d in self.dispatchers {
            let _ = d.task.await;
        }
        self.shutdown.cancel();
        for s in self.schedulers {
            let _ = s.await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.bus.delete_streams().await;
    }
}

/// The common service settings for the local NATS and `database_url`, in `namespace`.
pub fn common_config(
    namespace: &str,
    database_url: &str,
    db_max_connections: u32,
    ack_wait: Duration,
) -> CommonConfig {
    CommonConfig {
        nats_url: NATS_URL.into(),
        namespace: namespace.to_owned(),
        database_url: database_url.to_owned(),
        db_max_connections,
        ack_wait,
        max_deliver: 5,
        stream_replicas: 1,
        development: true,
        outbox_poll: Duration::from_millis(200),
        nats_auth: sms_bus::NatsAuth::None,
        nats_tls: sms_bus::NatsTls::default(),
    }
}

/// Sends `request` as the test user and returns the accepted message (panics on refusal).
pub async fn send_ok(
    client: &mut MessagingServiceClient<Channel>,
    request: sms_proto::v1::SendMessageRequest,
) -> sms_proto::v1::Message {
    client
        .send_message(as_user(request))
        .await
        .unwrap_or_else(|e| panic!("send refused: {e}"))
        .into_inner()
        .message
        .unwrap_or_else(|| panic!("SendMessage answered without a message"))
}

/// A plain SendMessage request from `from` to `to`.
pub fn sms(from: &str, to: &str, body: &str) -> sms_proto::v1::SendMessageRequest {
    sms_proto::v1::SendMessageRequest {
        to: to.into(),
        from: from.into(),
        body: body.into(),
        ..Default::default()
    }
}

/// A request as [`USER`] of [`ORG`], an administrator of it (tests set their organization up:
/// numbers, groups, settings, webhooks).
pub fn as_user<T>(message: T) -> tonic::Request<T> {
    as_caller(message, ORG, USER)
}

/// A request as `user` of `org`, an administrator of it.
pub fn as_caller<T>(message: T, org: &str, user: &str) -> tonic::Request<T> {
    let mut r = as_member(message, org, user);
    r.metadata_mut()
        .insert("x-user-role", "admin".parse().unwrap());
    r
}

/// A request as `user` of `org`, a member (no administrator's rights).
pub fn as_member<T>(message: T, org: &str, user: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("x-organization-id", org.parse().unwrap());
    r.metadata_mut().insert("x-user-id", user.parse().unwrap());
    r
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `X-Twilio-Signature` by Twilio's scheme, written out here independently of the receiver's
/// code (and of sms-twilio's), so that the tests check the receiver against the scheme.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// POSTs a form to `url`, with `signature` as `X-Twilio-Signature`; returns the status and body.
pub async fn post_form(
    url: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> (u16, String) {
    let client = sms_runtime::http_client(Duration::from_secs(30)).unwrap();
    let mut request = client.post(url).form(params);
    if let Some(sig) = signature {
        request = request.header("X-Twilio-Signature", sig);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

impl Stack {
    /// POSTs `params` to the receiver's `path_and_query` (`/webhooks/twilio/…`), signed with the
    /// test account's token as Twilio signs it.
    pub async fn signed_webhook(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let url = format!("{}{path_and_query}", self.inbound_url);
        let signature = twilio_signature(AUTH_TOKEN, &url, params);
        post_form(&url, params, Some(&signature)).await
    }
}
