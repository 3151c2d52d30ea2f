//! Configuration from `SMS_*` environment variables: defaults in code, one clear error naming
//! the variable when a value is wrong.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl ConfigError {
    /// An error for `var` holding `value`.
    pub fn new(var: &str, value: impl Into<String>, reason: impl Display) -> Self {
        ConfigError {
            var: var.to_owned(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }
}

/// Looks a variable up by name.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables through a lookup function, so tests need not touch the process environment.
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl Default for Env<'_> {
    fn default() -> Self {
        Env::from_process()
    }
}

impl<'a> Env<'a> {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// A fixed set of variables.
    pub fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Env {
            lookup: Box::new(move |k| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }),
        }
    }

    /// This environment, falling back to `defaults` for variables it does not set.
    pub fn with_defaults(self, defaults: Vec<(String, String)>) -> Env<'a> {
        Env {
            lookup: Box::new(move |k| {
                (self.lookup)(k)
                    .filter(|v| !v.trim().is_empty())
                    .or_else(|| {
                        defaults
                            .iter()
                            .find(|(name, _)| name == k)
                            .map(|(_, v)| v.clone())
                    })
            }),
        }
    }

    /// The raw value of `var`, if set and not empty.
    pub fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// `var` parsed, or `default` when unset.
    pub fn parse_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(var, v.clone(), e)),
        }
    }

    /// `var` as a string, or `default` when unset.
    pub fn string_or(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    /// `var` as milliseconds, or `default` when unset.
    pub fn millis_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse_or(var, default.as_millis() as u64)?;
        Ok(Duration::from_millis(ms))
    }

    /// `var` as a boolean (`true`/`false`/`1`/`0`), or `default` when unset.
    pub fn bool_or(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(var, other, "expected true or false")),
        }
    }
}

/// `SMS_HEALTH_ADDR`: where a service serves `/healthz` and `/readyz` (none when unset).
pub fn health_addr(env: &Env<'_>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    env.raw("SMS_HEALTH_ADDR")
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| ConfigError::new("SMS_HEALTH_ADDR", v.clone(), e))
        })
        .transpose()
}

/// Carrier accounts (SID → auth token): `SMS_TWILIO_ACCOUNTS` (`AC…:token,…`) and/or the one
/// `SMS_TWILIO_ACCOUNT_SID` / `SMS_TWILIO_AUTH_TOKEN`.
pub fn twilio_accounts(
    env: &Env<'_>,
) -> Result<std::collections::HashMap<String, String>, ConfigError> {
    let mut accounts = std::collections::HashMap::new();
    for pair in env
        .string_or("SMS_TWILIO_ACCOUNTS", "")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (sid, token) = pair
            .split_once(':')
            .filter(|(s, t)| s.trim().starts_with("AC") && !t.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "SMS_TWILIO_ACCOUNTS",
                    "(hidden)",
                    "expected AC…:token pairs",
                )
            })?;
        accounts.insert(sid.trim().to_owned(), token.trim().to_owned());
    }
    if let (Some(sid), Some(token)) = (
        env.raw("SMS_TWILIO_ACCOUNT_SID"),
        env.raw("SMS_TWILIO_AUTH_TOKEN"),
    ) {
        accounts.insert(sid, token);
    }
    Ok(accounts)
}

/// Twilio's own media hosts, where inbound media are downloaded from by default.
pub const TWILIO_MEDIA_HOSTS: [&str; 2] = ["api.twilio.com", "media.twiliocdn.com"];

