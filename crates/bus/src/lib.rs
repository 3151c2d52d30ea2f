//! NATS JetStream for the SMS platform.
//!
//! * [`Subjects`] and [`ConsumerKind`]: every subject, stream and durable consumer, in one place;
//! * [`Bus::publish`]: typed protobuf publish with the event id as `Nats-Msg-Id` (JetStream
//!   drops a repeat inside the duplicate window) and the W3C trace context in the headers;
//! * [`Bus::consume`]: a durable pull consumer shared by every replica, explicit acks, bounded
//!   redelivery, and a dead-letter stream for events that cannot be decoded or keep failing.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, HeaderValue};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

mod event;
pub mod metrics;
pub mod permissions;
mod subjects;
pub mod trace;

pub use event::{
    Encoded, Event, carrier_status_event_id, meta, new_event_id, stable_event_id,
    status_from_proto, status_to_proto,
};
pub use subjects::{ConsumerKind, DISPATCH_PARTITIONS, StateKind, Subjects, dispatch_partition};

/// Header naming an event's protobuf type (`sms.events.v1.MessageAccepted`); consumers
/// refuse events of another type.
pub const EVENT_TYPE_HEADER: &str = "Sms-Event-Type";
/// Header naming why an event was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "Sms-Dlq-Reason";
/// Header naming the subject a dead-lettered event was published on.
pub const DLQ_SUBJECT_HEADER: &str = "Sms-Dlq-Subject";
/// Header naming the consumer that gave up on a dead-lettered event.
pub const DLQ_CONSUMER_HEADER: &str = "Sms-Dlq-Consumer";

/// Errors talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// The server refused our credentials: trying again will not help.
    #[error("NATS at {url} refused the credentials of {how}: {source}")]
    Refused {
        /// The server URL.
        url: String,
        /// Which credentials (the variables that gave them).
        how: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// A credentials file could not be read.
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A JetStream call failed (stream or consumer set-up, publish, fetch).
    #[error("JetStream {what} failed: {source}")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    fn js(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        BusError::JetStream {
            what,
            source: Box::new(source),
        }
    }
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth trying again after `delay` (a database or carrier hiccup).
    #[error("retryable: {reason}")]
    Retry {
        /// What went wrong.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Something the handler depends on is down (the database restarting, say): tried again
    /// after `delay` for as long as it takes, never dead-lettered, because the event itself is
    /// fine and dropping it would lose it.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What is down.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Not to be handled here now, in the normal course of things: the event came ahead of
    /// the one it follows (events of one message travel apart and can be handled out of
    /// order), or it is another replica's to handle (a dispatch partition that moved). Back to
    /// the stream, to be delivered again after `delay`. Logged at DEBUG only; the handler
    /// decides for how long an event may come back before it is dead-lettered.
    #[error("later: {reason}")]
    Later {
        /// What it waits for.
        reason: String,
        /// How long to wait before the redelivery.
        delay: Duration,
    },
    /// Will never succeed: the event goes to the dead-letter stream.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// The NATS servers in `urls`, a comma-separated list (`nats://a:4222,nats://b:4222`): the
/// client starts from any that answers and reconnects to any of them (and to the servers the
/// cluster announces). Errors name the entry that is not a server address.
pub fn parse_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "{} is not a NATS server address: {e}",
                    sms_core::text::quote(s)
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no NATS server given".into());
    }
    Ok(servers)
}

