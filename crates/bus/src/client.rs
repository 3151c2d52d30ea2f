//! A connection to the bus: connecting (with patience at start-up), making sure the streams
//! exist, publishing, and the durable consumers' set-up.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, NatsAuth, parse_servers};
use crate::error::BusError;

use crate::EVENT_TYPE_HEADER;
use crate::event::{Encoded, Event};
use crate::subjects::{ConsumerKind, Subjects};

/// How long start-up keeps trying to reach JetStream (connect, streams) before giving up: long
/// enough for a stream leader election or a NATS node restart.
pub(crate) const START_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, waiting a jittered, doubling pause (100 ms to 2 s) between
/// failures, for `patience` at most (then the last error) or until `shutdown`.
pub(crate) async fn persist<T, E, F, Fut>(
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

/// A connection to the bus of one namespace.
#[derive(Clone)]
pub struct Bus {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) config: BusConfig,
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
}
