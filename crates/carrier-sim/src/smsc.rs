//! The simulator's SMSC: SMPP 3.4 over TCP, with the same behaviours as its Twilio side.
//!
//! * binds (transmitter, receiver, transceiver) with a system id and password of
//!   [`crate::SimConfig::smpp_accounts`]; a wrong one is refused (`ESME_RINVPASWD`,
//!   `ESME_RINVSYSID`) and the connection closed;
//! * `submit_sm` answered with a hexadecimal id; the parts of a message are put back together
//!   and the whole message recorded like a Messages API request ([`crate::Sim::requests`]),
//!   every part as it came in [`crate::Sim::smpp_parts`];
//! * a delivery receipt per part after the callback delay, on any receiving bind of the same
//!   system id, kept and sent again until a bind acknowledges it (`deliver_sm_resp` 0): none
//!   is lost while the platform is unbound or dies before acknowledging;
//! * behaviours: landlines (`REJECTD` err 11), spam (`UNDELIV` err 69), unknown errors
//!   (`REJECTD` err 255), unreachable handsets (`UNDELIV` err 27), throttling
//!   (`ESME_RTHROTTLED` for the next N `submit_sm` to a recipient), a `submit_sm` taken but never
//!   answered, receipts quoting the id in decimal or zero-padded, sent before the
//!   `submit_sm_resp` or on another bind; every connection cut at once ([`crate::Sim::cut_smpp`]);
//! * `query_sm` answered from where each message stands;
//! * contacts' messages (`deliver_sm`) on demand ([`crate::Sim::reply`] for a number that
//!   receives over SMPP), long ones in parts, in reverse order when asked;
//! * bad input answered as the specification says: `generic_nack` with `ESME_RINVCMDLEN` for
//!   a PDU that cannot be read, `ESME_RINVCMDID` for an unknown command, `ESME_RINVBNDSTS` for
//!   a command the bind may not send.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::SubmitSmResp;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use sms_smpp::codec::{Frame, Framing, generic_nack, is_response};
use sms_smpp::mo;
use sms_smpp::receipt::{MessageState, Receipt};
use sms_smpp::tls::Stream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::sim::{RecordedRequest, Sim};
use crate::smsc_state::{BindHandle, Outgoing, ReceiptDue, SubmittedPart, Taken, lock};

/// `ESME_RINVCMDLEN`.
const INVALID_LENGTH: u32 = 0x02;
/// `ESME_RINVCMDID`.
const INVALID_COMMAND: u32 = 0x03;
/// `ESME_RINVBNDSTS`.
const INVALID_BIND_STATUS: u32 = 0x04;
/// `ESME_RALYBND`.
const ALREADY_BOUND: u32 = 0x05;
/// `ESME_RINVMSGLEN`.
const INVALID_MESSAGE_LENGTH: u32 = 0x01;
/// `ESME_RINVPASWD`.
const INVALID_PASSWORD: u32 = 0x0E;
/// `ESME_RINVSYSID`.
const INVALID_SYSTEM_ID: u32 = 0x0F;
/// `ESME_RTHROTTLED`.
const THROTTLED: u32 = 0x58;

fn status(code: u32) -> CommandStatus {
    CommandStatus::from(code)
}

pub(crate) fn answer(to: &Command, status_code: u32, pdu: impl Into<Pdu>) -> Command {
    Command::new(status(status_code), to.sequence_number(), pdu)
}

impl Sim {
    /// Serves SMPP on `listener` until `shutdown`.
    pub async fn serve_smpp(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        self.serve_smpp_with(listener, None, shutdown).await
    }

    /// Serves SMPP over TLS on `listener` until `shutdown`.
    pub async fn serve_smpp_tls(
        self,
        listener: TcpListener,
        tls: std::sync::Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        self.serve_smpp_with(listener, Some(tls), shutdown).await
    }

