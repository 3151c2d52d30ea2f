//! The binds of one SMPP connection: each bind connects, binds (transceiver, or a transmitter
//! and a receiver), keeps at most `window` requests unanswered, asks `enquire_link` when idle
//! and answers the SMSC's, hands every `deliver_sm` to the [`Deliveries`] and answers it only
//! with what they said (0 once stored), reconnects with jittered back-off, and unbinds when the
//! dispatcher stops. Requests are shared by the transmitting binds: whichever has room takes
//! the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use sms_runtime::backoff::Backoff;
use sms_smpp::codec::{Frame, Framing, generic_nack, is_response};
use sms_smpp::parts::Gsm7Packing;
use sms_smpp::tls::Stream;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::carrier::{CarrierContext, Deliveries, Slots};

/// How the binds are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// One transceiver per bind.
    Transceiver,
    /// A transmitter and a receiver per bind.
    Pair,
}

/// One connection's settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Its name (what numbers are routed to, and the account its statuses are signed by).
    pub name: String,
    /// `host:port`.
    pub addr: String,
    /// `system_id`.
    pub system_id: String,
    /// `password`.
    pub password: String,
    /// `system_type`.
    pub system_type: String,
    /// Transceiver or pair.
    pub mode: BindMode,
    /// Binds this replica opens.
    pub binds: usize,
    /// Requests a bind keeps unanswered at most.
    pub window: usize,
    /// Idle time before an `enquire_link`.
    pub enquire_link: Duration,
    /// How long an answer may take.
    pub response_timeout: Duration,
    /// How the SMSC writes GSM-7 in what it delivers.
    pub gsm7: Gsm7Packing,
    /// The SMSC's own error codes, for its receipts.
    pub errors: sms_smpp::errors::ErrorMap,
    /// TLS on the binds, when the SMSC speaks it.
    pub tls: Option<SessionTls>,
}

/// TLS settings of a connection.
#[derive(Debug, Clone)]
pub struct SessionTls {
    /// Whom it trusts.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the SMSC's certificate must carry.
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// It was never written: nothing reached the SMSC.
    NotSent(String),
    /// It was written and no answer came: the SMSC may have taken it.
    Unanswered(String),
}

const QUEUED: u8 = 0;
const WRITTEN: u8 = 1;
const ABANDONED: u8 = 2;

struct Request {
    pdu: Pdu,
    reply: oneshot::Sender<Result<Command, CallError>>,
    state: Arc<AtomicU8>,
}

/// The connection's binds, running until shutdown.
pub struct Session {
    config: SessionConfig,
    /// Until when nothing is sent (the SMSC throttled us).
    paused_until: std::sync::Mutex<Option<Instant>>,
    requests: mpsc::Sender<Request>,
    taken: Arc<Mutex<mpsc::Receiver<Request>>>,
}

impl Session {
    /// A session; nothing connects before [`Session::run`].
    pub fn new(config: SessionConfig) -> Session {
        let (requests, taken) = mpsc::channel(config.window.max(1) * config.binds.max(1) * 4);
        Session {
            config,
            paused_until: std::sync::Mutex::new(None),
            requests,
            taken: Arc::new(Mutex::new(taken)),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Nothing is sent on the connection for `pause` (the SMSC is throttling us).
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|current| current < until) {
            *p = Some(until);
        }
    }

    /// Sends `pdu` on a transmitting bind and waits for its answer, for at most `timeout` in
    /// all (waiting for a bind, or out a pause, included).
    pub async fn call(&self, pdu: Pdu, timeout: Duration) -> Result<Command, CallError> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused {
            let wait = until.saturating_duration_since(Instant::now());
            if wait >= timeout {
                return Err(CallError::NotSent(format!(
                    "the connection {} is paused (throttled) for {wait:?}",
                    self.config.name
                )));
            }
            tokio::time::sleep(wait).await;
        }
        let (reply, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let request = Request {
            pdu,
            reply,
            state: state.clone(),
        };
        let waited = tokio::time::timeout(timeout, async {
            self.requests
                .send(request)
                .await
                .map_err(|_| CallError::NotSent("the session is stopping".into()))?;
            answer
                .await
                .map_err(|_| CallError::Unanswered("the connection closed".into()))?
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => {
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    Err(CallError::NotSent(format!(
                        "no bind of {} could take it within {timeout:?}",
                        self.config.name
                    )))
                } else {
                    Err(CallError::Unanswered(format!(
                        "no answer from {} within {timeout:?}",
                        self.config.name
                    )))
                }
            }
        }
    }

