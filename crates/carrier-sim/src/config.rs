//! How the simulator behaves and is configured (`SMS_SIM_*`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::smsc_state::SmppBehaviour;

/// How the simulated carrier behaves. Number sets hold E.164 recipients.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Recipients that are landlines: `failed` with 30006.
    pub landlines: HashSet<String>,
    /// Recipients whose messages are filtered as spam: `undelivered` with 30007.
    pub spam: HashSet<String>,
    /// Recipients that hit an unexplained carrier error: `failed` with 30008.
    pub unknown_error: HashSet<String>,
    /// Recipients whose handset is off: `undelivered` with 30003.
    pub unreachable: HashSet<String>,
    /// Recipients who opted out at the carrier: the API call itself fails with 21610.
    pub carrier_opted_out: HashSet<String>,
    /// Recipients whose next N API calls fail with HTTP 503 (then succeed).
    pub transient_failures: HashMap<String, u32>,
    /// Recipients whose next N API calls fail with HTTP 500 (then succeed).
    pub server_errors: HashMap<String, u32>,
    /// Recipients whose next N API calls fail with HTTP 429 (then succeed).
    pub throttled: HashMap<String, u32>,
    /// Share of API calls answered with HTTP 429, at random (0.0 to 1.0).
    pub rate_429: f64,
    /// Share of API calls answered with HTTP 500, at random (0.0 to 1.0).
    pub rate_5xx: f64,
    /// Delay before each API reply.
    pub api_latency: Duration,
    /// Delay between status callbacks.
    pub callback_delay: Duration,
    /// Whether status callbacks are sent at all (the message goes through its statuses
    /// either way, as the API's reads show).
    pub callbacks: bool,
    /// Recipients whose messages are taken (and go on to be delivered) while the API's reply
    /// is held back for [`Behaviour::hang`]: the caller times out without knowing.
    pub taken_unanswered: HashSet<String>,
    /// How long a held-back reply is held.
    pub hang: Duration,
    /// Whether the message reads (list, fetch) answer HTTP 503.
    pub lookups_unavailable: bool,
    /// Whether the message reads answer 200 with a body that is not Twilio's JSON.
    pub lookups_garbled: bool,
    /// A contact who answers: every message taken (or each whose body contains the pattern)
    /// gets this reply from its recipient, after a moment.
    pub auto_reply: Option<AutoReply>,
    /// Whether the phone-number API (search, rent, list, configure, release) answers 503.
    pub numbers_unavailable: bool,
    /// Whether a rent takes the number but holds its answer back for [`Behaviour::hang`]
    /// (at least a second): the caller times out not knowing it bought it.
    pub rent_unanswered: bool,
    /// The SMSC's own behaviours (its share of the ones above: throttled, taken unanswered,
    /// landlines, spam, unknown errors, unreachable, latency, callback delay as receipt delay).
    pub smpp: SmppBehaviour,
}

/// The scripted contact's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReply {
    /// What the contact texts back.
    pub text: String,
    /// Only to messages whose body contains this (case-insensitive); every message when `None`.
    pub when_contains: Option<String>,
    /// How long the contact takes.
    pub delay: Duration,
}

impl AutoReply {
    /// Whether it answers `body`.
    pub fn answers(&self, body: &str) -> bool {
        self.when_contains
            .as_ref()
            .is_none_or(|p| body.to_lowercase().contains(&p.to_lowercase()))
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accounts: SID → auth token.
    pub accounts: HashMap<String, String>,
    /// Initial behaviour (can be changed while running).
    pub behaviour: Behaviour,
    /// Where contacts' messages are delivered (the platform's incoming-message webhook), as a
    /// number's "A message comes in" URL is set at Twilio.
    pub incoming_url: Option<String>,
    /// SMPP accounts: system id → password (no SMPP binds are taken when empty).
    pub smpp_accounts: HashMap<String, String>,
    /// How the SMSC reads and writes GSM-7 (`SMS_SIM_SMPP_GSM7`: unpacked or packed).
    pub smpp_gsm7: sms_smpp::parts::Gsm7Packing,
}

impl SimConfig {
    /// One account, delivering everything, callbacks on.
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        SimConfig {
            accounts: HashMap::from([(account_sid.to_owned(), auth_token.to_owned())]),
            behaviour: Behaviour {
                callbacks: true,
                callback_delay: Duration::from_millis(5),
                ..Behaviour::default()
            },
            incoming_url: None,
            smpp_accounts: HashMap::from([(
                DEFAULT_SMPP_SYSTEM_ID.to_owned(),
                DEFAULT_SMPP_PASSWORD.to_owned(),
            )]),
            smpp_gsm7: sms_smpp::parts::Gsm7Packing::Unpacked,
        }
    }
}

