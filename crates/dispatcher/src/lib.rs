//! The dispatcher: takes accepted and due messages off the bus and sends each one exactly
//! once through a [`Carrier`], publishing what happened as status events.
//!
//! Exactly once: before calling the carrier, the dispatcher claims the message in its own
//! `sends` table ([`store`]). A redelivered event (a replica died, an ack was lost) finds the
//! claim and is dropped, so the carrier never sees a message twice. A failure that sent nothing
//! releases the claim (`retry`) and the event comes back after a back-off with full jitter,
//! chosen by what went wrong.
//!
//! A call whose outcome is unknown (it timed out after the request left, or the dispatcher died
//! during it) is not guessed at: [`resolve`] asks the carrier whether it has the message, binds
//! it if so, and sends it if the carrier provably does not. A message whose status stops moving
//! (a lost callback) is looked up at the composer's request ([`check`]).
//!
//! Every status the dispatcher reports is written to its outbox in the transaction that
//! changes the claim, so a status is published if and only if the change it reports was
//! committed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_bus::{ConsumerKind, Delivery, Encoded, HandleError, StateKind};
use sms_core::PhoneNumber;
use sms_core::{Reason, Status};
use sms_proto::events::v1::{
    EventMeta, MessageAccepted, MessageDue, NumberChanged, OutboundMessage, StatusCheck,
};
use sms_runtime::backoff::Backoff;
use sms_runtime::batch::Batcher;
use sms_runtime::outbox::Outbox;
use sms_runtime::{CommonConfig, ConfigError, Env};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod carrier;
mod check;
mod events;
mod limiter;
mod partitions;
mod resolve;
pub mod smpp;
mod store;

pub use carrier::{
    Carrier, CarrierContext, CarrierError, CarrierMessage, CarrierRecord, Deliveries, LookupError,
    Receipt, Resolution, Slots, StatusSource, Twilio, Unanswered,
};

/// The dispatcher's schema.
pub const SCHEMA: &str = "dispatcher";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Twilio connection overrides the dispatcher asks for on status callbacks by default: up to 5
/// retries when our receiver answers 5xx, cannot be reached or does not answer in time, all
/// within Twilio's 15 s.
pub const DEFAULT_CALLBACK_OVERRIDES: &str = "rc=5&rp=5xx,ct,rt";

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus and database.
    pub common: CommonConfig,
    /// `SMS_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// `SMS_PUBLIC_URL`: public base URL of the inbound receiver, for status callbacks.
    pub public_url: String,
    /// `SMS_TWILIO_API_URL`: the Messages API base URL.
    pub twilio_api_url: String,
    /// `SMS_TWILIO_ACCOUNT_SID`.
    pub twilio_account_sid: String,
    /// `SMS_TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: String,
    /// `SMS_SEND_ATTEMPTS`: carrier calls before a retryable failure becomes final.
    pub send_attempts: i32,
    /// `SMS_CARRIER_TIMEOUT_MS`: timeout of one carrier call.
    pub carrier_timeout: Duration,
    /// `SMS_IN_DOUBT_AFTER_MS`: how long after a carrier call began a message still without an
    /// outcome is in doubt, and the carrier is asked whether it has it. At least twice the
    /// carrier timeout plus 2 s (a resolution's lookup and any new call fit in it); default 60 s.
    pub in_doubt_after: Duration,
    /// `SMS_STATUS_CALLBACK_OVERRIDES`: Twilio connection overrides put in the status
    /// callback URL's fragment (default [`DEFAULT_CALLBACK_OVERRIDES`]; empty for none).
    pub callback_overrides: String,
    /// `SMS_CARRIER_RATE` (segments a second) and `SMS_CARRIER_BURST` (segments, default the
    /// rate): one limit for the whole carrier account, shared by the live replicas; none when
    /// unset.
    pub account_rate: Option<sms_core::rate::Rate>,
    /// `SMS_PARTITION_LEASE_MS`: how long a replica's hold on a dispatch partition lasts
    /// without renewal (default 5 s): how soon another replica takes over after one dies.
    pub partition_lease: Duration,
    /// The SMPP connection (`SMS_SMPP_*`), when `SMS_SMPP_ADDR` is set or it is the default:
    /// numbers routed to its name send through it.
    pub smpp: Option<smpp::SmppConfig>,
    /// `SMS_CARRIER=smpp`: numbers with no route of their own send through the SMPP connection
    /// instead of Twilio's API.
    pub smpp_default: bool,
    /// `SMS_SMPP_MO_PART_TIMEOUT_MS`: how long the parts of a contact's long message wait for
    /// the rest before it is delivered with the gaps marked (default 10 minutes).
    pub mo_part_timeout: Duration,
}