/// `SMS_TWILIO_MEDIA_HOSTS`: the carrier's own media hosts per account (`host|host` for every
/// account, or `AC…=host|host` entries, comma-separated; `host` or `host:port`). Inbound media
/// are downloaded only from them and the account's credentials go only to them. Default:
/// Twilio's ([`TWILIO_MEDIA_HOSTS`]).
pub fn twilio_media_hosts(
    env: &Env<'_>,
    accounts: &std::collections::HashMap<String, String>,
) -> Result<std::collections::HashMap<String, Vec<String>>, ConfigError> {
    let default: Vec<String> = TWILIO_MEDIA_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    let mut every = default;
    let mut per_account = std::collections::HashMap::new();
    let hosts = |list: &str| -> Result<Vec<String>, ConfigError> {
        let hosts: Vec<String> = list
            .split('|')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() || hosts.iter().any(|h| h.contains(['/', '@', ' '])) {
            return Err(ConfigError::new(
                "SMS_TWILIO_MEDIA_HOSTS",
                list,
                "expected host or host:port names separated by |",
            ));
        }
        Ok(hosts)
    };
    for entry in env
        .string_or("SMS_TWILIO_MEDIA_HOSTS", "")
        .split(',')
        .filter(|e| !e.trim().is_empty())
    {
        match entry.split_once('=') {
            Some((sid, list)) => {
                per_account.insert(sid.trim().to_owned(), hosts(list)?);
            }
            None => every = hosts(entry)?,
        }
    }
    Ok(accounts
        .keys()
        .map(|sid| {
            let list = per_account
                .get(sid)
                .cloned()
                .unwrap_or_else(|| every.clone());
            (sid.clone(), list)
        })
        .collect())
}

/// The fetch policy for URLs from outside, with at most `max_bytes` per body:
/// `SMS_FETCH_ALLOW_HTTP` (plain http too) and `SMS_FETCH_ALLOW_PRIVATE` (`host:port` entries
/// exempt from the address rules: the simulator's and the tests' loopback servers), both
/// allowed in development mode only.
pub fn fetch_policy(
    env: &Env<'_>,
    development: bool,
    max_bytes: u64,
) -> Result<crate::fetch::FetchPolicy, ConfigError> {
    let allow_http = env.bool_or(
        "SMS_FETCH_ALLOW_HTTP",
        env.bool_or("SMS_MEDIA_ALLOW_HTTP", false)?,
    )?;
    let allow_private: Vec<String> =
        crate::fetch::parse_hosts(&env.string_or("SMS_FETCH_ALLOW_PRIVATE", ""))
            .into_iter()
            .collect();
    if let Some((entry, why)) = allow_private
        .iter()
        .find_map(|e| crate::fetch::exemption_error(e).map(|why| (e, why)))
    {
        return Err(ConfigError::new(
            "SMS_FETCH_ALLOW_PRIVATE",
            entry.clone(),
            why,
        ));
    }
    if !development && (allow_http || !allow_private.is_empty()) {
        return Err(ConfigError::new(
            if allow_http {
                "SMS_FETCH_ALLOW_HTTP"
            } else {
                "SMS_FETCH_ALLOW_PRIVATE"
            },
            "(set)",
            "plain http and private addresses are fetched only in development (SMS_DEV_MODE=true)",
        ));
    }
    Ok(crate::fetch::FetchPolicy {
        allow_http,
        allow_private,
        ..crate::fetch::FetchPolicy::strict(max_bytes)
    })
}

/// What every service needs: the bus, the database, telemetry.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `SMS_NATS_URL`: the NATS servers, comma-separated (a cluster's nodes: a service starts
    /// while any one of them answers, and reconnects to any).
    pub nats_url: String,
    /// `SMS_NAMESPACE`: the subject namespace (letters, digits, `-`, `_`).
    pub namespace: String,
    /// `SMS_DATABASE_URL`: the PostgreSQL database (created if missing).
    pub database_url: String,
    /// `SMS_DB_MAX_CONNECTIONS`: pool size per service.
    pub db_max_connections: u32,
    /// `SMS_ACK_WAIT_MS`: how long before an unacknowledged event is redelivered.
    pub ack_wait: Duration,
    /// `SMS_MAX_DELIVER`: deliveries before an event is dead-lettered.
    pub max_deliver: i64,
    /// `SMS_STREAM_REPLICAS`: copies JetStream keeps of each stream it creates (1 to 5; 3 on
    /// a 3-node cluster).
    pub stream_replicas: usize,
    /// `SMS_DEV_MODE`: development (a laptop, the tests). Only then may the API run without
    /// tokens, signing keys be generated per run, and plain-http or loopback URLs be fetched
    /// (those need their own switches too). Off unless set explicitly.
    pub development: bool,
    /// `SMS_OUTBOX_POLL_MS`: how often the outbox relay looks for events nobody woke it for
    /// (left by a process that died, or whose publish failed); default 500 ms.
    pub outbox_poll: Duration,
    /// Who the service is to NATS: `SMS_NATS_USER` + `SMS_NATS_PASSWORD`, `SMS_NATS_TOKEN` or
    /// `SMS_NATS_CREDS` (one of them), none by default.
    pub nats_auth: sms_bus::NatsAuth,
    /// TLS to NATS: `SMS_NATS_TLS`, `SMS_NATS_CA`, `SMS_NATS_CERT` + `SMS_NATS_KEY`.
    pub nats_tls: sms_bus::NatsTls,
}