/// How long start-up keeps trying to reach JetStream (connect, streams) before giving up: long
/// enough for a stream leader election or a NATS node restart.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, waiting a jittered, doubling pause (100 ms to 2 s) between
/// failures, for `patience` at most (then the last error) or until `shutdown`.
async fn persist<T, E, F, Fut>(
    what: &str,
    patience: Duration,
    shutdown: Option<&CancellationToken>,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut ceiling = Duration::from_millis(100);
    loop {
        let error = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let stopping = shutdown.is_some_and(CancellationToken::is_cancelled);
        if stopping || tokio::time::Instant::now() + ceiling > deadline {
            return Err(error);
        }
        tracing::warn!(%error, "{what} failed; trying again");
        let pause = Duration::from_millis(fastrand::u64(
            0..=u64::try_from(ceiling.as_millis()).unwrap_or(2000),
        ));
        match shutdown {
            Some(token) => {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
        ceiling = (ceiling * 2).min(Duration::from_secs(2));
    }
}

/// Tuning for streams and consumers.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// NATS server URLs, comma-separated (see [`parse_servers`]).
    pub url: String,
    /// Subject namespace.
    pub namespace: String,
    /// How long a delivered, unacknowledged event waits before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before an event that keeps failing is dead-lettered.
    pub max_deliver: i64,
    /// Events pulled per request.
    pub batch: usize,
    /// Events handled at once per consumer.
    pub concurrency: usize,
    /// Batches handled at once per consumer, by [`Bus::consume_batches`].
    pub batches_in_flight: usize,
    /// How long the events stream keeps events.
    pub max_age: Duration,
    /// JetStream de-duplication window for `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// Copies JetStream keeps of each stream (3 on a 3-node cluster; 1 on a single server).
    /// Applies when a stream is created.
    pub replicas: usize,
    /// Who we are to NATS.
    pub auth: NatsAuth,
    /// TLS to the servers.
    pub tls: NatsTls,
}

/// Credentials for NATS (one kind at a time).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// None: a server without authorization (development).
    #[default]
    None,
    /// `SMS_NATS_USER` and `SMS_NATS_PASSWORD`.
    UserPassword {
        /// The user.
        user: String,
        /// Its password.
        password: String,
    },
    /// `SMS_NATS_TOKEN`.
    Token(String),
    /// `SMS_NATS_CREDS`: a `.creds` file (user JWT and NKey seed), as `nsc` writes them.
    CredsFile(std::path::PathBuf),
}

impl NatsAuth {
    /// Which credentials these are, naming their variables (never their secrets).
    pub fn describe(&self) -> String {
        match self {
            NatsAuth::None => "no credentials".into(),
            NatsAuth::UserPassword { user, .. } => {
                format!("user {user:?} (SMS_NATS_USER/SMS_NATS_PASSWORD)")
            }
            NatsAuth::Token(_) => "the token in SMS_NATS_TOKEN".into(),
            NatsAuth::CredsFile(path) => format!("{} (SMS_NATS_CREDS)", path.display()),
        }
    }
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.write_str(&self.describe())
    }
}

/// TLS to the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// `SMS_NATS_TLS`: refuse a server that does not speak TLS.
    pub required: bool,
    /// `SMS_NATS_CA`: the CA bundle (PEM) the servers' certificates are checked against.
    pub ca: Option<std::path::PathBuf>,
    /// `SMS_NATS_CERT` and `SMS_NATS_KEY`: a client certificate and its key (PEM), for servers
    /// that verify clients.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl BusConfig {
    /// Defaults for `url` and `namespace`.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        BusConfig {
            url: url.into(),
            namespace: namespace.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            batch: 256,
            concurrency: 64,
            batches_in_flight: 4,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}

/// A running state follower.
#[derive(Debug, Clone)]
pub struct StateFollower {
    ready: tokio::sync::watch::Receiver<bool>,
}

impl StateFollower {
    /// Waits until the replay has caught up, at most `timeout`; returns whether it has.
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.ready.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// One delivery of an event to a handler.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// 1 for the first delivery.
    pub attempt: i64,
    /// Whether a failure now sends the event to the dead-letter stream.
    pub last: bool,
}

/// A connection to the bus of one namespace.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
    config: BusConfig,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("config", &self.config).finish()
    }
}

