//! The SMPP 3.4 carrier: a message goes out as the `submit_sm`s of exactly the parts
//! `sms-core` counts ([`sms_smpp::parts`]), on the binds of one connection ([`session`]);
//! statuses come back as receipts on those binds, and contacts' messages too ([`received`]).

pub(crate) mod received;
pub mod session;
pub(crate) mod slots;
pub(crate) mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusmpp::pdus::QuerySm;
use rusmpp::types::COctetString;
use rusmpp::{CommandStatus, Pdu};
use sms_core::Reason;
use sms_runtime::{ConfigError, Env};
use sms_smpp::SmscId;
use sms_smpp::errors::{ErrorMap, SubmitRefusal, submit_status};
use sms_smpp::parts::{Concatenation, Gsm7Packing, PartSettings};
use sms_smpp::pdu::{Address, Submit};
use sms_smpp::receipt::MessageState;

use crate::carrier::{
    Carrier, CarrierContext, CarrierError, CarrierMessage, CarrierRecord, LookupError, Receipt,
    Resolution, StatusSource, Unanswered,
};
pub use session::{BindMode, Session, SessionConfig, SessionTls};

/// An SMPP connection's settings, from `SMS_SMPP_*`.
#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// The binds.
    pub session: SessionConfig,
    /// How parts are marked and GSM-7 written.
    pub parts: PartSettings,
    /// What becomes of a `submit_sm` whose answer never came.
    pub unanswered: Unanswered,
}