/// A file a variable names, checked to be there.
fn existing_file(env: &Env<'_>, var: &str) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(value) = env.raw(var) else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(value.trim());
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err(ConfigError::new(var, value, "no such file"))
    }
}

/// The NATS credentials: at most one kind, each complete.
fn nats_auth(env: &Env<'_>) -> Result<sms_bus::NatsAuth, ConfigError> {
    let user = env.raw("SMS_NATS_USER");
    let password = env.raw("SMS_NATS_PASSWORD");
    let token = env.raw("SMS_NATS_TOKEN");
    let creds = existing_file(env, "SMS_NATS_CREDS")?;
    let kinds = usize::from(user.is_some() || password.is_some())
        + usize::from(token.is_some())
        + usize::from(creds.is_some());
    if kinds > 1 {
        let var = if token.is_some() {
            "SMS_NATS_TOKEN"
        } else {
            "SMS_NATS_CREDS"
        };
        return Err(ConfigError::new(
            var,
            "(set)",
            "give one kind of NATS credentials: SMS_NATS_USER and SMS_NATS_PASSWORD, \
             SMS_NATS_TOKEN, or SMS_NATS_CREDS",
        ));
    }
    Ok(match (user, password, token, creds) {
        (Some(user), Some(password), _, _) => sms_bus::NatsAuth::UserPassword {
            user: user.trim().to_owned(),
            password,
        },
        (Some(_), None, _, _) => {
            return Err(ConfigError::new(
                "SMS_NATS_PASSWORD",
                "(unset)",
                "SMS_NATS_USER needs SMS_NATS_PASSWORD",
            ));
        }
        (None, Some(_), _, _) => {
            return Err(ConfigError::new(
                "SMS_NATS_USER",
                "(unset)",
                "SMS_NATS_PASSWORD needs SMS_NATS_USER",
            ));
        }
        (None, None, Some(token), _) => sms_bus::NatsAuth::Token(token),
        (None, None, None, Some(path)) => sms_bus::NatsAuth::CredsFile(path),
        (None, None, None, None) => sms_bus::NatsAuth::None,
    })
}

/// TLS to NATS.
fn nats_tls(env: &Env<'_>) -> Result<sms_bus::NatsTls, ConfigError> {
    let ca = existing_file(env, "SMS_NATS_CA")?;
    let cert = existing_file(env, "SMS_NATS_CERT")?;
    let key = existing_file(env, "SMS_NATS_KEY")?;
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "SMS_NATS_KEY",
                "(unset)",
                "SMS_NATS_CERT needs the key in SMS_NATS_KEY",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "SMS_NATS_CERT",
                "(unset)",
                "SMS_NATS_KEY needs the certificate in SMS_NATS_CERT",
            ));
        }
    };
    Ok(sms_bus::NatsTls {
        // A CA or a client certificate means TLS is meant.
        required: env.bool_or("SMS_NATS_TLS", ca.is_some() || client.is_some())?,
        ca,
        client,
    })
}

