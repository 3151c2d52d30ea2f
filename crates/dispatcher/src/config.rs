//! The dispatcher's settings, and the carriers it sends through by connection name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sms_runtime::{CommonConfig, ConfigError, Env};

use crate::carrier::Carrier;

use crate::smpp;

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
    pub(crate) default: Arc<dyn Carrier>,
    pub(crate) named: HashMap<String, Arc<dyn Carrier>>,
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
    pub(crate) fn each(&self) -> Vec<Arc<dyn Carrier>> {
        let mut all: Vec<Arc<dyn Carrier>> = Vec::new();
        for c in std::iter::once(&self.default).chain(self.named.values()) {
            if !all.iter().any(|a| Arc::ptr_eq(a, c)) {
                all.push(c.clone());
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