impl Config {
    /// Reads the dispatcher's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let public_url = env.string_or("SMS_PUBLIC_URL", "http://127.0.0.1:8080");
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(ConfigError::new(
                "SMS_PUBLIC_URL",
                public_url,
                "expected an http(s) URL",
            ));
        }
        let carrier_timeout = env.millis_or("SMS_CARRIER_TIMEOUT_MS", Duration::from_secs(15))?;
        let in_doubt_after = env.millis_or("SMS_IN_DOUBT_AFTER_MS", Duration::from_secs(60))?;
        if in_doubt_after < carrier_timeout * 2 + Duration::from_secs(2) {
            return Err(ConfigError::new(
                "SMS_IN_DOUBT_AFTER_MS",
                in_doubt_after.as_millis().to_string(),
                "must be at least twice SMS_CARRIER_TIMEOUT_MS plus 2000, or calls still in \
                 flight are taken as lost",
            ));
        }
        let callback_overrides =
            env.string_or("SMS_STATUS_CALLBACK_OVERRIDES", DEFAULT_CALLBACK_OVERRIDES);
        if !callback_overrides
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=&,".contains(c))
        {
            return Err(ConfigError::new(
                "SMS_STATUS_CALLBACK_OVERRIDES",
                callback_overrides,
                "expected key=value pairs joined by & (e.g. rc=5&rp=5xx,ct,rt)",
            ));
        }
        let account_rate = match env.raw("SMS_CARRIER_RATE") {
            None => None,
            Some(_) => {
                let per_second: f64 = env.parse_or("SMS_CARRIER_RATE", 0.0)?;
                let burst: f64 = env.parse_or("SMS_CARRIER_BURST", per_second.max(1.0))?;
                let rate = sms_core::rate::Rate::new(per_second, burst).map_err(|e| {
                    let var = match e {
                        sms_core::rate::RateError::PerSecond(_) => "SMS_CARRIER_RATE",
                        sms_core::rate::RateError::Burst(_) => "SMS_CARRIER_BURST",
                    };
                    ConfigError::new(var, env.raw(var).unwrap_or_default(), e)
                })?;
                Some(rate)
            }
        };
        let partition_lease = env.millis_or("SMS_PARTITION_LEASE_MS", Duration::from_secs(5))?;
        if partition_lease < Duration::from_millis(500) {
            return Err(ConfigError::new(
                "SMS_PARTITION_LEASE_MS",
                partition_lease.as_millis().to_string(),
                "must be at least 500",
            ));
        }
        let send_attempts = env.parse_or("SMS_SEND_ATTEMPTS", 4)?;
        if !(1..=20).contains(&send_attempts) {
            return Err(ConfigError::new(
                "SMS_SEND_ATTEMPTS",
                send_attempts.to_string(),
                "expected 1 to 20 carrier calls",
            ));
        }
        let smpp_default = match env.string_or("SMS_CARRIER", "twilio").as_str() {
            "twilio" => false,
            "smpp" => true,
            other => {
                return Err(ConfigError::new(
                    "SMS_CARRIER",
                    other,
                    "expected twilio or smpp",
                ));
            }
        };
        // The SMPP connection when it is the default or named; Twilio's credentials are
        // needed only when it is the default (otherwise numbers may still be routed to it).
        let smpp = (smpp_default || env.raw("SMS_SMPP_ADDR").is_some())
            .then(|| smpp::SmppConfig::from_env(env))
            .transpose()?;
        let twilio = |var: &str, what: &str| match env.raw(var) {
            Some(v) => Ok(v),
            None if smpp_default => Ok(String::new()),
            None => Err(ConfigError::new(var, "", what)),
        };
        Ok(Config {
            twilio_account_sid: twilio(
                "SMS_TWILIO_ACCOUNT_SID",
                "the Twilio account SID is required",
            )?,
            twilio_auth_token: twilio(
                "SMS_TWILIO_AUTH_TOKEN",
                "the Twilio auth token is required",
            )?,
            mo_part_timeout: env
                .millis_or("SMS_SMPP_MO_PART_TIMEOUT_MS", Duration::from_secs(600))?,
            smpp,
            smpp_default,
            common: CommonConfig::from_env(env)?,
            health_addr: sms_runtime::config::health_addr(env)?,
            public_url,
            twilio_api_url: env.string_or("SMS_TWILIO_API_URL", "https://api.twilio.com"),
            send_attempts,
            carrier_timeout,
            in_doubt_after,
            callback_overrides,
            account_rate,
            partition_lease,
        })
    }
}

/// The name numbers are routed to Twilio by.
pub const TWILIO_CONNECTION: &str = "twilio";

/// The carriers a dispatcher sends through: a default, for numbers with no route of their own,
/// and every connection by the name numbers are routed to it by.
#[derive(Clone)]
pub struct Carriers {
    default: Arc<dyn Carrier>,
    named: HashMap<String, Arc<dyn Carrier>>,
}

impl Carriers {
    /// `carrier`, known as `name`, and the default.
    pub fn new(name: &str, carrier: Arc<dyn Carrier>) -> Carriers {
        Carriers {
            named: HashMap::from([(name.to_owned(), carrier.clone())]),
            default: carrier,
        }
    }

    /// With `carrier` known as `name` as well.
    pub fn with(mut self, name: &str, carrier: Arc<dyn Carrier>) -> Carriers {
        self.named.insert(name.to_owned(), carrier);
        self
    }

    /// The carrier a route names (empty: the default).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Carrier>> {
        if name.is_empty() {
            Some(&self.default)
        } else {
            self.named.get(name)
        }
    }

    /// The connection names.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.named.keys().cloned().collect();
        names.sort();
        names
    }

    /// Each carrier once.
    fn each(&self) -> Vec<Arc<dyn Carrier>> {
        let mut all: Vec<Arc<dyn Carrier>> = Vec::new();
        for c in std::iter::once(&self.default).chain(self.named.values()) {
            if !all.iter().any(|a| Arc::ptr_eq(a, c)) {
                all.push(c.clone());
            }
        }
        all
    }
}

/// Runs the dispatcher with the configured carriers (Twilio's API and/or an SMPP connection)
/// until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let smpp = config.smpp.clone().map(|c| {
        let name = c.session.name.clone();
        let carrier: Arc<dyn Carrier> = Arc::new(smpp::Smpp::new(c, config.carrier_timeout));
        (name, carrier)
    });
    let twilio: Option<Arc<dyn Carrier>> = if config.twilio_account_sid.is_empty() {
        None
    } else {
        let http = sms_runtime::http_client(config.carrier_timeout)?;
        Some(Arc::new(Twilio::new(
            http,
            &config.twilio_api_url,
            &config.twilio_account_sid,
            &config.twilio_auth_token,
        )))
    };
    let carriers = match (smpp, twilio) {
        (Some((name, smpp)), Some(twilio)) if config.smpp_default => {
            Carriers::new(&name, smpp).with(TWILIO_CONNECTION, twilio)
        }
        (Some((name, smpp)), Some(twilio)) => {
            Carriers::new(TWILIO_CONNECTION, twilio).with(&name, smpp)
        }
        (Some((name, smpp)), None) => Carriers::new(&name, smpp),
        (None, Some(twilio)) => Carriers::new(TWILIO_CONNECTION, twilio),
        (None, None) => anyhow::bail!("no carrier is configured (SMS_TWILIO_* or SMS_SMPP_*)"),
    };
    run_with_carriers(config, carriers, shutdown).await
}