    /// Runs the binds until shutdown, then unbinds them. With shared slots, this replica runs
    /// a loop per bind the connection allows and binds on those it leases (its share); without,
    /// it opens every bind configured.
    pub async fn run(self: Arc<Self>, context: CarrierContext) {
        let kinds: &[Kind] = match self.config.mode {
            BindMode::Transceiver => &[Kind::Transceiver],
            BindMode::Pair => &[Kind::Transmitter, Kind::Receiver],
        };
        let total = self.config.binds.max(1);
        let mut binds = Vec::new();
        for &kind in kinds {
            for index in 0..total {
                let (s, c) = (self.clone(), context.clone());
                binds.push(tokio::spawn(async move {
                    s.bind_loop(index, kind, total, c).await
                }));
            }
        }
        for b in binds {
            let _ = b.await;
        }
    }

    /// The slot's connection name: a transmitter and a receiver count apart.
    fn slot_name(&self, kind: Kind) -> String {
        match kind {
            Kind::Transceiver => self.config.name.clone(),
            Kind::Transmitter => format!("{}/tx", self.config.name),
            Kind::Receiver => format!("{}/rx", self.config.name),
        }
    }

    async fn bind_loop(
        self: Arc<Self>,
        index: usize,
        kind: Kind,
        total: usize,
        context: CarrierContext,
    ) {
        let CarrierContext {
            deliveries,
            slots,
            shutdown,
        } = context;
        let name = &self.config.name;
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut failures: u32 = 0;
        let bound = metrics::gauge!(sms_runtime::metrics::SMPP_BINDS, "connection" => name.clone());
        let slot_name = self.slot_name(kind);
        while !shutdown.is_cancelled() {
            // A slot first, when they are shared.
            let leased = match &slots {
                None => None,
                Some(s) => match s.take(&slot_name, total).await {
                    Ok(Some(slot)) => Some((s.clone(), slot)),
                    other => {
                        if let Err(e) = other {
                            tracing::debug!(connection = %name, error = %e, "bind slot lease failed");
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(s.lease() / 3) => {}
                        }
                        continue;
                    }
                },
            };
            let slot = leased
                .as_ref()
                .map_or(i32::try_from(index).unwrap_or(0), |(_, n)| *n);
            // Stopped at shutdown, or when the slot's lease is lost or given back.
            let stop = shutdown.child_token();
            let renewing = leased.clone().map(|(s, n)| {
                tokio::spawn(keep_slot(s, slot_name.clone(), n, total, stop.clone()))
            });
            let ended = match self.connect(kind).await {
                Ok(framed) => {
                    failures = 0;
                    tracing::info!(connection = %name, slot, ?kind, "SMPP bound");
                    bound.increment(1.0);
                    let ended = Bound {
                        session: &self,
                        kind,
                        deliveries: deliveries.clone(),
                    }
                    .run(framed, &stop)
                    .await;
                    bound.decrement(1.0);
                    // Stopped by the slot (given back or lost), not by the SMSC.
                    let given_back = stop.is_cancelled() && !shutdown.is_cancelled();
                    Ok((ended, given_back))
                }
                Err(e) => Err(e),
            };
            stop.cancel();
            if let Some(r) = renewing {
                let _ = r.await;
            }
            if let Some((s, n)) = &leased {
                s.free(&slot_name, *n).await;
            }
            match ended {
                Ok((Ok(()), _)) if shutdown.is_cancelled() => {
                    tracing::info!(connection = %name, slot, "SMPP unbound");
                    return;
                }
                Ok((_, true)) => continue,
                Ok((Ok(()), false)) => {
                    tracing::warn!(connection = %name, slot, "the SMSC ended the bind; binding again")
                }
                Ok((Err(e), false)) => {
                    tracing::warn!(connection = %name, slot, error = %e, "SMPP bind lost; binding again")
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Once per outage at WARN, then quietly while it lasts.
                    if failures == 1 {
                        tracing::warn!(connection = %name, slot, error = %e, "SMPP bind failed; retrying with back-off");
                    } else {
                        tracing::debug!(connection = %name, slot, failures, error = %e, "SMPP bind failed again");
                    }
                }
            }
            let delay = backoff.delay(failures);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Connects and binds.
    async fn connect(&self, kind: Kind) -> Result<Framed<Stream, Framing>, String> {
        let c = &self.config;
        let tls = c.tls.as_ref().map(|t| (&t.config, &t.name));
        let stream = tokio::time::timeout(c.response_timeout, sms_smpp::tls::connect(&c.addr, tls))
            .await
            .map_err(|_| format!("connecting to {} timed out", c.addr))?
            .map_err(|e| format!("connecting to {}: {e}", c.addr))?;
        let mut framed = Framed::new(stream, Framing::default());
        let (system_id, password, system_type) = (
            c_text::<16>(&c.system_id).map_err(|e| format!("system id: {e}"))?,
            c_text::<9>(&c.password).map_err(|e| format!("password: {e}"))?,
            c_text::<13>(&c.system_type).map_err(|e| format!("system type: {e}"))?,
        );
        let pdu: Pdu = match kind {
            Kind::Transceiver => BindTransceiver::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .build()
                .into(),
            Kind::Transmitter => BindTransmitter::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .build()
                .into(),
            Kind::Receiver => BindReceiver::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .build()
                .into(),
        };
        framed
            .send(Command::new(CommandStatus::EsmeRok, 1, pdu))
            .await
            .map_err(|e| format!("sending the bind: {e}"))?;
        let answer = tokio::time::timeout(c.response_timeout, framed.next())
            .await
            .map_err(|_| "no answer to the bind".to_owned())?;
        match answer {
            Some(Ok(Frame::Command(resp))) if resp.sequence_number() == 1 => {
                if resp.status() == CommandStatus::EsmeRok {
                    Ok(framed)
                } else {
                    Err(format!(
                        "the SMSC refused the bind: {:?} ({:#x})",
                        resp.status(),
                        u32::from(resp.status())
                    ))
                }
            }
            Some(Ok(other)) => Err(format!("the SMSC answered the bind with {other:?}")),
            Some(Err(e)) => Err(format!("reading the bind's answer: {e}")),
            None => Err("the SMSC closed the connection".into()),
        }
    }
}

/// Renews a bind's slot until `stop`; cancels `stop` when the slot must be given back (above
/// this replica's share, or lost) or cannot be renewed before its lease lapses.
async fn keep_slot(
    slots: Arc<dyn Slots>,
    slot_name: String,
    slot: i32,
    total: usize,
    stop: CancellationToken,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(slots.lease() / 3) => {}
        }
        match slots.renew(&slot_name, slot, total).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::info!(connection = %slot_name, slot, "bind slot given back (above this replica's share, or lost)");
                stop.cancel();
                return;
            }
            Err(e) if renewed.elapsed() > slots.lease() * 2 / 3 => {
                tracing::warn!(connection = %slot_name, slot, error = %e, "bind slot lease not renewed; unbinding before it lapses");
                stop.cancel();
                return;
            }
            Err(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Kind {
    fn transmits(self) -> bool {
        self != Kind::Receiver
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Command, CallError>>,
    since: Instant,
}

struct Bound<'a> {
    session: &'a Session,
    kind: Kind,
    deliveries: Arc<dyn Deliveries>,
}

/// `ESME_RINVCMDLEN`.
const INVALID_LENGTH: u32 = 0x02;
/// `ESME_RINVCMDID`.
const INVALID_COMMAND: u32 = 0x03;

impl Bound<'_> {
    /// Serves one bind until it fails, the SMSC unbinds, or `shutdown` (then it unbinds).
    async fn run(
        self,
        mut framed: Framed<Stream, Framing>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let c = &self.session.config;
        let mut sequence: u32 = 1;
        let mut pending: HashMap<u32, Pending> = HashMap::new();
        let (acks, mut answers) = mpsc::unbounded_channel::<Command>();
        let mut last_heard = Instant::now();
        let mut enquiry: Option<(u32, Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let result = loop {
            let room = self.kind.transmits() && pending.len() < c.window;
            tokio::select! {
                () = shutdown.cancelled() => break self.unbind(&mut framed, &mut pending, &mut sequence).await,
                request = async { self.session.taken.lock().await.recv().await }, if room => {
                    let Some(request) = request else { continue };
                    if request.state.compare_exchange(QUEUED, WRITTEN, Ordering::AcqRel, Ordering::Acquire).is_err() {
                        continue;
                    }
                    sequence = next(sequence);
                    if let Err(e) = framed.send(Command::new(CommandStatus::EsmeRok, sequence, request.pdu)).await {
                        let _ = request.reply.send(Err(CallError::Unanswered(format!("writing: {e}"))));
                        break Err(format!("writing: {e}"));
                    }
                    pending.insert(sequence, Pending { reply: request.reply, since: Instant::now() });
                }
                answer = answers.recv() => {
                    if let Some(answer) = answer
                        && let Err(e) = framed.send(answer).await {
                        break Err(format!("writing: {e}"));
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let late: Vec<u32> = pending.iter().filter(|(_, p)| now - p.since > c.response_timeout).map(|(s, _)| *s).collect();
                    for s in late {
                        if let Some(p) = pending.remove(&s) {
                            let _ = p.reply.send(Err(CallError::Unanswered(format!("no answer within {:?}", c.response_timeout))));
                        }
                    }
                    if let Some((_, asked)) = enquiry && now - asked > c.response_timeout {
                        break Err("enquire_link unanswered".into());
                    }
                    if enquiry.is_none() && now - last_heard > c.enquire_link {
                        sequence = next(sequence);
                        if let Err(e) = framed.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLink)).await {
                            break Err(format!("writing: {e}"));
                        }
                        enquiry = Some((sequence, now));
                    }
                }
                frame = framed.next() => {
                    last_heard = Instant::now();
                    let command = match frame {
                        None => break Err("the SMSC closed the connection".into()),
                        Some(Err(e)) => break Err(e.to_string()),
                        Some(Ok(Frame::Bad { command_id, sequence_number, problem })) => {
                            tracing::warn!(connection = %c.name, sequence_number, command_id = format_args!("{command_id:#010x}"), %problem, "unreadable PDU from the SMSC");
                            if is_response(command_id) {
                                // An answer we cannot read: the request's outcome is unknown.
                                if let Some(p) = pending.remove(&sequence_number) {
                                    let _ = p.reply.send(Err(CallError::Unanswered(format!("unreadable answer: {problem}"))));
                                }
                            } else if let Err(e) = framed.send(generic_nack(sequence_number, CommandStatus::from(INVALID_LENGTH))).await {
                                break Err(format!("writing: {e}"));
                            }
                            continue;
                        }
                        Some(Ok(Frame::Command(c))) => *c,
                    };
                    let seq = command.sequence_number();
                    if is_response(u32::from(command.id())) || command.id() == CommandId::GenericNack {
                        if enquiry.is_some_and(|(s, _)| s == seq) {
                            enquiry = None;
                        } else if let Some(p) = pending.remove(&seq) {
                            let _ = p.reply.send(Ok(command));
                        } else if command.id() == CommandId::UnbindResp {
                        } else {
                            tracing::debug!(connection = %c.name, sequence_number = seq, id = ?command.id(), "an answer to nothing we asked");
                        }
                        continue;
                    }
                    match command.pdu() {
                        Some(Pdu::DeliverSm(d)) => {
                            let (deliveries, acks, name, gsm7) = (self.deliveries.clone(), acks.clone(), c.name.clone(), c.gsm7);
                            let (d, errors) = (d.clone(), c.errors.clone());
                            tokio::spawn(async move {
                                let status = deliver(&*deliveries, &name, seq, &d, gsm7, &errors).await;
                                let resp = rusmpp::pdus::DeliverSmResp::builder().build();
                                let _ = acks.send(Command::new(status, seq, resp));
                            });
                        }
                        Some(Pdu::EnquireLink) => {
                            if let Err(e) = framed.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp)).await {
                                break Err(format!("writing: {e}"));
                            }
                        }
                        Some(Pdu::Unbind) => {
                            let _ = framed.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp)).await;
                            break Ok(());
                        }
                        _ => {
                            tracing::warn!(connection = %c.name, sequence_number = seq, id = ?command.id(), "a command the SMSC may not send us; refused");
                            if let Err(e) = framed.send(generic_nack(seq, CommandStatus::from(INVALID_COMMAND))).await {
                                break Err(format!("writing: {e}"));
                            }
                        }
                    }
                }
            }
        };
        // What was written and never answered may have been taken.
        for (_, p) in pending.drain() {
            let _ = p.reply.send(Err(CallError::Unanswered(
                "the connection ended before the answer".into(),
            )));
        }
        result
    }

    /// Waits (a little) for the answers still due, then unbinds.
    async fn unbind(
        &self,
        framed: &mut Framed<Stream, Framing>,
        pending: &mut HashMap<u32, Pending>,
        sequence: &mut u32,
    ) -> Result<(), String> {
        let deadline = Instant::now()
            + self
                .session
                .config
                .response_timeout
                .min(Duration::from_secs(5));
        while !pending.is_empty() && Instant::now() < deadline {
            match tokio::time::timeout_at(deadline.into(), framed.next()).await {
                Ok(Some(Ok(Frame::Command(c)))) => {
                    if let Some(p) = pending.remove(&c.sequence_number()) {
                        let _ = p.reply.send(Ok(*c));
                    }
                }
                Ok(Some(Ok(Frame::Bad { .. }))) => {}
                _ => break,
            }
        }
        *sequence = next(*sequence);
        framed
            .send(Command::new(CommandStatus::EsmeRok, *sequence, Pdu::Unbind))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(frame)) = framed.next().await {
                if let Frame::Command(c) = frame
                    && c.id() == CommandId::UnbindResp
                {
                    return;
                }
            }
        })
        .await;
        Ok(())
    }
}