impl CommonConfig {
    /// Reads the common variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let namespace = env.string_or("SMS_NAMESPACE", "sms");
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "SMS_NAMESPACE",
                namespace,
                "use only letters, digits, '-' and '_'",
            ));
        }
        let database_url =
            env.string_or("SMS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sms");
        if !database_url.starts_with("postgres://") && !database_url.starts_with("postgresql://") {
            return Err(ConfigError::new(
                "SMS_DATABASE_URL",
                database_url,
                "expected a postgres:// URL",
            ));
        }
        let max_deliver = env.parse_or("SMS_MAX_DELIVER", 5i64)?;
        if max_deliver < 1 {
            return Err(ConfigError::new(
                "SMS_MAX_DELIVER",
                max_deliver.to_string(),
                "must be at least 1",
            ));
        }
        let stream_replicas = env.parse_or("SMS_STREAM_REPLICAS", 1usize)?;
        if !(1..=5).contains(&stream_replicas) {
            return Err(ConfigError::new(
                "SMS_STREAM_REPLICAS",
                stream_replicas.to_string(),
                "JetStream keeps 1 to 5 copies of a stream",
            ));
        }
        let nats_url = env.string_or("SMS_NATS_URL", "nats://127.0.0.1:4222");
        if let Err(why) = sms_bus::parse_servers(&nats_url) {
            return Err(ConfigError::new("SMS_NATS_URL", nats_url, why));
        }
        Ok(CommonConfig {
            nats_url,
            namespace,
            database_url,
            db_max_connections: env.parse_or("SMS_DB_MAX_CONNECTIONS", 16u32)?,
            ack_wait: env.millis_or("SMS_ACK_WAIT_MS", Duration::from_secs(30))?,
            max_deliver,
            stream_replicas,
            development: env.bool_or("SMS_DEV_MODE", false)?,
            outbox_poll: env.millis_or("SMS_OUTBOX_POLL_MS", Duration::from_millis(500))?,
            nats_auth: nats_auth(env)?,
            nats_tls: nats_tls(env)?,
        })
    }
}