/// Runs the dispatcher with one carrier (any, as the default and `twilio`) until `shutdown`.
pub async fn run_with_carrier(
    config: Config,
    carrier: Arc<dyn Carrier>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_carriers(config, Carriers::new(TWILIO_CONNECTION, carrier), shutdown).await
}

/// Runs the dispatcher with these carriers until `shutdown`.
pub async fn run_with_carriers(
    config: Config,
    carriers: Carriers,
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
    // Local copies, replayed and then followed by this replica: no lookup per message.
    let catch_up = Duration::from_secs(30);
    let released = bus
        .state_set(
            StateKind::Number,
            shutdown.clone(),
            catch_up,
            |e: NumberChanged| {
                let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
                (org, e.number, !e.active)
            },
        )
        .await?;
    let opted_out = bus
        .state_set(
            StateKind::OptOut,
            shutdown.clone(),
            catch_up,
            sms_bus::opted_out_entry,
        )
        .await?;
    // Rates set on numbers, and who holds each (for contacts' messages over SMPP): a copy of
    // the number state, like the released numbers above.
    let overrides = limiter::Overrides::default();
    let copy = overrides.clone();
    let holders = sms_bus::Holders::default();
    let holding = holders.clone();
    bus.follow_state(
        StateKind::Number,
        shutdown.clone(),
        move |e: NumberChanged| {
            holding.apply(&e);
            let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
            let rate = (e.send_rate > 0.0)
                .then(|| {
                    let burst = if e.send_burst > 0 {
                        f64::from(e.send_burst)
                    } else {
                        e.send_rate.max(1.0)
                    };
                    sms_core::rate::Rate::new(e.send_rate, burst).ok()
                })
                .flatten();
            copy.set(org, e.number, rate);
        },
    )
    .await?;
    let in_doubt_after = config.in_doubt_after;
    let me = Uuid::new_v4().to_string();
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let holdings = partitions::Holdings::default();
    let dispatcher = Arc::new(Dispatcher {
        claims: claims(pool.clone(), outbox.clone(), in_doubt_after),
        sent: sent(pool.clone(), outbox.clone()),
        pool: pool.clone(),
        bus: bus.clone(),
        outbox,
        carriers: carriers.clone(),
        holders: holders.clone(),
        callback_url: callback_base(&config.public_url),
        callback_overrides: config.callback_overrides.clone(),
        send_attempts: config.send_attempts,
        in_doubt_after,
        carrier_timeout: config.carrier_timeout,
        released,
        opted_out,
        limiter: limiter::Limiter::new(overrides, config.account_rate, live.clone()),
        holdings: holdings.clone(),
        fresh: config.partition_lease * 2,
        calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
    });
    // Which partitions this replica sends for, and their consumers while it holds them.
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let (stopped_tx, stopped) = tokio::sync::mpsc::unbounded_channel();
    let leases = partitions::run(
        partitions::Replica {
            pool: pool.clone(),
            me: me.clone(),
            config: partitions::LeaseConfig {
                lease: config.partition_lease,
            },
            holdings,
            live: live.clone(),
        },
        changes_tx,
        stopped,
        shutdown.clone(),
    );
    let d = dispatcher.clone();
    let partitions = async move {
        while let Some(partitions::Change::Took(p, stop)) = changes.recv().await {
            let (d, stopped) = (d.clone(), stopped_tx.clone());
            tokio::spawn(async move {
                d.clone().consume_partition(p, stop).await;
                let _ = stopped.send(p);
            });
        }
    };
    let d = dispatcher.clone();
    let checks = bus.consume(
        ConsumerKind::DispatcherCheck,
        shutdown.clone(),
        move |e: StatusCheck, delivery| {
            let d = d.clone();
            async move { d.check(e, delivery).await }
        },
    );
    let resolving = resolve::run(dispatcher.clone(), shutdown.clone());
    let d = dispatcher.clone();
    let stop = shutdown.clone();
    let pruning = async move {
        let shutdown = stop;
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => d.limiter.prune(),
            }
        }
    };
    // What the carrier sends on its own connection (SMPP's receipts and contacts' messages).
    let received = Arc::new(smpp::received::Received {
        pool: pool.clone(),
        outbox: dispatcher.outbox.clone(),
        holders,
    });
    let context = carrier::CarrierContext {
        deliveries: received.clone(),
        slots: Some(Arc::new(smpp::slots::LeasedSlots {
            pool: pool.clone(),
            me: me.clone(),
            live: live.clone(),
            lease: config.partition_lease,
        })),
        shutdown: shutdown.clone(),
    };
    let carriers_running: Vec<_> = carriers
        .each()
        .iter()
        .filter_map(|c| c.start(context.clone()))
        .collect();
    let sweeping = (!carriers_running.is_empty())
        .then(|| tokio::spawn(received.sweep(config.mo_part_timeout, shutdown.clone())));
    tracing::info!("dispatcher running");
    // The partition loop ends with the lease loop (which drops the changes' sender).
    let (c, (), (), (), ()) = tokio::join!(checks, resolving, leases, partitions, pruning);
    // The binds unbind once the sends have stopped.
    for running in carriers_running {
        let _ = running.await;
    }
    if let Some(sweeping) = sweeping {
        let _ = sweeping.await;
    }
    base.relay.finish().await;
    c.context("check consumer")?;
    tracing::info!("dispatcher stopped");
    Ok(())
}