/// The SMSC's default system id (development only).
pub const DEFAULT_SMPP_SYSTEM_ID: &str = "sim";

/// The SMSC's default password (development only).
pub const DEFAULT_SMPP_PASSWORD: &str = "simpass";

/// Reads `SMS_SIM_*` variables (see the binary's documentation).
pub fn config_from_env(env: &sms_runtime::Env<'_>) -> Result<SimConfig, sms_runtime::ConfigError> {
    let set = |var: &str| -> HashSet<String> {
        env.raw(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let rate = |var: &str| -> Result<f64, sms_runtime::ConfigError> {
        let r: f64 = env.parse_or(var, 0.0)?;
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(sms_runtime::ConfigError::new(
                var,
                r.to_string(),
                "expected a share between 0 and 1",
            ))
        }
    };
    let mut config = SimConfig::new(
        &env.string_or("SMS_SIM_ACCOUNT_SID", DEFAULT_ACCOUNT_SID),
        &env.string_or("SMS_SIM_AUTH_TOKEN", DEFAULT_AUTH_TOKEN),
    );
    let b = &mut config.behaviour;
    b.landlines = set("SMS_SIM_LANDLINES");
    b.spam = set("SMS_SIM_SPAM");
    b.unknown_error = set("SMS_SIM_UNKNOWN_ERROR");
    b.unreachable = set("SMS_SIM_UNREACHABLE");
    b.carrier_opted_out = set("SMS_SIM_OPTED_OUT");
    b.api_latency = env.millis_or("SMS_SIM_LATENCY_MS", Duration::ZERO)?;
    b.callback_delay = env.millis_or("SMS_SIM_CALLBACK_DELAY_MS", Duration::from_millis(5))?;
    b.rate_429 = rate("SMS_SIM_RATE_429")?;
    b.rate_5xx = rate("SMS_SIM_RATE_5XX")?;
    b.auto_reply = env.raw("SMS_SIM_AUTO_REPLY").map(|text| AutoReply {
        text,
        when_contains: env.raw("SMS_SIM_AUTO_REPLY_WHEN"),
        delay: Duration::from_millis(500),
    });
    config.incoming_url = env.raw("SMS_SIM_INCOMING_URL");
    config.smpp_accounts = HashMap::from([(
        env.string_or("SMS_SIM_SMPP_SYSTEM_ID", DEFAULT_SMPP_SYSTEM_ID),
        env.string_or("SMS_SIM_SMPP_PASSWORD", DEFAULT_SMPP_PASSWORD),
    )]);
    config.smpp_gsm7 = match env.string_or("SMS_SIM_SMPP_GSM7", "unpacked").as_str() {
        "unpacked" => sms_smpp::parts::Gsm7Packing::Unpacked,
        "packed" => sms_smpp::parts::Gsm7Packing::Packed,
        other => {
            return Err(sms_runtime::ConfigError::new(
                "SMS_SIM_SMPP_GSM7",
                other,
                "expected unpacked or packed",
            ));
        }
    };
    config.behaviour.smpp.all_numbers = env.raw("SMS_SIM_SMPP_MO").as_deref() == Some("all");
    Ok(config)
}

/// The simulator's default account SID (development only).
pub const DEFAULT_ACCOUNT_SID: &str = sms_twilio::SIMULATOR_ACCOUNT_SID;

/// The simulator's default auth token (development only).
pub const DEFAULT_AUTH_TOKEN: &str = sms_twilio::SIMULATOR_AUTH_TOKEN;

/// The first of an account map's keys, in order (the account the simulator speaks as).
pub(crate) fn first_key(accounts: &HashMap<String, String>) -> Option<String> {
    accounts.keys().min().cloned()
}