/// `var`, a signing key: at least 16 characters. Outside development it must be set; in
/// development a random one is made for this run (said in the log), which is fine on one
/// process but not across replicas, which must share it.
pub fn signing_key(env: &Env<'_>, var: &str, development: bool) -> Result<Vec<u8>, ConfigError> {
    match env.raw(var) {
        Some(s) if s.trim().len() >= 16 => Ok(s.trim().as_bytes().to_vec()),
        Some(_) => Err(ConfigError::new(
            var,
            "(hidden)",
            "use at least 16 characters",
        )),
        None if development => {
            // Two random (v4) UUIDs: 244 bits from the operating system's generator.
            let key = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            tracing::warn!(
                variable = var,
                "development mode: no signing key set, using a random one for this run (set {var} \
                 to keep URLs valid across restarts and replicas)"
            );
            Ok(key.into_bytes())
        }
        None => Err(ConfigError::new(
            var,
            "",
            "a signing key is required (at least 16 characters, the same on every replica); \
             SMS_DEV_MODE=true generates one per run for development",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = CommonConfig::from_env(&Env::from_pairs(&[])).unwrap();
        assert_eq!(c.namespace, "sms");
        assert_eq!(c.ack_wait, Duration::from_secs(30));
        assert_eq!(c.stream_replicas, 1);
        let c = CommonConfig::from_env(&Env::from_pairs(&[
            ("SMS_NAMESPACE", "t1"),
            ("SMS_ACK_WAIT_MS", "1500"),
            ("SMS_STREAM_REPLICAS", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.ack_wait, c.stream_replicas),
            ("t1", Duration::from_millis(1500), 3)
        );
    }

    #[test]
    fn defaults_layer_under_set_values() {
        let pairs = [("SMS_NAMESPACE", "mine")];
        let env = Env::from_pairs(&pairs).with_defaults(vec![
            ("SMS_NAMESPACE".into(), "theirs".into()),
            ("SMS_NATS_URL".into(), "nats://10.0.0.1:4222".into()),
        ]);
        let c = CommonConfig::from_env(&env).unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.nats_url.as_str()),
            ("mine", "nats://10.0.0.1:4222")
        );
    }

    #[test]
    fn a_cluster_is_a_list_of_servers() {
        let list = "nats://10.0.0.1:4222, nats://10.0.0.2:4222,nats://10.0.0.3:4222";
        let c = CommonConfig::from_env(&Env::from_pairs(&[("SMS_NATS_URL", list)])).unwrap();
        assert_eq!(sms_bus::parse_servers(&c.nats_url).unwrap().len(), 3);
        for bad in [
            "nats://a:4222,nats://b:notaport",
            ",",
            "nats://a:4222,ht tp://x",
        ] {
            let e = CommonConfig::from_env(&Env::from_pairs(&[("SMS_NATS_URL", bad)])).unwrap_err();
            assert_eq!(e.var, "SMS_NATS_URL", "{bad}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let e =
            CommonConfig::from_env(&Env::from_pairs(&[("SMS_ACK_WAIT_MS", "soon")])).unwrap_err();
        assert_eq!(e.var, "SMS_ACK_WAIT_MS");
        assert!(
            e.to_string()
                .starts_with("SMS_ACK_WAIT_MS=\"soon\" is invalid")
        );
        let e = CommonConfig::from_env(&Env::from_pairs(&[("SMS_NAMESPACE", "a.b")])).unwrap_err();
        assert_eq!(e.var, "SMS_NAMESPACE");
        let e = CommonConfig::from_env(&Env::from_pairs(&[("SMS_DATABASE_URL", "mysql://x")]))
            .unwrap_err();
        assert_eq!(e.var, "SMS_DATABASE_URL");
        for replicas in ["0", "6", "three"] {
            let e = CommonConfig::from_env(&Env::from_pairs(&[("SMS_STREAM_REPLICAS", replicas)]))
                .unwrap_err();
            assert_eq!(e.var, "SMS_STREAM_REPLICAS");
        }
    }

    #[test]
    fn nats_credentials_are_one_kind_and_complete() {
        let read = |pairs: &[(&str, &str)]| CommonConfig::from_env(&Env::from_pairs(pairs));
        let c = read(&[("SMS_NATS_USER", "composer"), ("SMS_NATS_PASSWORD", "pw")]).unwrap();
        assert_eq!(
            c.nats_auth,
            sms_bus::NatsAuth::UserPassword {
                user: "composer".into(),
                password: "pw".into()
            }
        );
        // Never the secret in a debug print.
        assert!(!format!("{:?}", c.nats_auth).contains("pw"));
        assert!(!c.nats_tls.required);
        for (pairs, var) in [
            (&[("SMS_NATS_USER", "composer")][..], "SMS_NATS_PASSWORD"),
            (&[("SMS_NATS_PASSWORD", "pw")][..], "SMS_NATS_USER"),
            (
                &[
                    ("SMS_NATS_USER", "a"),
                    ("SMS_NATS_PASSWORD", "b"),
                    ("SMS_NATS_TOKEN", "t"),
                ][..],
                "SMS_NATS_TOKEN",
            ),
            (
                &[("SMS_NATS_CREDS", "/no/such/file.creds")][..],
                "SMS_NATS_CREDS",
            ),
            (&[("SMS_NATS_CA", "/no/such/ca.pem")][..], "SMS_NATS_CA"),
            (&[("SMS_NATS_TLS", "maybe")][..], "SMS_NATS_TLS"),
        ] {
            assert_eq!(read(pairs).unwrap_err().var, var, "{pairs:?}");
        }
        let ca = std::env::temp_dir().join(format!("sms-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "not checked here").unwrap();
        let c = read(&[("SMS_NATS_CA", ca.to_str().unwrap())]).unwrap();
        assert!(c.nats_tls.required, "a CA means TLS");
        std::fs::remove_file(ca).unwrap();
    }
}