struct Dispatcher {
    pool: PgPool,
    /// Claims, many per transaction: message → attempt number, or `None` when already taken.
    claims: Batcher<store::Claim, Result<Option<i32>, BatchError>>,
    /// Messages the carrier took, recorded many per transaction with their `sending` status.
    sent: Batcher<store::Taken, Result<(), BatchError>>,
    bus: sms_bus::Bus,
    outbox: Outbox,
    /// The carriers, by the name numbers are routed by.
    carriers: Carriers,
    /// Held numbers and their routes (a copy of the number state).
    holders: sms_bus::Holders,
    /// `{public_url}/webhooks/twilio/status`.
    callback_url: String,
    callback_overrides: String,
    send_attempts: i32,
    in_doubt_after: Duration,
    /// The longest one carrier call takes (its timeout).
    carrier_timeout: Duration,
    /// (organization, number) pairs released since the message was accepted or scheduled.
    released: sms_bus::StateSet,
    /// (organization, contact) pairs that opted out.
    opted_out: sms_bus::StateSet,
    /// Each sender held to its rate.
    limiter: limiter::Limiter,
    /// The dispatch partitions this replica holds.
    holdings: partitions::Holdings,
    /// How long after taking a partition its senders' buckets start empty.
    fresh: Duration,
    /// Carrier calls under way at once, whatever the partitions (the waiting is unbounded).
    calls: tokio::sync::Semaphore,
}

/// Carrier calls a replica makes at once.
const CALLS_AT_ONCE: usize = 128;

/// How long an event of a partition this replica no longer holds stays away before it is
/// delivered again (to the partition's new holder).
const PARTITION_MOVED_DELAY: Duration = Duration::from_millis(250);

/// Handlers per partition consumer at once: most of them wait for their sender's rate.
const WAITING_PER_PARTITION: usize = 4096;

fn callback_base(public_url: &str) -> String {
    format!(
        "{}/webhooks/twilio/status",
        public_url.trim_end_matches('/')
    )
}

/// Claims and "sent" marks are group-committed: concurrent sends share statements.
const BATCH: usize = 256;
const BATCH_WORKERS: usize = 2;

/// A group-committed statement that failed, as each of its callers sees it.
#[derive(Debug, Clone)]
struct BatchError {
    /// The database could not be reached (see [`sms_runtime::db::is_unavailable`]).
    unavailable: bool,
    reason: String,
}

impl BatchError {
    fn new(e: &sqlx::Error) -> BatchError {
        BatchError {
            unavailable: sms_runtime::db::is_unavailable(e),
            reason: format!("database: {e}"),
        }
    }

    fn stopping() -> BatchError {
        BatchError {
            unavailable: true,
            reason: "dispatcher stopping".into(),
        }
    }

    /// What the bus should do with the event.
    fn handle(self, delivery: Delivery) -> HandleError {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let delay = backoff.delay(u32::try_from(delivery.attempt).unwrap_or(u32::MAX));
        if self.unavailable {
            HandleError::Unavailable {
                reason: self.reason,
                delay,
            }
        } else {
            HandleError::Retry {
                reason: self.reason,
                delay,
            }
        }
    }
}

/// Claims messages for carrier calls, many per transaction (see [`store::claim`]).
fn claims(
    pool: PgPool,
    outbox: Outbox,
    in_doubt_after: Duration,
) -> Batcher<store::Claim, Result<Option<i32>, BatchError>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<store::Claim>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            match store::claim(&pool, &outbox, &items, in_doubt_after).await {
                Ok(mut attempts) => {
                    outbox.wake();
                    // `remove`: a repeat of an id in this batch finds it taken.
                    items.iter().map(|c| Ok(attempts.remove(&c.id))).collect()
                }
                Err(e) => items.iter().map(|_| Err(BatchError::new(&e))).collect(),
            }
        }
    })
}

/// Records that the carrier took messages, many per transaction (see [`store::sent`]).
fn sent(pool: PgPool, outbox: Outbox) -> Batcher<store::Taken, Result<(), BatchError>> {
    Batcher::start(BATCH_WORKERS, BATCH, move |items: Vec<store::Taken>| {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        async move {
            let result = store::sent(&pool, &outbox, &items)
                .await
                .map_err(|e| BatchError::new(&e));
            if result.is_ok() {
                outbox.wake();
            }
            items.iter().map(|_| result.clone()).collect()
        }
    })
}

/// A database error as the bus should treat it (see [`sms_runtime::db::consumer_error`]).
fn db_retry(e: sqlx::Error, delivery: Delivery) -> HandleError {
    sms_runtime::db::consumer_error(e, delivery.attempt)
}

/// How long to wait before carrier call `attempt` (2 for the first retry) after a failure that
/// sent nothing, by its class: the carrier's own `Retry-After` when it gave one; otherwise full
/// jitter under a ceiling that doubles per attempt, from 2 s (at most a minute) when the
/// carrier is throttling us, 1 s (at most 30 s) when it is down or unreachable, and 5 s (at most
/// 5 minutes) for anything else it says may pass.
pub fn carrier_retry_delay(
    reason: Reason,
    attempt: i32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(Duration::from_secs(300));
    }
    let backoff = match reason {
        Reason::RateLimited | Reason::QueueOverflow => {
            Backoff::new(Duration::from_secs(2), Duration::from_secs(60))
        }
        Reason::CarrierUnavailable => Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        _ => Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
    };
    backoff.delay(u32::try_from(attempt.saturating_sub(1)).unwrap_or(0))
}

/// Until when a message may be handed to the carrier: what the composer set, or its validity
/// (Twilio's longest when none was asked for) from when it fell due (or now).
fn valid_until(m: &OutboundMessage, due: Option<i64>) -> DateTime<Utc> {
    let from_event = m
        .valid_until
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
    from_event.unwrap_or_else(|| {
        let start = due.unwrap_or_else(|| Utc::now().timestamp());
        let validity = match m.validity_seconds {
            0 => sms_core::DEFAULT_VALIDITY_SECS,
            s => i64::from(s),
        };
        DateTime::from_timestamp(start + validity, 0).unwrap_or_else(Utc::now)
    })
}

