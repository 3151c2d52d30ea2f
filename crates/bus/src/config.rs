//! How to reach NATS: servers, credentials, TLS, and the streams' tuning.

use std::time::Duration;

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