impl Bus {
    /// Connects to any of the configured servers and makes sure the streams exist.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let servers = parse_servers(&config.url).map_err(|e| BusError::Connect {
            url: config.url.clone(),
            source: async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ),
        })?;
        // A node may be down or electing leaders while we start: keep trying for a while
        // rather than exit. Refused credentials are not worth another try.
        let client = persist("NATS connect", START_PATIENCE, None, || async {
            match Self::open(&config, &servers).await {
                Ok(client) => Ok(Ok(client)),
                Err(e @ (BusError::Refused { .. } | BusError::Credentials { .. })) => Ok(Err(e)),
                Err(e) => Err(e),
            }
        })
        .await??;
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(1024)
            .build(client.clone());
        let bus = Bus {
            client,
            js,
            subjects: Subjects::new(config.namespace.clone()),
            config,
        };
        persist("JetStream stream set-up", START_PATIENCE, None, || {
            bus.ensure_streams()
        })
        .await?;
        Ok(bus)
    }

    /// One attempt at a connection to any of `servers`.
    async fn open(
        config: &BusConfig,
        servers: &[async_nats::ServerAddr],
    ) -> Result<async_nats::Client, BusError> {
        let mut options = match &config.auth {
            NatsAuth::None => async_nats::ConnectOptions::new(),
            NatsAuth::UserPassword { user, password } => {
                async_nats::ConnectOptions::new().user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(token) => async_nats::ConnectOptions::new().token(token.clone()),
            NatsAuth::CredsFile(path) => async_nats::ConnectOptions::new()
                .credentials_file(path)
                .await
                .map_err(|source| BusError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?,
        };
        if config.tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &config.tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &config.tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(sid, "NATS slow consumer")
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            })
            .connect(servers)
            .await
            .map_err(|source| match source.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication => BusError::Refused {
                    url: config.url.clone(),
                    how: config.auth.describe(),
                    source,
                },
                _ => BusError::Connect {
                    url: config.url.clone(),
                    source,
                },
            })
    }

    /// The subjects of this bus's namespace.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The plain NATS client (for subscriptions in tests and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Whether the connection is up (for readiness probes).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates the events and dead-letter streams if they do not exist.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        let events = stream::Config {
            name: self.subjects.events_stream(),
            subjects: self.subjects.event_subjects(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: self.config.max_age,
            duplicate_window: self.config.duplicate_window,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        let dlq = stream::Config {
            name: self.subjects.dead_letter_stream(),
            subjects: self.subjects.dead_letter_subjects(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: self.config.max_age * 4,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        // Current state, one message per key, kept for ever: replicas rebuild their local copies
        // from it at start-up however old the last change is.
        let state = stream::Config {
            name: self.subjects.state_stream(),
            subjects: self.subjects.state_subjects(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_messages_per_subject: 1,
            duplicate_window: self.config.duplicate_window,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        for config in [events, dlq, state] {
            self.js
                .get_or_create_stream(config)
                .await
                .map_err(|e| BusError::js("stream set-up", e))?;
        }
        Ok(())
    }

    /// Deletes this namespace's streams (tests and tools only).
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        for name in [
            self.subjects.events_stream(),
            self.subjects.dead_letter_stream(),
            self.subjects.state_stream(),
        ] {
            self.js
                .delete_stream(&name)
                .await
                .map_err(|e| BusError::js("stream deletion", e))?;
        }
        Ok(())
    }

    /// Publishes `event` and returns the future of its acknowledgement, so callers can keep
    /// many publishes in flight and await them together.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PublishAckFuture, BusError> {
        self.publish_encoded(Encoded::new(&self.subjects, event))
            .await
    }

    /// Publishes an event encoded earlier (an outbox row): its subject, `Nats-Msg-Id`, type
    /// header and the trace context it was created in.
    pub async fn publish_encoded(&self, event: Encoded) -> Result<PublishAckFuture, BusError> {
        let mut headers = HeaderMap::new();
        if let Some(traceparent) = &event.traceparent {
            headers.insert("traceparent", traceparent.as_str());
        }
        headers.insert("Nats-Msg-Id", event.event_id.as_str());
        headers.insert(EVENT_TYPE_HEADER, event.event_type.as_str());
        self.js
            .publish_with_headers(event.subject, headers, event.payload.into())
            .await
            .map_err(|e| BusError::js("publish", e))
    }

    /// Publishes `event` and waits until JetStream has stored it.
    pub async fn publish_durably<E: Event>(&self, event: &E) -> Result<(), BusError> {
        self.publish(event)
            .await?
            .await
            .map(|_| ())
            .map_err(|e| BusError::js("publish acknowledgement", e))
    }

    /// The durable pull consumer `kind`, created if needed.
    pub async fn consumer(&self, kind: ConsumerKind) -> Result<PullConsumer, BusError> {
        let name = if kind.on_state() {
            self.subjects.state_stream()
        } else {
            self.subjects.events_stream()
        };
        let stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| BusError::js("stream lookup", e))?;
        let config = pull::Config {
            durable_name: Some(kind.durable_name()),
            filter_subject: kind.filter_subject(&self.subjects),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.config.ack_wait,
            // Unlimited on the server: we decide. An event that keeps failing on its own
            // account goes to the dead-letter stream after `max_deliver` deliveries; one whose
            // handler waits for a dependency to come back is redelivered until it does.
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&kind.durable_name(), config)
            .await
            .map_err(|e| BusError::js("consumer set-up", e))
    }

    /// Consumes events of type `E` from the durable consumer `kind` until `shutdown`, running
    /// up to `concurrency` handlers at once. On shutdown no new event is taken and the ones in
    /// hand are finished; events fetched but not started are redelivered after `ack_wait`.
    pub async fn consume<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        self.consume_concurrently(kind, self.config.concurrency, shutdown, handler)
            .await
    }

    /// Like [`Bus::consume`], with up to `concurrency` handlers at once: for handlers that
    /// mostly wait (a message held to its sender's rate), thousands.
    pub async fn consume_concurrently<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        concurrency: usize,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        let consumer = self.durable(kind, &shutdown).await?;
        while !shutdown.is_cancelled() {
            let Some(messages) = self.pull(&consumer, kind, &shutdown).await else {
                continue;
            };
            messages
                .take_until(shutdown.cancelled())
                .for_each_concurrent(concurrency, |message| async {
                    match message {
                        Ok(m) => self.handle(kind, m, &handler).await,
                        Err(e) => {
                            tracing::warn!(consumer = %kind.durable_name(), error = %e, "consumer stream error")
                        }
                    }
                })
                .await;
        }
        Ok(())
    }

    /// Like [`Bus::consume`], but hands `handler` every event that has arrived (up to `batch`)
    /// at once, so that it can apply them together, in one transaction say. It returns one
    /// outcome per event, in order; each is acknowledged, retried or dead-lettered on its own.
    /// Up to `batches_in_flight` batches are handled at once.
    pub async fn consume_batches<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(Vec<(E, Delivery)>) -> Fut + Send + Sync,
        Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
    {
        let consumer = self.durable(kind, &shutdown).await?;
        while !shutdown.is_cancelled() {
            let Some(messages) = self.pull(&consumer, kind, &shutdown).await else {
                continue;
            };
            messages
                .take_until(shutdown.cancelled())
                .filter_map(|message| async move {
                    message
                        .inspect_err(|e| {
                            tracing::warn!(consumer = %kind.durable_name(), error = %e, "consumer stream error");
                        })
                        .ok()
                })
                .ready_chunks(self.config.batch)
                .for_each_concurrent(self.config.batches_in_flight, |batch| {
                    self.handle_batch(kind, batch, &handler)
                })
                .await;
        }
        Ok(())
    }

    /// The durable consumer `kind`, set up however long JetStream takes to answer (a leader
    /// election), until `shutdown`.
    async fn durable(
        &self,
        kind: ConsumerKind,
        shutdown: &CancellationToken,
    ) -> Result<PullConsumer, BusError> {
        persist(
            "JetStream consumer set-up",
            // Until shutdown: a consumer is what the service is for.
            Duration::from_secs(365 * 24 * 3600),
            Some(shutdown),
            || self.consumer(kind),
        )
        .await
    }

    /// A pull stream on `consumer`; `None` (after a pause, or at shutdown) when the pull failed.
    async fn pull(
        &self,
        consumer: &PullConsumer,
        kind: ConsumerKind,
        shutdown: &CancellationToken,
    ) -> Option<pull::Stream> {
        match consumer
            .stream()
            .max_messages_per_batch(self.config.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(consumer = %kind.durable_name(), error = %e, "pull failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                None
            }
        }
    }

    fn delivery(&self, message: &jetstream::Message) -> Delivery {
        let attempt = message.info().map_or(1, |i| i.delivered);
        Delivery {
            attempt,
            last: attempt >= self.config.max_deliver,
        }
    }

    /// Acknowledges, retries or dead-letters `message` by the handler's `result`.
    async fn settle(
        &self,
        kind: ConsumerKind,
        message: &jetstream::Message,
        delivery: Delivery,
        result: Result<(), HandleError>,
    ) {
        let outcome = match result {
            Ok(()) => {
                count(kind, "ok");
                message.ack().await
            }
            Err(HandleError::Retry { reason, delay }) if !delivery.last => {
                tracing::warn!(attempt = delivery.attempt, %reason, "handler failed; will retry");
                count(kind, "retry");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandleError::Unavailable { reason, delay }) => {
                tracing::warn!(attempt = delivery.attempt, %reason, "a dependency is unavailable; will retry");
                count(kind, "unavailable");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandleError::Later { reason, delay }) => {
                tracing::debug!(attempt = delivery.attempt, %reason, "event not for now; back to the stream");
                count(kind, "later");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(e) => return self.dead_letter(kind, message, &e.to_string()).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "acknowledgement failed; the event will be redelivered");
        }
    }

    async fn handle_batch<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        messages: Vec<jetstream::Message>,
        handler: &F,
    ) where
        E: Event,
        F: Fn(Vec<(E, Delivery)>) -> Fut + Send + Sync,
        Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
    {
        let span = tracing::info_span!(
            "process batch",
            otel.name = %format_args!("process {}", kind.filter_subject(&self.subjects)),
            otel.kind = "consumer",
            "messaging.system" = "nats",
            "messaging.operation.type" = "process",
            "messaging.consumer.group.name" = %kind.durable_name(),
            "messaging.batch.message_count" = messages.len(),
        );
        async {
            let mut events = Vec::with_capacity(messages.len());
            let mut kept = Vec::with_capacity(messages.len());
            for message in messages {
                let delivery = self.delivery(&message);
                match decode::<E>(&message) {
                    Ok(event) => {
                        trace::link_from(&tracing::Span::current(), message.headers.as_ref());
                        // Each event's processing in its own trace too: a span that is the
                        // child of the event's creation and lasts as long as its batch.
                        let each = process_span(&self.subjects, kind, &message);
                        trace::set_parent_from(&each, message.headers.as_ref());
                        each.record("sms.message_id", event.message_id());
                        events.push((event, delivery));
                        kept.push((message, delivery, each));
                    }
                    Err(reason) => self.dead_letter(kind, &message, &reason).await,
                }
            }
            if events.is_empty() {
                return;
            }
            let started = std::time::Instant::now();
            let results = handler(events).await;
            ::metrics::histogram!(metrics::HANDLE_SECONDS, "consumer" => kind.durable_name())
                .record(started.elapsed());
            if results.len() != kept.len() {
                tracing::error!(
                    events = kept.len(),
                    outcomes = results.len(),
                    "batch handler returned the wrong number of outcomes; retrying the rest"
                );
            }
            let results = results
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat_with(|| None));
            for ((message, delivery, _each), result) in kept.iter().zip(results) {
                let result = result.unwrap_or_else(|| {
                    Err(HandleError::Retry {
                        reason: "no outcome from the batch handler".into(),
                        delay: Duration::from_secs(1),
                    })
                });
                self.settle(kind, message, *delivery, result).await;
            }
        }
        .instrument(span)
        .await
    }

    async fn handle<E, F, Fut>(&self, kind: ConsumerKind, message: jetstream::Message, handler: &F)
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        let span = process_span(&self.subjects, kind, &message);
        trace::set_parent_from(&span, message.headers.as_ref());
        async {
            let delivery = self.delivery(&message);
            let event = match decode::<E>(&message) {
                Ok(e) => e,
                Err(reason) => return self.dead_letter(kind, &message, &reason).await,
            };
            tracing::Span::current().record("sms.message_id", event.message_id());
            let started = std::time::Instant::now();
            // A handler that takes a while (a message waiting for its sender's rate) keeps the
            // event: JetStream is told it is in progress, so it is not redelivered meanwhile.
            let work = handler(event, delivery);
            tokio::pin!(work);
            let period = (self.config.ack_wait / 3).max(Duration::from_millis(100));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let result = loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = ticks.tick() => {
                        if let Err(e) = message.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "progress acknowledgement failed");
                        }
                    }
                }
            };
            ::metrics::histogram!(metrics::HANDLE_SECONDS, "consumer" => kind.durable_name())
                .record(started.elapsed());
            self.settle(kind, &message, delivery, result).await;
        }
        .instrument(span)
        .await
    }

    /// A local copy of the state `kind` as a set: `entry` turns each change into
    /// (organization, key, whether the key is in the set). Waits for the replay to catch up,
    /// at most `catch_up` (then starts anyway, with a warning).
    pub async fn state_set<E: Event>(
        &self,
        kind: StateKind,
        shutdown: CancellationToken,
        catch_up: Duration,
        entry: fn(E) -> (String, String, bool),
    ) -> Result<StateSet, BusError> {
        let set = StateSet::default();
        let copy = set.clone();
        let mut follower = self
            .follow_state(kind, shutdown, move |e: E| {
                let (organization_id, key, present) = entry(e);
                copy.set(organization_id, key, present);
            })
            .await?;
        if !follower.wait_ready(catch_up).await {
            tracing::warn!(
                kind = kind.as_str(),
                "local copy not caught up after {catch_up:?}; starting anyway"
            );
        }
        Ok(set)
    }

    /// Follows the compacted state of `kind`: replays the current value of every key, then
    /// every change, calling `apply` for each (in order, per replica, never acknowledged: each
    /// replica sees everything). The returned handle tells when the replay has caught up.
    pub async fn follow_state<E, F>(
        &self,
        kind: StateKind,
        shutdown: CancellationToken,
        apply: F,
    ) -> Result<StateFollower, BusError>
    where
        E: Event,
        F: Fn(E) + Send + Sync + 'static,
    {
        let (consumer, pending) = persist(
            "state consumer set-up",
            START_PATIENCE,
            Some(&shutdown),
            || self.state_consumer(kind),
        )
        .await?;
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(pending == 0);
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| BusError::js("state consumer", e))?;
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        match decode::<E>(&message) {
                            Ok(event) => apply(event),
                            Err(reason) => {
                                tracing::error!(subject = %message.subject, %reason, "state entry refused")
                            }
                        }
                        if message.info().is_ok_and(|i| i.pending == 0) {
                            let _ = ready_tx.send(true);
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "state consumer error"),
                    None => {
                        tracing::error!(kind = kind.as_str(), "state consumer ended");
                        return;
                    }
                }
            }
        });
        Ok(StateFollower { ready: ready_rx })
    }

    /// An ordered consumer replaying the state of `kind`, and how many entries it has to replay.
    async fn state_consumer(
        &self,
        kind: StateKind,
    ) -> Result<
        (
            async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>,
            u64,
        ),
        BusError,
    > {
        let stream = self
            .js
            .get_stream(self.subjects.state_stream())
            .await
            .map_err(|e| BusError::js("state stream lookup", e))?;
        let mut consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.subjects.state_all(kind),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::js("state consumer set-up", e))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| BusError::js("state consumer info", e))?
            .num_pending;
        Ok((consumer, pending))
    }

    /// Copies an event to the dead-letter stream with the reason, then terminates it, so it
    /// never blocks the events behind it.
    async fn dead_letter(&self, kind: ConsumerKind, message: &jetstream::Message, reason: &str) {
        tracing::error!(%reason, "dead-lettering event");
        count(kind, "dead_lettered");
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(DLQ_REASON_HEADER, HeaderValue::from(reason));
        headers.insert(DLQ_SUBJECT_HEADER, message.subject.as_str());
        headers.insert(DLQ_CONSUMER_HEADER, kind.durable_name().as_str());
        let seq = message.info().map_or(0, |i| i.stream_sequence);
        headers.insert(
            "Nats-Msg-Id",
            format!("{}-{seq}", kind.durable_name()).as_str(),
        );
        let published = match self
            .js
            .publish_with_headers(
                self.subjects.dead_letter(&kind.durable_name()),
                headers,
                message.payload.clone(),
            )
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => {
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "could not terminate a dead-lettered event");
                }
            }
            // Not stored in the DLQ: leave it unacknowledged so it comes back, never lost.
            Err(e) => tracing::error!(error = %e, "dead-letter publish failed"),
        }
    }
}