/// What is left of a message's validity, as the carrier's `ValidityPeriod` (1 to 36,000 s):
/// a message the carrier cannot deliver by then is dropped by the carrier, not delivered late.
fn validity_left(valid_until: DateTime<Utc>) -> u32 {
    let left = (valid_until - Utc::now()).num_seconds();
    u32::try_from(left.clamp(1, i64::from(sms_core::MAX_VALIDITY_SECS))).unwrap_or(1)
}

impl Dispatcher {
    /// Pulls partition `p`'s messages (to send now, and due) until `stop`.
    async fn consume_partition(self: Arc<Self>, p: u16, stop: CancellationToken) {
        let d = self.clone();
        let accepted = self.bus.consume_concurrently(
            ConsumerKind::DispatcherAccepted(p),
            WAITING_PER_PARTITION,
            stop.clone(),
            move |e: MessageAccepted, delivery| {
                let d = d.clone();
                async move { d.send(p, e.meta, e.message, delivery, None, None).await }
            },
        );
        let d = self.clone();
        let due = self.bus.consume_concurrently(
            ConsumerKind::DispatcherDue(p),
            WAITING_PER_PARTITION,
            stop,
            move |e: MessageDue, delivery| {
                let d = d.clone();
                async move {
                    let due = e.send_at.map(|t| t.seconds);
                    let late = e.late.then(|| {
                        let now = Utc::now().timestamp();
                        format!("fired {} s late", now.saturating_sub(due.unwrap_or(now)))
                    });
                    d.send(p, e.meta, e.message, delivery, due, late).await
                }
            },
        );
        let (a, b) = tokio::join!(accepted, due);
        for (what, result) in [("accepted", a), ("due", b)] {
            if let Err(e) = result {
                tracing::error!(partition = p, consumer = what, error = %e, "partition consumer failed");
            }
        }
    }

