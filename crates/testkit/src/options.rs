//! How a test's stack is set up.

use std::collections::HashMap;
use std::time::Duration;

use sms_carrier_sim::SimConfig;

use crate::Unanswered;
use crate::setup::{ACCOUNT_SID, AUTH_TOKEN};

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