fn c_text<const N: usize>(s: &str) -> Result<COctetString<1, N>, String> {
    COctetString::from_vec(format!("{s}\0").into_bytes()).map_err(|e| e.to_string())
}

fn next(sequence: u32) -> u32 {
    // 1 to 0x7FFFFFFF (SMPP 3.4 3.2).
    if sequence >= 0x7FFF_FFFF {
        1
    } else {
        sequence + 1
    }
}

/// `ESME_RX_T_APPN`: try again later.
const TEMPORARY: u32 = 0x64;
/// `ESME_RX_P_APPN`: never.
const PERMANENT: u32 = 0x65;

/// Reads and hands on a `deliver_sm`; the status to answer it with.
async fn deliver(
    deliveries: &dyn Deliveries,
    connection: &str,
    sequence_number: u32,
    pdu: &rusmpp::pdus::DeliverSm,
    gsm7: Gsm7Packing,
    errors: &sms_smpp::errors::ErrorMap,
) -> CommandStatus {
    let delivered = match sms_smpp::pdu::delivered(pdu, gsm7) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(connection, sequence_number, error = %e, "deliver_sm refused: it cannot be read");
            return CommandStatus::from(PERMANENT);
        }
    };
    let reason = match &delivered {
        sms_smpp::pdu::Delivered::Receipt { receipt, .. } => {
            receipt.error.as_deref().map(|e| errors.reason(e))
        }
        sms_smpp::pdu::Delivered::Message { .. } => None,
    };
    match deliveries.delivered(connection, delivered, reason).await {
        Ok(()) => CommandStatus::EsmeRok,
        Err(e) => {
            tracing::debug!(connection, sequence_number, error = %e, "deliver_sm not stored; the SMSC will send it again");
            CommandStatus::from(TEMPORARY)
        }
    }
}