    /// Waits for `m`'s turn at its sender's rate, while this replica holds `partition`;
    /// `Err` (the event goes back to the bus, for the partition's next holder) when it stops
    /// holding it meanwhile.
    async fn wait_turn(
        &self,
        partition: u16,
        m: &OutboundMessage,
        queued: &Encoded,
    ) -> Result<CancellationToken, HandleError> {
        // Another replica's to send now: back to the stream for whoever holds the partition.
        // Not at once: while a partition changes hands, an event bounced with no delay comes
        // straight back to a pull still open here, again and again (tens of thousands of
        // redeliveries a minute in the long chaos run, starving the machine).
        let gone = || HandleError::Later {
            reason: format!("dispatch partition {partition} is not held here"),
            delay: PARTITION_MOVED_DELAY,
        };
        let held = self.holdings.holding(partition).ok_or_else(gone)?;
        let at = self.limiter.reserve(m, held.since.elapsed() < self.fresh);
        let wait = at.saturating_duration_since(std::time::Instant::now());
        if wait.is_zero() {
            return Ok(held.stop);
        }
        if wait > Duration::from_secs(1) {
            // Waiting for its sender: `queued`, as the claim will say again (same event).
            let _ = self.bus.publish_encoded(queued.clone()).await;
        }
        let waiting = metrics::gauge!(sms_runtime::metrics::DISPATCH_WAITING);
        waiting.increment(1.0);
        let stopped = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = held.stop.cancelled() => true,
        };
        waiting.decrement(1.0);
        metrics::histogram!(
            sms_runtime::metrics::DISPATCH_WAIT_SECONDS,
            "sender_kind" => sms_core::rate::SenderKind::of(&m.from).to_string()
        )
        .record(wait);
        if stopped || self.holdings.holding(partition).is_none() {
            return Err(gone());
        }
        Ok(held.stop)
    }

    async fn send(
        &self,
        partition: u16,
        meta: Option<EventMeta>,
        message: Option<OutboundMessage>,
        delivery: Delivery,
        due: Option<i64>,
        note: Option<String>,
    ) -> Result<(), HandleError> {
        let (Some(_meta), Some(m)) = (meta, message) else {
            return Err(HandleError::Permanent(
                "event without meta or message".into(),
            ));
        };
        let id = Uuid::parse_str(&m.message_id).map_err(|e| {
            HandleError::Permanent(format!("bad message id {:?}: {e}", m.message_id))
        })?;
        let detail = note.as_deref().unwrap_or("");
        let queued = self.encode(&events::status(&m, Status::Queued, None, None, detail));
        // Its sender's turn first: only this replica sends for the sender now.
        let stop = self.wait_turn(partition, &m, &queued).await?;
        // Then a free carrier call; a message still waiting when the partition is given back
        // (or the replica stops) goes back to the bus untouched.
        let given_back = || HandleError::Later {
            reason: format!("dispatch partition {partition} given back"),
            delay: PARTITION_MOVED_DELAY,
        };
        let _call = tokio::select! {
            permit = self.calls.acquire() => permit.map_err(|_| given_back())?,
            () = stop.cancelled() => return Err(given_back()),
        };
        // And room at its carrier, when it bounds its calls (SMPP's windows).
        let carrier = self.carrier_for(&m).ok().cloned();
        let _admitted = match carrier.as_ref().and_then(|c| c.admission()) {
            Some(room) => Some(tokio::select! {
                permit = room.acquire() => permit.map_err(|_| given_back())?,
                () = stop.cancelled() => return Err(given_back()),
            }),
            None => None,
        };
        let valid_until = valid_until(&m, due);
        let claim = store::Claim {
            id,
            organization_id: m.organization_id.clone(),
            message: m.encode_to_vec(),
            valid_until,
            queued: queued.clone(),
        };
        // The claim's lease runs from (at the latest) now: a call that could not end within
        // it is left to in-doubt resolution, which another replica may already be running.
        let claiming = std::time::Instant::now();
        let Some(attempt) = self
            .claims
            .call(claim)
            .await
            .unwrap_or_else(|| Err(BatchError::stopping()))
            .map_err(|e| e.handle(delivery))?
        else {
            tracing::debug!(%id, "already taken on; dropping the redelivery");
            return Ok(());
        };
        // The claim committed `queued` to the outbox, which will publish it. An early copy goes
        // out now, before the carrier call, so that it is on the bus ahead of the carrier's
        // callbacks (the composer holds back callbacks for a message not yet seen queued);
        // JetStream drops whichever copy comes second (same event id).
        let early = if attempt == 1 {
            self.bus.publish_encoded(queued).await.ok()
        } else {
            None
        };
        if let Some((reason, detail)) = self.blocked(&m, valid_until) {
            return self.fail(id, &m, reason, None, &detail, delivery).await;
        }
        // A loaded machine (a slow commit, a stalled publish) can eat the lease before the
        // call starts; once a resolver may have taken the send, calling as well could send it
        // twice. Left `sending`: the resolver asks the carrier, and sends it once if absent.
        if claiming.elapsed() + self.carrier_timeout >= self.in_doubt_after {
            tracing::warn!(%id, waited = ?claiming.elapsed(), "the claim's lease ran out before the carrier call; leaving it to in-doubt resolution");
            metrics::counter!(sms_runtime::metrics::IN_DOUBT_RESOLVED, "outcome" => "lease_lapsed")
                .increment(1);
            return Ok(());
        }
        let outcome = self.call(&m, valid_until).await;
        if let Some(ack) = early
            && let Err(e) = ack.await
        {
            tracing::debug!(%id, error = %e, "early queued copy not stored; the outbox publishes it");
        }
        match outcome {
            Ok(receipt) => self.taken(id, &m, &receipt, delivery).await,
            // The carrier throttling us (429, 20429, 30001) slows the message down, never fails
            // it: it is tried again after a back-off for as long as its validity lasts.
            Err(CarrierError::Retryable {
                reason: reason @ (Reason::RateLimited | Reason::QueueOverflow),
                code,
                detail,
                retry_after,
            }) => {
                tracing::info!(%id, attempt, %reason, ?code, "the carrier is throttling; will retry");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                let delay = carrier_retry_delay(reason, attempt + 1, retry_after);
                // The sender (and the account) slows down, not just this message.
                self.limiter.hold(&m, delay);
                Err(HandleError::Unavailable {
                    reason: detail,
                    delay,
                })
            }
            // The carrier out of reach (no connection, 502/503/504) is no failure of the
            // message: it waits, backing off, for as long as its validity lasts, like
            // throttling, and then fails as `expired` (not after a number of calls).
            Err(CarrierError::Unreachable {
                detail,
                retry_after,
            }) => {
                tracing::info!(%id, attempt, %detail, "the carrier cannot be reached; will retry within the message's validity");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                Err(HandleError::Unavailable {
                    reason: detail,
                    delay: carrier_retry_delay(
                        Reason::CarrierUnavailable,
                        attempt + 1,
                        retry_after,
                    ),
                })
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                retry_after,
            }) if attempt < self.send_attempts && !delivery.last => {
                tracing::warn!(%id, attempt, %reason, ?code, %detail, "carrier call failed; will retry");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                Err(HandleError::Retry {
                    reason: detail,
                    delay: carrier_retry_delay(reason, attempt + 1, retry_after),
                })
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                ..
            })
            | Err(CarrierError::Permanent {
                reason,
                code,
                detail,
            }) => {
                tracing::info!(%id, %reason, ?code, %detail, "message failed at the carrier");
                self.fail(id, &m, reason, code, &detail, delivery).await
            }
            Err(CarrierError::Ambiguous(detail)) => {
                // Left `sending`: once in doubt, the carrier is asked whether it has it.
                tracing::warn!(%id, %detail, "carrier call outcome unknown; will ask the carrier");
                self.hold_in_doubt(id).await;
                Ok(())
            }
        }
    }

    /// After a call whose outcome is unknown: a whole lease from now before anyone asks the
    /// carrier (see [`store::hold_in_doubt`]). Should this fail, the lease taken before the call
    /// still holds.
    async fn hold_in_doubt(&self, id: Uuid) {
        if let Err(e) = store::hold_in_doubt(&self.pool, id, self.in_doubt_after).await {
            tracing::warn!(%id, error = %e, "could not extend the lease of a send in doubt");
        }
    }

    /// Why `m` must not be handed to the carrier now, if it must not: a rule broken on the way,
    /// an opt-out or release since it was accepted, or its validity over.
    fn blocked(&self, m: &OutboundMessage, valid_until: DateTime<Utc>) -> Option<(Reason, String)> {
        // What can change between accepting and sending is checked again here, and so is what
        // the composer checked: the event came over the bus.
        let blocked = invalid(m)
            .inspect(|(reason, detail)| {
                tracing::error!(message_id = %m.message_id, %reason, %detail, "message breaks a rule; not sent");
            })
            .or_else(|| self.refusal(m).map(|r| (r, String::new())))
            .or_else(|| {
                (Utc::now() > valid_until).then(|| {
                    (
                        Reason::Expired,
                        format!(
                            "not handed to the carrier before its validity ended at {}",
                            valid_until.to_rfc3339()
                        ),
                    )
                })
            })?;
        metrics::counter!(sms_runtime::metrics::SENDS_BLOCKED, "reason" => blocked.0.as_str())
            .increment(1);
        Some(blocked)
    }

    /// One carrier call, measured.
    async fn call(
        &self,
        m: &OutboundMessage,
        valid_until: DateTime<Utc>,
    ) -> Result<Receipt, CarrierError> {
        let started = std::time::Instant::now();
        // The carrier call as a client span: the carrier gets its context (`traceparent`), and
        // so does the status callback URL, so the webhooks it causes join this trace under it.
        let span = tracing::info_span!(
            "carrier send",
            otel.name = "POST Messages",
            otel.kind = "client",
            "http.request.method" = "POST",
            "sms.carrier" = "twilio",
            "sms.message_id" = %m.message_id,
            otel.status_code = tracing::field::Empty,
        );
        let carrier = match self.carrier_for(m) {
            Ok(c) => c,
            Err(detail) => {
                tracing::warn!(message_id = %m.message_id, %detail, "no carrier for the message's route");
                return Err(CarrierError::Permanent {
                    reason: Reason::AccountProblem,
                    code: None,
                    detail,
                });
            }
        };
        let message = span.in_scope(|| self.carrier_message(m, validity_left(valid_until)));
        let outcome = tracing::Instrument::instrument(carrier.send(&message), span.clone()).await;
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        metrics::histogram!(sms_runtime::metrics::CARRIER_REQUEST_SECONDS)
            .record(started.elapsed());
        metrics::counter!(
            sms_runtime::metrics::CARRIER_REQUESTS,
            "outcome" => match &outcome {
                Ok(_) => "accepted",
                Err(CarrierError::Retryable { .. }) => "retryable_error",
                Err(CarrierError::Permanent { .. }) => "refused",
                Err(CarrierError::Unreachable { .. }) => "unreachable",
                Err(CarrierError::Ambiguous(_)) => "unknown",
            }
        )
        .increment(1);
        outcome
    }

    /// Records that the carrier took `m` under `carrier_sid`, with the `sending` status that
    /// binds the message to it.
    async fn taken(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        receipt: &Receipt,
        delivery: Delivery,
    ) -> Result<(), HandleError> {
        let taken = self.taken_row(id, m, receipt);
        // The carrier's callbacks apply only once the composer knows the sid from us: an early
        // copy goes out now, ahead of them, while the claim's change commits (a fact whatever
        // becomes of the commit: the carrier has the message). JetStream drops whichever copy
        // comes second (same event id); the outbox's is the one that cannot be lost.
        let early = self.bus.publish_encoded(taken.events[0].clone()).await.ok();
        let recorded = self
            .sent
            .call(taken)
            .await
            .unwrap_or_else(|| Err(BatchError::stopping()))
            .map_err(|e| e.handle(delivery));
        if let Some(ack) = early
            && let Err(e) = ack.await
        {
            tracing::debug!(%id, error = %e, "early sending copy not stored; the outbox publishes it");
        }
        recorded
    }

    /// The carrier `m` goes through: its sender's route, or the default.
    fn carrier_for(&self, m: &OutboundMessage) -> Result<&Arc<dyn Carrier>, String> {
        let route = self.holders.route(&m.organization_id, &m.from);
        self.carriers.get(&route).ok_or_else(|| {
            format!(
                "{} is routed to the carrier connection {}, which this dispatcher does not have \
                 (it has {})",
                m.from,
                sms_core::text::quote(&route),
                self.carriers.names().join(", ")
            )
        })
    }

    /// The carrier `m` goes through, or the default when its route names none (for what is
    /// asked of the carrier about a message already sent).
    fn carrier_or_default(&self, m: &OutboundMessage) -> &Arc<dyn Carrier> {
        self.carrier_for(m).unwrap_or(&self.carriers.default)
    }

    /// The row recording that the carrier took `m`: its sid, the `sending` status binding the
    /// message to it and, over SMPP, its parts' ids and `sent` (the SMSC took every part; the
    /// rest comes in receipts).
    fn taken_row(&self, id: Uuid, m: &OutboundMessage, receipt: &Receipt) -> store::Taken {
        let account = self.carrier_or_default(m).account();
        let mut events = vec![self.encode(&events::sending(
            &m.organization_id,
            &m.message_id,
            &receipt.carrier_sid,
            account,
        ))];
        if !receipt.parts.is_empty() {
            let record = CarrierRecord {
                sid: receipt.carrier_sid.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                body: String::new(),
                status: Some(Status::Sent),
                error_code: None,
                reason: None,
                created_at: Utc::now(),
            };
            if let Some(sent) =
                events::from_record(&m.organization_id, &m.message_id, account, &record)
            {
                events.push(self.encode(&sent));
            }
        }
        store::Taken {
            id,
            organization_id: m.organization_id.clone(),
            carrier_sid: receipt.carrier_sid.clone(),
            events,
            connection: account.to_owned(),
            parts: receipt.parts.clone(),
        }
    }

    /// Fails a claimed message: the claim's state and the `failed` status, in one transaction.
    async fn fail(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        reason: Reason,
        code: Option<u32>,
        detail: &str,
        delivery: Delivery,
    ) -> Result<(), HandleError> {
        let event = self.encode(&events::status(
            m,
            Status::Failed,
            Some(reason),
            code,
            detail,
        ));
        store::fail(&self.pool, &self.outbox, id, reason, detail, &event)
            .await
            .map_err(|e| db_retry(e, delivery))?;
        self.outbox.wake();
        Ok(())
    }

    fn encode<E: sms_bus::Event>(&self, event: &E) -> Encoded {
        self.outbox.encode(event)
    }

    /// Why the message must not go out any more, if it must not.
    fn refusal(&self, m: &OutboundMessage) -> Option<Reason> {
        if !m.allow_opted_out && self.opted_out.contains(&m.organization_id, &m.to) {
            return Some(Reason::OptedOut);
        }
        self.released
            .contains(&m.organization_id, &m.from)
            .then_some(Reason::SenderUnavailable)
    }

    fn carrier_message(&self, m: &OutboundMessage, validity_seconds: u32) -> CarrierMessage {
        let traceparent = sms_bus::trace::current_traceparent();
        let status_callback = match self.carrier_or_default(m).statuses() {
            StatusSource::Callbacks => Some(self.status_callback(m, traceparent.as_deref())),
            StatusSource::Receipts => None,
        };
        CarrierMessage {
            from: m.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            status_callback,
            media_urls: m.media_urls.clone(),
            validity_seconds,
            traceparent,
        }
    }

    /// The URL the carrier calls back with a message's statuses: the message and its
    /// organization in the query, with the trace context and the carrier's retry overrides.
    fn status_callback(&self, m: &OutboundMessage, traceparent: Option<&str>) -> String {
        let mut params = vec![
            ("org", m.organization_id.as_str()),
            ("mid", m.message_id.as_str()),
        ];
        if let Some(tp) = traceparent {
            // The callback URL is signed by the carrier, so the trace context in it is trusted
            // and the status events of this message continue its trace.
            params.push(("tp", tp));
        }
        let mut callback = reqwest::Url::parse_with_params(&self.callback_url, &params)
            .map(String::from)
            .unwrap_or_default();
        if !self.callback_overrides.is_empty() && !callback.is_empty() {
            // How the carrier calls us back: retries while our receiver is briefly unavailable.
            callback = format!("{callback}#{}", self.callback_overrides);
        }
        callback
    }
}