impl SmppConfig {
    /// Reads `SMS_SMPP_*`: `ADDR`, `SYSTEM_ID` and `PASSWORD` are required; `NAME` (default
    /// `smpp`), `SYSTEM_TYPE`, `BIND` (`transceiver` or `pair`), `BINDS` (1), `WINDOW` (10),
    /// `ENQUIRE_LINK_MS` (30 s), `RESPONSE_TIMEOUT_MS` (10 s), `CONCATENATION` (`udh` or
    /// `sar`), `GSM7` (`unpacked` or `packed`), `UNANSWERED` (`fail` or `resend`), `ERRORS`
    /// (`code=reason,…`), `TLS` (`true`: the platform's roots, or only `TLS_CA`'s; the
    /// certificate checked against `TLS_NAME`, by default the address's host).
    pub fn from_env(env: &Env<'_>) -> Result<SmppConfig, ConfigError> {
        let required = |var: &str, what: &str| {
            env.raw(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError::new(var, "", format!("{what} is required with SMS_CARRIER=smpp"))
            })
        };
        let addr = required("SMS_SMPP_ADDR", "the SMSC's host:port")?;
        if !addr.contains(':') {
            return Err(ConfigError::new(
                "SMS_SMPP_ADDR",
                addr,
                "expected host:port",
            ));
        }
        let system_id = required("SMS_SMPP_SYSTEM_ID", "the system id")?;
        if system_id.len() > 15 {
            return Err(ConfigError::new(
                "SMS_SMPP_SYSTEM_ID",
                system_id,
                "at most 15 characters",
            ));
        }
        let password = env.raw("SMS_SMPP_PASSWORD").ok_or_else(|| {
            ConfigError::new(
                "SMS_SMPP_PASSWORD",
                "",
                "the password is required with SMS_CARRIER=smpp",
            )
        })?;
        if password.len() > 8 {
            return Err(ConfigError::new(
                "SMS_SMPP_PASSWORD",
                "(hidden)",
                "at most 8 characters (SMPP 3.4)",
            ));
        }
        let choice = |var: &str, default: &str, allowed: &[&str]| -> Result<String, ConfigError> {
            let v = env.string_or(var, default);
            if allowed.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(ConfigError::new(
                    var,
                    v,
                    format!("expected one of {}", allowed.join(", ")),
                ))
            }
        };
        let mode = match choice("SMS_SMPP_BIND", "transceiver", &["transceiver", "pair"])?.as_str()
        {
            "pair" => BindMode::Pair,
            _ => BindMode::Transceiver,
        };
        let binds: usize = env.parse_or("SMS_SMPP_BINDS", 1)?;
        if !(1..=16).contains(&binds) {
            return Err(ConfigError::new(
                "SMS_SMPP_BINDS",
                binds.to_string(),
                "expected 1 to 16",
            ));
        }
        let window: usize = env.parse_or("SMS_SMPP_WINDOW", 10)?;
        if !(1..=1000).contains(&window) {
            return Err(ConfigError::new(
                "SMS_SMPP_WINDOW",
                window.to_string(),
                "expected 1 to 1000",
            ));
        }
        let enquire_link = env.millis_or("SMS_SMPP_ENQUIRE_LINK_MS", Duration::from_secs(30))?;
        let response_timeout =
            env.millis_or("SMS_SMPP_RESPONSE_TIMEOUT_MS", Duration::from_secs(10))?;
        if response_timeout < Duration::from_millis(100)
            || enquire_link < Duration::from_millis(100)
        {
            return Err(ConfigError::new(
                "SMS_SMPP_RESPONSE_TIMEOUT_MS",
                response_timeout.as_millis().to_string(),
                "timeouts must be at least 100 ms",
            ));
        }
        let concatenation = match choice("SMS_SMPP_CONCATENATION", "udh", &["udh", "sar"])?.as_str()
        {
            "sar" => Concatenation::Sar,
            _ => Concatenation::Udh,
        };
        let gsm7 = match choice("SMS_SMPP_GSM7", "unpacked", &["unpacked", "packed"])?.as_str() {
            "packed" => Gsm7Packing::Packed,
            _ => Gsm7Packing::Unpacked,
        };
        let unanswered = match choice("SMS_SMPP_UNANSWERED", "fail", &["fail", "resend"])?.as_str()
        {
            "resend" => Unanswered::Resend,
            _ => Unanswered::Fail,
        };
        let tls = if env.bool_or("SMS_SMPP_TLS", false)? {
            let ca = env.raw("SMS_SMPP_TLS_CA").filter(|c| !c.is_empty());
            let config = sms_smpp::tls::client_config(ca.as_deref().map(std::path::Path::new))
                .map_err(|e| {
                    ConfigError::new("SMS_SMPP_TLS_CA", ca.clone().unwrap_or_default(), e)
                })?;
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            let name = env.string_or("SMS_SMPP_TLS_NAME", host.trim_matches(['[', ']']));
            let server = sms_smpp::tls::server_name(&name)
                .map_err(|e| ConfigError::new("SMS_SMPP_TLS_NAME", name.clone(), e))?;
            Some(session::SessionTls {
                config,
                name: server,
            })
        } else {
            None
        };
        let errors_setting = env.string_or("SMS_SMPP_ERRORS", "");
        let errors = ErrorMap::parse(&errors_setting)
            .map_err(|e| ConfigError::new("SMS_SMPP_ERRORS", errors_setting.clone(), e))?;
        Ok(SmppConfig {
            session: SessionConfig {
                name: env.string_or("SMS_SMPP_NAME", "smpp"),
                addr,
                system_id,
                password,
                system_type: env.string_or("SMS_SMPP_SYSTEM_TYPE", ""),
                mode,
                binds,
                window,
                enquire_link,
                response_timeout,
                gsm7,
                errors,
                tls,
            },
            parts: PartSettings {
                concatenation,
                gsm7,
            },
            unanswered,
        })
    }
}

/// An SMPP connection as a [`Carrier`].
pub struct Smpp {
    session: Arc<Session>,
    parts: PartSettings,
    unanswered: Unanswered,
    reference: AtomicU16,
    /// Calls at once: what the binds' windows hold.
    admission: tokio::sync::Semaphore,
    /// Per sender, the turn of its messages.
    senders: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The longest one message's `submit_sm`s take, in all.
    timeout: Duration,
}

impl Smpp {
    /// The carrier for `config`; `timeout` bounds one message's calls.
    pub fn new(config: SmppConfig, timeout: Duration) -> Smpp {
        let admitted = config.session.window * config.session.binds.max(1);
        Smpp {
            admission: tokio::sync::Semaphore::new(admitted),
            session: Arc::new(Session::new(config.session)),
            parts: config.parts,
            unanswered: config.unanswered,
            reference: AtomicU16::new(fastrand::u16(..)),
            senders: std::sync::Mutex::default(),
            timeout,
        }
    }