/// A consumer's processing of one message (messaging semantic conventions: operation
/// `process`, span kind consumer).
fn process_span(
    subjects: &Subjects,
    kind: ConsumerKind,
    message: &jetstream::Message,
) -> tracing::Span {
    let event_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map_or("", |v| v.as_str());
    tracing::info_span!(
        "process",
        // Named after the consumer's filter (low cardinality: no numbers, no organizations).
        otel.name = %format_args!("process {}", kind.filter_subject(subjects)),
        otel.kind = "consumer",
        "messaging.system" = "nats",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = %message.subject,
        "messaging.consumer.group.name" = %kind.durable_name(),
        "messaging.message.id" = %event_id,
        "sms.message_id" = field::Empty,
    )
}

/// A replica's local set of (organization, key) pairs — opted-out contacts, released numbers —
/// kept current from the state stream by [`Bus::follow_state`]. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct StateSet(std::sync::Arc<std::sync::RwLock<std::collections::HashSet<(String, String)>>>);

impl StateSet {
    /// Records whether `key` of `organization_id` is in the set.
    pub fn set(&self, organization_id: String, key: String, present: bool) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        if present {
            set.insert((organization_id, key));
        } else {
            set.remove(&(organization_id, key));
        }
    }

    /// Whether `key` of `organization_id` is in the set.
    pub fn contains(&self, organization_id: &str, key: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(organization_id.to_owned(), key.to_owned()))
    }
}