    async fn serve_smpp_with(
        self,
        listener: TcpListener,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "SMPP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (sim, shutdown, tls) = (self.clone(), shutdown.clone(), tls.clone());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(
                    Duration::from_secs(10),
                    sms_smpp::tls::accept(stream, tls.as_ref()),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "SMPP TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                if let Err(e) = sim.connection(stream, shutdown).await {
                    tracing::debug!(%peer, error = %e, "SMPP connection ended");
                }
            });
        }
    }

    /// Cuts every SMPP connection at once (the SMSC's side of a network failure); new ones
    /// are taken as before.
    pub fn cut_smpp(&self) {
        let mut cut = lock(&self.inner.smsc.cut);
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Every `submit_sm` received so far.
    pub fn smpp_parts(&self) -> Vec<SubmittedPart> {
        lock(&self.inner.smsc.parts).clone()
    }

    /// SMPP binds open now.
    pub fn smpp_binds(&self) -> usize {
        lock(&self.inner.smsc.binds).len()
    }

    /// `deliver_sm`s acknowledged so far, and receipts waiting for a bind.
    pub fn smpp_deliveries(&self) -> (u64, u32) {
        (
            self.inner.smsc.acknowledged.load(Ordering::Relaxed),
            self.inner.smsc.waiting.load(Ordering::Relaxed),
        )
    }

    /// Whether contacts' messages to `number` come over SMPP.
    pub(crate) fn receives_over_smpp(&self, number: &str) -> bool {
        let b = self.behaviour();
        !self.inner.config.smpp_accounts.is_empty()
            && (b.smpp.all_numbers || b.smpp.numbers.contains(number))
    }

    async fn connection(self, stream: Stream, shutdown: CancellationToken) -> anyhow::Result<()> {
        let smsc = &self.inner.smsc;
        let cut = lock(&smsc.cut).clone();
        let mut framed = Framed::new(stream, Framing::default());
        // A bind first, within 10 s.
        let first = tokio::time::timeout(Duration::from_secs(10), framed.next()).await;
        let command = match first {
            Ok(Some(Ok(Frame::Command(c)))) => *c,
            Ok(Some(Ok(Frame::Bad {
                sequence_number, ..
            }))) => {
                framed
                    .send(generic_nack(sequence_number, status(INVALID_LENGTH)))
                    .await?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let (system_id, password, transmits, receives) = match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => (&b.system_id, &b.password, true, false),
            Some(Pdu::BindReceiver(b)) => (&b.system_id, &b.password, false, true),
            Some(Pdu::BindTransceiver(b)) => (&b.system_id, &b.password, true, true),
            _ => {
                framed
                    .send(generic_nack(
                        command.sequence_number(),
                        status(INVALID_BIND_STATUS),
                    ))
                    .await?;
                return Ok(());
            }
        };
        let system_id = system_id.as_str().to_owned();
        let refusal = match self.inner.config.smpp_accounts.get(&system_id) {
            None => Some(INVALID_SYSTEM_ID),
            Some(p) if p != password.as_str() => Some(INVALID_PASSWORD),
            Some(_) => None,
        };
        let resp_system_id = COctetString::from_vec(b"SIMSMSC\0".to_vec()).unwrap_or_default();
        let resp: Pdu = match command.pdu() {
            Some(Pdu::BindTransmitter(_)) => Pdu::BindTransmitterResp(
                rusmpp::pdus::BindTransmitterResp::new(resp_system_id, None),
            ),
            Some(Pdu::BindReceiver(_)) => {
                Pdu::BindReceiverResp(rusmpp::pdus::BindReceiverResp::new(resp_system_id, None))
            }
            _ => Pdu::BindTransceiverResp(rusmpp::pdus::BindTransceiverResp::new(
                resp_system_id,
                None,
            )),
        };
        if let Some(code) = refusal {
            framed.send(answer(&command, code, resp)).await?;
            return Ok(());
        }
        framed.send(answer(&command, 0, resp)).await?;
        let (out, mut outgoing) = mpsc::unbounded_channel();
        let bind = smsc.next_bind.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&smsc.binds).push(BindHandle {
            id: bind,
            system_id: system_id.clone(),
            receives,
            out: out.clone(),
        });
        let result = self
            .bound(
                &mut framed,
                Bound {
                    bind,
                    system_id: &system_id,
                    transmits,
                    out: &out,
                },
                &mut outgoing,
                &shutdown,
                &cut,
            )
            .await;
        lock(&smsc.binds).retain(|b| b.id != bind);
        result
    }

    async fn bound(
        &self,
        framed: &mut Framed<Stream, Framing>,
        me: Bound<'_>,
        outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
        shutdown: &CancellationToken,
        cut: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sequence: u32 = 0;
        // Our requests waiting for their answer: sequence → who wants it.
        let mut acks: HashMap<u32, oneshot::Sender<CommandStatus>> = HashMap::new();
        let mut enquire = tokio::time::interval(Duration::from_secs(30));
        enquire.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = cut.cancelled() => return Ok(()),
                _ = enquire.tick() => {
                    sequence = sequence.wrapping_add(1);
                    framed.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLink)).await?;
                }
                out = outgoing.recv() => match out {
                    Some(Outgoing::Command(c)) => framed.send(c).await?,
                    Some(Outgoing::Deliver(pdu, ack)) => {
                        sequence = sequence.wrapping_add(1);
                        acks.insert(sequence, ack);
                        framed.send(Command::new(CommandStatus::EsmeRok, sequence, pdu)).await?;
                    }
                    None => return Ok(()),
                },
                frame = framed.next() => {
                    let command = match frame {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(Frame::Bad { command_id, sequence_number, problem })) => {
                            tracing::debug!(bind = me.bind, sequence_number, command_id, %problem, "unreadable PDU");
                            if !is_response(command_id) {
                                framed.send(generic_nack(sequence_number, status(INVALID_LENGTH))).await?;
                            }
                            continue;
                        }
                        Some(Ok(Frame::Command(c))) => *c,
                    };
                    if is_response(u32::from(command.id())) {
                        if let Some(ack) = acks.remove(&command.sequence_number()) {
                            let _ = ack.send(command.status());
                        }
                        continue;
                    }
                    match command.pdu() {
                        Some(Pdu::SubmitSm(s)) if me.transmits => {
                            self.submit(&me, &command, s);
                        }
                        Some(Pdu::SubmitSm(_)) => {
                            framed.send(generic_nack(command.sequence_number(), status(INVALID_BIND_STATUS))).await?;
                        }
                        Some(Pdu::QuerySm(q)) => {
                            framed.send(self.query(&command, q.message_id.as_str())).await?;
                        }
                        Some(Pdu::EnquireLink) => {
                            framed.send(answer(&command, 0, Pdu::EnquireLinkResp)).await?;
                        }
                        Some(Pdu::Unbind) => {
                            framed.send(answer(&command, 0, Pdu::UnbindResp)).await?;
                            return Ok(());
                        }
                        Some(Pdu::BindTransmitter(_) | Pdu::BindReceiver(_) | Pdu::BindTransceiver(_)) => {
                            framed.send(generic_nack(command.sequence_number(), status(ALREADY_BOUND))).await?;
                        }
                        _ => {
                            framed.send(generic_nack(command.sequence_number(), status(INVALID_COMMAND))).await?;
                        }
                    }
                }
            }
        }
    }

    /// Takes (or refuses) one `submit_sm`; the answer goes out through the bind's queue, after
    /// the API latency, so a slow SMSC is one whose window fills.
    fn submit(&self, me: &Bound<'_>, command: &Command, pdu: &rusmpp::pdus::SubmitSm) {
        let smsc = &self.inner.smsc;
        let s = sms_smpp::pdu::submitted(pdu);
        let (from, to) = (s.from.number(), s.to.number());
        let read = mo::read(
            mo::MoPdu {
                esm_class: s.part.esm_class,
                data_coding: s.part.data_coding,
                short_message: &s.part.short_message,
                sar: s.part.sar.map(|x| (x.reference, x.total, x.seq)),
            },
            self.inner.config.smpp_gsm7,
        );
        let (throttle, unanswered, receipt_first, latency) = {
            let mut b = self
                .inner
                .behaviour
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let throttle = match b.throttled.get_mut(&to).filter(|n| **n > 0) {
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => false,
            };
            (
                throttle,
                b.taken_unanswered.contains(&to),
                b.smpp.receipt_first.contains(&to),
                b.api_latency,
            )
        };
        let mut part = SubmittedPart {
            system_id: me.system_id.to_owned(),
            bind: me.bind,
            from: from.clone(),
            to: to.clone(),
            data_coding: s.part.data_coding,
            esm_class: s.part.esm_class,
            text: String::new(),
            part_of: None,
            validity_period: s.validity_period.clone(),
            message_id: None,
            command_status: 0,
            received_at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
        };
        let refusal = match &read {
            _ if throttle => Some(THROTTLED),
            Err(_) => Some(INVALID_MESSAGE_LENGTH),
            Ok(_) => None,
        };
        let respond = |code: u32, id: &str| {
            let resp = SubmitSmResp::builder()
                .message_id(
                    COctetString::from_vec(format!("{id}\0").into_bytes()).unwrap_or_default(),
                )
                .build();
            answer(command, code, resp)
        };
        let out = me.out.clone();
        let later = move |c: Command| {
            if latency.is_zero() {
                let _ = out.send(Outgoing::Command(c));
            } else {
                let out = out.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(latency).await;
                    let _ = out.send(Outgoing::Command(c));
                });
            }
        };
        if let Some(code) = refusal {
            part.command_status = code;
            lock(&smsc.parts).push(part);
            later(respond(code, ""));
            return;
        }
        let Ok(read) = read else { return };
        let number = smsc.next_id.fetch_add(1, Ordering::Relaxed) + 0x1000_0000;
        let id = format!("{number:08X}");
        part.text.clone_from(&read.text);
        part.part_of = read.part.map(|p| (p.reference, p.total, p.seq));
        part.message_id = Some(id.clone());
        lock(&smsc.parts).push(part);
        let (state, error) = self.smpp_fate(&to);
        lock(&smsc.taken).insert(
            number,
            Taken {
                state: MessageState::Enroute,
                error: None,
            },
        );
        self.record_whole(me.system_id, &from, &to, &id, &read, &s.validity_period);
        let due = ReceiptDue {
            system_id: me.system_id.to_owned(),
            number,
            contact: s.to.clone(),
            ours: s.from.clone(),
            receipt: Receipt {
                id: self.quoted(number, &id),
                state,
                error,
            },
            text: read.text.clone(),
        };
        let sim = self.clone();
        if receipt_first {
            // The receipt overtakes the answer: queued on this bind ahead of it.
            self.finish(&due);
            let (ack_tx, ack) = oneshot::channel();
            if let Ok(pdu) = due.pdu() {
                let _ = me.out.send(Outgoing::Deliver(pdu, ack_tx));
            }
            tokio::spawn(async move {
                if matches!(ack.await, Ok(CommandStatus::EsmeRok)) {
                    sim.inner.smsc.acknowledged.fetch_add(1, Ordering::Relaxed);
                } else {
                    sim.deliver_receipt(due, None, Duration::ZERO).await;
                }
            });
        } else {
            let (bind, delay) = (me.bind, self.behaviour().callback_delay);
            tokio::spawn(async move { sim.deliver_receipt(due, Some(bind), delay).await });
        }
        if !unanswered {
            later(respond(0, &id));
        }
    }

    /// Records the whole message once its last part is in.
    fn record_whole(
        &self,
        system_id: &str,
        from: &str,
        to: &str,
        id: &str,
        read: &mo::MoPart,
        validity: &str,
    ) {
        let body_and_sid = match read.part {
            None => Some((read.text.clone(), id.to_owned())),
            Some(p) => {
                let key = (
                    system_id.to_owned(),
                    from.to_owned(),
                    to.to_owned(),
                    p.reference,
                );
                let mut assembling = lock(&self.inner.smsc.assembling);
                let slots = assembling
                    .entry(key.clone())
                    .or_insert_with(|| vec![None; usize::from(p.total)]);
                if let Some(slot) = slots.get_mut(usize::from(p.seq) - 1) {
                    *slot = Some((read.text.clone(), id.to_owned()));
                }
                if slots.iter().all(Option::is_some) {
                    let parts = assembling.remove(&key).unwrap_or_default();
                    let body: String = parts.iter().flatten().map(|(t, _)| t.as_str()).collect();
                    let first = parts.first().cloned().flatten().map(|(_, id)| id);
                    Some((body, first.unwrap_or_default()))
                } else {
                    None
                }
            }
        };
        let Some((body, sid)) = body_and_sid else {
            return;
        };
        let answer = self
            .behaviour()
            .auto_reply
            .clone()
            .filter(|a| a.answers(&body));
        if let Some(answer) = answer {
            let (sim, contact, ours) = (self.clone(), to.to_owned(), from.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(answer.delay).await;
                if let Err(e) = sim.reply(&contact, &ours, &answer.text, Vec::new()).await {
                    tracing::warn!(error = %e, "scripted reply not delivered");
                }
            });
        }
        self.lock_requests().push(RecordedRequest {
            account_sid: system_id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            body,
            status_callback: String::new(),
            media_urls: Vec::new(),
            validity_period: sms_smpp::pdu::read_relative_time(validity),
            received_at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
            traceparent: None,
            media_sizes: Vec::new(),
            // As the Messages API answers a message it took.
            http_status: 201,
            sid: Some(sid),
        });
    }
}

/// What a bind is, for the handlers.
struct Bound<'a> {
    bind: u64,
    system_id: &'a str,
    transmits: bool,
    out: &'a mpsc::UnboundedSender<Outgoing>,
}