    /// Submits part `number` of `total` until the SMSC takes it (its id), within the call's
    /// time from `started`. A refusal of the first part is the message's (nothing of it was
    /// taken); a later part that cannot go now is tried again within the call, since the parts
    /// before it are with the SMSC and failing (or resending) the message would leave it cut
    /// or doubled.
    async fn submit_part(
        &self,
        pdu: &rusmpp::pdus::SubmitSm,
        number: usize,
        total: usize,
        started: std::time::Instant,
    ) -> Result<SmscId, CarrierError> {
        let first = number == 1;
        let again = |detail: String| -> Result<(), CarrierError> {
            if started.elapsed() + Duration::from_millis(200) < self.timeout {
                Ok(())
            } else {
                Err(CarrierError::Ambiguous(format!(
                    "part {number} of {total} could not be sent ({detail}); the parts before it were taken"
                )))
            }
        };
        let mut tries: u32 = 0;
        loop {
            tries += 1;
            let pause = Duration::from_millis(100 * u64::from(tries.min(20)));
            let left = self.timeout.saturating_sub(started.elapsed());
            let outcome = self
                .session
                .call(
                    Pdu::SubmitSm(pdu.clone()),
                    left.max(Duration::from_millis(10)),
                )
                .await;
            let resp = match outcome {
                Ok(resp) => resp,
                Err(session::CallError::NotSent(detail)) if first => {
                    return Err(CarrierError::Unreachable {
                        detail,
                        retry_after: None,
                    });
                }
                Err(session::CallError::NotSent(detail)) => {
                    again(detail)?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(session::CallError::Unanswered(detail)) => {
                    return Err(CarrierError::Ambiguous(format!(
                        "part {number} of {total}: {detail}"
                    )));
                }
            };
            if resp.status() == CommandStatus::EsmeRok {
                let id = match resp.pdu() {
                    Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
                    _ => String::new(),
                };
                return SmscId::parse(&id).map_err(|e| {
                    CarrierError::Ambiguous(format!(
                        "the SMSC took part {number} of {total} with an unusable id: {e}"
                    ))
                });
            }
            let code = u32::from(resp.status());
            let detail = format!("submit_sm refused: {:?} ({code:#x})", resp.status());
            match submit_status(code) {
                // Throttled: the whole connection slows down, and this part is tried again
                // within the call (the sender's next messages wait behind it, so none overtakes
                // it); back to the bus only when the SMSC keeps refusing for the whole call.
                SubmitRefusal::Throttled(reason) => {
                    self.session.pause(pause);
                    if first {
                        // Nothing of it was taken: back to the bus when the call's time would
                        // run out waiting.
                        let margin = pause + Duration::from_millis(200);
                        if started.elapsed() + margin >= self.timeout {
                            return Err(CarrierError::Retryable {
                                reason,
                                code: Some(code),
                                detail,
                                retry_after: None,
                            });
                        }
                    } else {
                        again(detail)?;
                    }
                }
                SubmitRefusal::Retryable(reason) if first => {
                    return Err(CarrierError::Retryable {
                        reason,
                        code: Some(code),
                        detail,
                        retry_after: None,
                    });
                }
                SubmitRefusal::Permanent(reason) if first => {
                    return Err(CarrierError::Permanent {
                        reason,
                        code: Some(code),
                        detail,
                    });
                }
                SubmitRefusal::Permanent(_) => {
                    return Err(CarrierError::Ambiguous(format!(
                        "part {number} of {total}: {detail}; the parts before it were taken"
                    )));
                }
                SubmitRefusal::Retryable(_) => {
                    again(detail)?;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The lock ordering `from`'s messages.
    fn sender(&self, from: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if senders.len() > 10_000 {
            senders.retain(|_, l| Arc::strong_count(l) > 1);
        }
        senders.entry(from.to_owned()).or_default().clone()
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.session.config().name
    }
}

fn permanent(reason: Reason, detail: String) -> CarrierError {
    CarrierError::Permanent {
        reason,
        code: None,
        detail,
    }
}

#[async_trait]
impl Carrier for Smpp {
    fn account(&self) -> &str {
        self.name()
    }

    fn resolution(&self) -> Resolution {
        Resolution::ById {
            unanswered: self.unanswered,
        }
    }

    fn statuses(&self) -> StatusSource {
        StatusSource::Receipts
    }

    async fn send(&self, m: &CarrierMessage) -> Result<Receipt, CarrierError> {
        let started = std::time::Instant::now();
        let from =
            Address::of(&m.from).map_err(|e| permanent(Reason::InvalidSender, e.to_string()))?;
        let to =
            Address::of(&m.to).map_err(|e| permanent(Reason::InvalidRecipient, e.to_string()))?;
        if !m.media_urls.is_empty() {
            return Err(permanent(
                Reason::UnknownCarrierError,
                "SMPP carries text only: an MMS cannot go through this connection".into(),
            ));
        }
        // One message of a sender at a time, in the order they came: a part tried again (the
        // SMSC throttling) keeps its place.
        let turn = self.sender(&m.from);
        let _turn = turn.lock().await;
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let parts = sms_smpp::parts::parts(&m.body, reference, self.parts)
            .map_err(|e| permanent(Reason::UnknownCarrierError, e.to_string()))?;
        let total = parts.len();
        let mut ids: Vec<SmscId> = Vec::with_capacity(total);
        for (i, part) in parts.iter().enumerate() {
            let pdu = sms_smpp::pdu::submit_sm(Submit {
                from: &from,
                to: &to,
                part,
                validity_seconds: Some(m.validity_seconds),
            })
            .map_err(|e| permanent(Reason::UnknownCarrierError, e.to_string()))?;
            ids.push(self.submit_part(&pdu, i + 1, total, started).await?);
        }
        Ok(Receipt {
            carrier_sid: ids.first().map(ToString::to_string).unwrap_or_default(),
            parts: ids,
        })
    }

    async fn find(
        &self,
        _from: &str,
        _to: &str,
        _since: DateTime<Utc>,
    ) -> Result<Vec<CarrierRecord>, LookupError> {
        Err(LookupError::Malformed(
            "an SMSC cannot list messages by sender and recipient".into(),
        ))
    }

    async fn fetch(&self, sid: &str) -> Result<Option<CarrierRecord>, LookupError> {
        let id = SmscId::parse(sid).map_err(|e| LookupError::Malformed(e.to_string()))?;
        let message_id = COctetString::from_vec(format!("{id}\0").into_bytes())
            .map_err(|e| LookupError::Malformed(format!("message id: {e}")))?;
        let pdu = QuerySm::builder().message_id(message_id).build();
        let resp = self
            .session
            .call(Pdu::QuerySm(pdu), self.timeout)
            .await
            .map_err(|e| LookupError::Unreachable(format!("query_sm: {e:?}")))?;
        // ESME_RQUERYFAIL, ESME_RINVMSGID: the SMSC has no such message.
        if matches!(u32::from(resp.status()), 0x67 | 0x0C) {
            return Ok(None);
        }
        if resp.status() != CommandStatus::EsmeRok {
            return Err(LookupError::Unreachable(format!(
                "query_sm refused: {:?}",
                resp.status()
            )));
        }
        let Some(Pdu::QuerySmResp(q)) = resp.pdu() else {
            return Err(LookupError::Malformed(
                "query_sm answered without a body".into(),
            ));
        };
        let state = MessageState::from_code(u8::from(q.message_state));
        let error_code = u32::from(q.error_code);
        let reason =
            (error_code != 0).then(|| self.session.config().errors.reason(&error_code.to_string()));
        let ours = state.and_then(|s| s.ours(reason));
        Ok(Some(CarrierRecord {
            sid: id.to_string(),
            from: String::new(),
            to: String::new(),
            body: String::new(),
            status: ours.map(|(s, _)| s),
            error_code: (error_code != 0).then_some(error_code),
            reason: ours.and_then(|(_, r)| r),
            created_at: Utc::now(),
        }))
    }

    fn admission(&self) -> Option<&tokio::sync::Semaphore> {
        Some(&self.admission)
    }

    fn start(&self, context: CarrierContext) -> Option<tokio::task::JoinHandle<()>> {
        Some(tokio::spawn(self.session.clone().run(context)))
    }
}