/// Held numbers, a replica's copy of the number state kept by [`Holders::apply`] from
/// [`Bus::follow_state`]: each number's organization and the carrier connection its messages
/// go through. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct Holders(std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Held>>>);

/// Who holds a number, and how it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The organization holding it.
    pub organization_id: String,
    /// Its carrier connection; empty for the default.
    pub carrier_connection: String,
}

impl Holders {
    /// Applies a number's state: held (again, perhaps with another route), or released by the
    /// organization that held it.
    pub fn apply(&self, e: &sms_proto::events::v1::NumberChanged) {
        let org = e
            .meta
            .as_ref()
            .map(|m| m.organization_id.clone())
            .unwrap_or_default();
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if e.active {
            map.insert(
                e.number.clone(),
                Held {
                    organization_id: org,
                    carrier_connection: e.carrier_connection.clone(),
                },
            );
        } else if map.get(&e.number).is_some_and(|h| h.organization_id == org) {
            map.remove(&e.number);
        }
    }

    /// Who holds `number`, as the copy says now.
    pub fn get(&self, number: &str) -> Option<Held> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(number)
            .cloned()
    }

    /// The organization holding `number`. A number the copy does not know is looked up again
    /// for up to `patience`: the carrier only delivers for numbers we hold, so it may have been
    /// added just now and its state still be on its way.
    pub async fn holder(&self, number: &str, patience: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let org = self.get(number).map(|h| h.organization_id);
            if org.is_some() || std::time::Instant::now() >= deadline {
                return org;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The carrier connection `organization_id`'s `number` sends through; empty for the
    /// default (or a number it does not hold).
    pub fn route(&self, organization_id: &str, number: &str) -> String {
        self.get(number)
            .filter(|h| h.organization_id == organization_id)
            .map(|h| h.carrier_connection)
            .unwrap_or_default()
    }
}

/// The event in `message`, if the message says it is an `E` (its type header) and decodes as
/// one; otherwise why not.
fn decode<E: Event>(message: &async_nats::Message) -> Result<E, String> {
    let declared = message
        .headers
        .as_ref()
        .and_then(|h| h.get(EVENT_TYPE_HEADER))
        .map(|v| v.as_str());
    match declared {
        Some(t) if t == E::TYPE => {}
        Some(t) => {
            return Err(format!(
                "event type {} where {} was expected",
                sms_core::text::quote(t),
                E::TYPE
            ));
        }
        None => {
            return Err(format!(
                "no {EVENT_TYPE_HEADER} header where {} was expected",
                E::TYPE
            ));
        }
    }
    E::decode(message.payload.clone()).map_err(|e| format!("cannot decode {}: {e}", E::NAME))
}

fn count(kind: ConsumerKind, outcome: &'static str) {
    ::metrics::counter!(metrics::EVENTS, "consumer" => kind.durable_name(), "outcome" => outcome)
        .increment(1);
}

/// The opted-out set's entry for an opt-out change, for [`Bus::state_set`].
pub fn opted_out_entry(e: sms_proto::events::v1::OptOutChanged) -> (String, String, bool) {
    let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
    (org, e.contact_number, e.opted_out)
}

#[cfg(test)]
mod tests {
    use sms_proto::events::v1::NumberChanged;

    use super::*;

    fn changed(org: &str, number: &str, active: bool, route: &str) -> NumberChanged {
        NumberChanged {
            meta: Some(meta(new_event_id(), org, "")),
            number: number.into(),
            active,
            carrier_connection: route.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_held_copy_follows_holds_routes_and_releases_by_their_holder() {
        let h = Holders::default();
        h.apply(&changed("a", "+1", true, "smpp"));
        assert_eq!(h.route("a", "+1"), "smpp");
        assert_eq!(
            h.route("b", "+1"),
            "",
            "another organization's number has no route"
        );
        // A release by another organization (an old one) leaves the holder's.
        h.apply(&changed("b", "+1", false, ""));
        assert_eq!(h.get("+1").map(|x| x.organization_id), Some("a".into()));
        h.apply(&changed("a", "+1", true, ""));
        assert_eq!(h.route("a", "+1"), "", "back to the default");
        h.apply(&changed("a", "+1", false, ""));
        assert_eq!(h.get("+1"), None);
    }
}
