//! The receiver's settings.

use std::collections::HashMap;
use std::time::Duration;

use sms_runtime::{CommonConfig, ConfigError, Env};
use sms_twilio::webhook::{self};

/// Largest webhook body accepted. Twilio's are a few KB; 64 KiB leaves room for 10 media URLs.
pub const MAX_BODY_BYTES: usize = webhook::MAX_FORM_BYTES;

/// Inbound receiver settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bus (the database settings are unused: this service keeps nothing).
    pub common: CommonConfig,
    /// `SMS_PUBLIC_URL`: the base URL carriers call, exactly as they sign it.
    pub public_url: String,
    /// Twilio accounts that may call us: `SMS_TWILIO_ACCOUNT_SID` / `SMS_TWILIO_AUTH_TOKEN`.
    pub twilio_accounts: HashMap<String, String>,
    /// `SMS_WEBHOOK_PATIENCE_MS`: how long a webhook keeps trying to store its event while the
    /// bus is unavailable (a JetStream leader election, a reconnect) before it answers 503.
    /// Within the carrier's read timeout (Twilio waits 15 s at most); default 8 s.
    pub patience: Duration,
}

impl Config {
    /// Reads the receiver's variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let public_url = env.string_or("SMS_PUBLIC_URL", "http://127.0.0.1:8080");
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(ConfigError::new(
                "SMS_PUBLIC_URL",
                public_url,
                "expected an http(s) URL",
            ));
        }
        let twilio_accounts = sms_runtime::config::twilio_accounts(env)?;
        if twilio_accounts.is_empty() {
            return Err(ConfigError::new(
                "SMS_TWILIO_ACCOUNTS",
                "",
                "no Twilio account: set SMS_TWILIO_ACCOUNTS or SMS_TWILIO_ACCOUNT_SID and SMS_TWILIO_AUTH_TOKEN",
            ));
        }
        let patience = env.millis_or("SMS_WEBHOOK_PATIENCE_MS", Duration::from_secs(8))?;
        if patience > Duration::from_secs(14) {
            return Err(ConfigError::new(
                "SMS_WEBHOOK_PATIENCE_MS",
                patience.as_millis().to_string(),
                "carriers stop waiting after 15 s (Twilio's read timeout): use at most 14000",
            ));
        }
        Ok(Config {
            common: CommonConfig::from_env(env)?,
            public_url,
            twilio_accounts,
            patience,
        })
    }
}