/// Why a message as it came over the bus must not be sent, if it must not: the composer's
/// rules (valid numbers in the same calling code, a recipient that takes SMS, a body of the
/// right length and characters), checked again with the same functions.
fn invalid(m: &OutboundMessage) -> Option<(Reason, String)> {
    let from = match PhoneNumber::parse_valid(&m.from, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidSender, e.to_string())),
    };
    let to = match PhoneNumber::parse_valid(&m.to, None) {
        Ok(n) => n,
        Err(e) => return Some((Reason::InvalidRecipient, e.to_string())),
    };
    if !to.sms_supported() {
        return Some((
            Reason::InvalidRecipient,
            format!("{} does not take SMS here", to.e164()),
        ));
    }
    if !sms_core::phone::same_calling_code(&from, &to) {
        return Some((
            Reason::InvalidRecipient,
            format!(
                "{} and {} are in different countries",
                from.e164(),
                to.e164()
            ),
        ));
    }
    if let Err(e) = sms_core::text::check("body", &m.body, usize::MAX, sms_core::text::Lines::Multi)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    if m.media_urls.len() > sms_core::mms::MAX_ATTACHMENTS {
        return Some((
            Reason::InvalidMessage,
            format!("{} attachments", m.media_urls.len()),
        ));
    }
    if (m.media_urls.is_empty() || !m.body.trim().is_empty())
        && let Err(e) = sms_core::validate_body(&m.body)
    {
        return Some((Reason::InvalidMessage, e.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_again() {
        let good = OutboundMessage {
            from: "+12015550100".into(),
            to: "+12015550123".into(),
            body: "hi".into(),
            ..Default::default()
        };
        assert_eq!(invalid(&good), None);
        let cases = [
            (
                OutboundMessage {
                    to: "+447400123456".into(),
                    ..good.clone()
                },
                Reason::InvalidRecipient,
            ),
            (
                OutboundMessage {
                    from: "garbage".into(),
                    ..good.clone()
                },
                Reason::InvalidSender,
            ),
            (
                OutboundMessage {
                    body: "a\0b".into(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: "x".repeat(1001),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
            (
                OutboundMessage {
                    body: String::new(),
                    ..good.clone()
                },
                Reason::InvalidMessage,
            ),
        ];
        for (m, reason) in cases {
            assert_eq!(invalid(&m).map(|(r, _)| r), Some(reason), "{m:?}");
        }
    }

    #[test]
    fn retries_back_off_by_class_with_full_jitter() {
        let sample = |reason, attempt| {
            (0..500)
                .map(|_| carrier_retry_delay(reason, attempt, None))
                .collect::<Vec<_>>()
        };
        // Throttled: the first retry within 2 s, later ones capped at a minute.
        let first = sample(Reason::RateLimited, 2);
        assert!(first.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(first.iter().any(|d| *d < Duration::from_secs(1)));
        let late = sample(Reason::RateLimited, 30);
        assert!(late.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(late.iter().any(|d| *d > Duration::from_secs(30)));
        // The carrier down: capped at 30 s; anything else: at 5 minutes.
        assert!(
            sample(Reason::CarrierUnavailable, 30)
                .iter()
                .all(|d| *d <= Duration::from_secs(30))
        );
        assert!(
            sample(Reason::Unreachable, 30)
                .iter()
                .any(|d| *d > Duration::from_secs(60))
        );
        // The carrier's own word wins.
        assert_eq!(
            carrier_retry_delay(Reason::RateLimited, 2, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn callbacks_ask_for_retries_in_the_fragment() {
        let url = format!(
            "{}?mid=1#{DEFAULT_CALLBACK_OVERRIDES}",
            callback_base("https://x/")
        );
        let (base, o) = sms_twilio::overrides::ConnectionOverrides::split(&url);
        assert_eq!(base, "https://x/webhooks/twilio/status?mid=1");
        assert_eq!(o.retries, 5);
        assert!(o.retries_after(sms_twilio::overrides::Attempt::Status(503)));
    }

    #[test]
    fn in_doubt_must_outlast_two_calls() {
        let pairs = [
            ("SMS_TWILIO_ACCOUNT_SID", "AC1"),
            ("SMS_TWILIO_AUTH_TOKEN", "t"),
            ("SMS_CARRIER_TIMEOUT_MS", "10000"),
            ("SMS_IN_DOUBT_AFTER_MS", "15000"),
        ];
        let e = Config::from_env(&Env::from_pairs(&pairs)).unwrap_err();
        assert_eq!(e.var, "SMS_IN_DOUBT_AFTER_MS");
        let pairs = [
            ("SMS_TWILIO_ACCOUNT_SID", "AC1"),
            ("SMS_TWILIO_AUTH_TOKEN", "t"),
            ("SMS_STATUS_CALLBACK_OVERRIDES", "rc=5#x"),
        ];
        let e = Config::from_env(&Env::from_pairs(&pairs)).unwrap_err();
        assert_eq!(e.var, "SMS_STATUS_CALLBACK_OVERRIDES");
    }
}
