//! What the simulator's SMSC sends to binds: delivery receipts (each kept and sent again until a
//! bind acknowledges it), contacts' messages, and the answers to `query_sm` from where each
//! message stands. The binds, their commands and `submit_sm` are in `smsc`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rusmpp::pdus::{DeliverSm, QuerySmResp};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::MessageState as State;
use rusmpp::{Command, CommandStatus, Pdu};
use sms_smpp::SmscId;
use sms_smpp::parts::PartSettings;
use sms_smpp::pdu::Address;
use sms_smpp::receipt::{MessageState, Receipt};
use tokio::sync::oneshot;

use crate::sim::Sim;
use crate::smsc_state::{BindHandle, Outgoing, ReceiptDue, ReceiptIds, Taken, lock};

use crate::smsc::answer;

/// `ESME_RQUERYFAIL`.
const QUERY_FAILED: u32 = 0x67;

impl Sim {
    /// The receipt's final state and error for a message to `to`.
    pub(crate) fn smpp_fate(&self, to: &str) -> (MessageState, Option<String>) {
        let b = self.behaviour();
        if b.landlines.contains(to) {
            (MessageState::Rejected, Some("11".into()))
        } else if b.spam.contains(to) {
            (MessageState::Undeliverable, Some("69".into()))
        } else if b.unknown_error.contains(to) {
            (MessageState::Rejected, Some("255".into()))
        } else if b.unreachable.contains(to) {
            (MessageState::Undeliverable, Some("27".into()))
        } else {
            (MessageState::Delivered, None)
        }
    }

    /// The id as the receipts quote it.
    pub(crate) fn quoted(&self, number: u64, answered: &str) -> SmscId {
        let text = match self.behaviour().smpp.receipt_ids {
            ReceiptIds::AsAnswered => answered.to_owned(),
            ReceiptIds::Decimal => number.to_string(),
            ReceiptIds::ZeroPadded => format!("{number:016x}"),
        };
        // Digits, always an id.
        SmscId::parse(&text).unwrap_or_else(|_| SmscId::from(number))
    }

    /// Where the message a receipt is about stands now (for `query_sm`).
    pub(crate) fn finish(&self, due: &ReceiptDue) {
        lock(&self.inner.smsc.taken).insert(
            due.number,
            Taken {
                state: due.receipt.state,
                error: due.receipt.error.clone(),
            },
        );
    }

    /// Sends a receipt after `delay` on a receiving bind of its system id (another than
    /// `submitted_on` when the behaviour says so and there is one), again and again until one
    /// acknowledges it.
    pub(crate) async fn deliver_receipt(
        self,
        due: ReceiptDue,
        submitted_on: Option<u64>,
        delay: Duration,
    ) {
        tokio::time::sleep(delay).await;
        self.finish(&due);
        let Ok(pdu) = due.pdu() else {
            return;
        };
        let avoid = submitted_on.filter(|_| self.behaviour().smpp.receipts_elsewhere);
        self.inner.smsc.waiting.fetch_add(1, Ordering::Relaxed);
        self.deliver_until_taken(&due.system_id, pdu, avoid).await;
        self.inner.smsc.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Offers `pdu` to receiving binds of `system_id` until one answers 0 (a temporary error,
    /// no answer or no bind: again a moment later). `false` when a bind refused it for good.
    pub(crate) async fn deliver_until_taken(
        &self,
        system_id: &str,
        pdu: DeliverSm,
        avoid: Option<u64>,
    ) -> bool {
        let mut turn = 0_usize;
        loop {
            let target = {
                let binds = lock(&self.inner.smsc.binds);
                let candidates: Vec<&BindHandle> = binds
                    .iter()
                    .filter(|b| b.receives && b.system_id == system_id)
                    .collect();
                let preferred: Vec<&&BindHandle> =
                    candidates.iter().filter(|b| Some(b.id) != avoid).collect();
                let pick = if preferred.is_empty() {
                    candidates.get(turn % candidates.len().max(1)).copied()
                } else {
                    preferred.get(turn % preferred.len()).map(|b| **b)
                };
                pick.map(|b| b.out.clone())
            };
            turn += 1;
            if let Some(out) = target {
                let (ack_tx, ack) = oneshot::channel();
                if out.send(Outgoing::Deliver(pdu.clone(), ack_tx)).is_ok() {
                    match tokio::time::timeout(Duration::from_secs(10), ack).await {
                        Ok(Ok(CommandStatus::EsmeRok)) => {
                            self.inner.smsc.acknowledged.fetch_add(1, Ordering::Relaxed);
                            return true;
                        }
                        Ok(Ok(CommandStatus::EsmeRxPAppn)) => return false,
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A contact's message over SMPP: its parts as `deliver_sm`s, each until acknowledged
    /// (for at most 30 s). The id returned is the SMSC's own for the message.
    pub(crate) async fn smpp_reply(
        &self,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let contact = Address::of(from).map_err(|e| e.to_string())?;
        let ours = Address::of(to).map_err(|e| e.to_string())?;
        let reference = u16::try_from(fastrand::u32(0..=0xFFFF)).unwrap_or(0);
        let mut parts = sms_smpp::parts::parts(
            body,
            reference,
            PartSettings {
                gsm7: self.inner.config.smpp_gsm7,
                ..PartSettings::default()
            },
        )
        .map_err(|e| e.to_string())?;
        if self.behaviour().smpp.mo_reversed {
            parts.reverse();
        }
        for part in parts {
            let pdu = sms_smpp::pdu::message_deliver_sm(&contact, &ours, &part)
                .map_err(|e| e.to_string())?;
            if !self.offer(pdu).await? {
                return Ok((400, String::new()));
            }
        }
        let id = self.inner.smsc.next_id.fetch_add(1, Ordering::Relaxed) + 0x1000_0000;
        Ok((200, format!("{id:08X}")))
    }

    /// Offers one `deliver_sm` as it is to the first SMPP account's receiving binds, until one
    /// takes it (tests: a part whose other parts never come).
    pub async fn deliver_raw(&self, pdu: DeliverSm) -> Result<(), String> {
        if self.offer(pdu).await? {
            Ok(())
        } else {
            Err("refused for good".into())
        }
    }

    /// Offers `pdu` to the first SMPP account's receiving binds for up to 30 s: `true` once one
    /// takes it, `false` when a bind refuses it for good.
    pub(crate) async fn offer(&self, pdu: DeliverSm) -> Result<bool, String> {
        let system_id = crate::config::first_key(&self.inner.config.smpp_accounts)
            .ok_or("no SMPP account is configured")?;
        let patience = Duration::from_secs(30);
        tokio::time::timeout(patience, self.deliver_until_taken(&system_id, pdu, None))
            .await
            .map_err(|_| format!("no SMPP bind of {system_id} took it within {patience:?}"))
    }

    /// Answers a `query_sm`.
    pub(crate) fn query(&self, command: &Command, id: &str) -> Command {
        let number = u64::from_str_radix(id, 16).ok();
        let taken = lock(&self.inner.smsc.taken);
        let Some(t) = number.and_then(|n| taken.get(&n)) else {
            return answer(
                command,
                QUERY_FAILED,
                Pdu::QuerySmResp(QuerySmResp::default()),
            );
        };
        let error_code = t
            .error
            .as_deref()
            .and_then(|e| e.parse::<u8>().ok())
            .unwrap_or(0);
        let resp = QuerySmResp::builder()
            .message_id(COctetString::from_vec(format!("{id}\0").into_bytes()).unwrap_or_default())
            .final_date(EmptyOrFullCOctetString::empty())
            .message_state(State::from(t.state.code()))
            .error_code(error_code)
            .build();
        answer(command, 0, resp)
    }
}

impl ReceiptDue {
    pub(crate) fn pdu(&self) -> Result<DeliverSm, sms_smpp::pdu::PduError> {
        receipt_pdu(&self.contact, &self.ours, &self.receipt, &self.text)
    }
}

fn receipt_pdu(
    contact: &Address,
    ours: &Address,
    receipt: &Receipt,
    body: &str,
) -> Result<DeliverSm, sms_smpp::pdu::PduError> {
    let now = chrono::Utc::now().format("%y%m%d%H%M").to_string();
    let text = receipt.text(&now, &now, body);
    sms_smpp::pdu::receipt_deliver_sm(contact, ours, receipt, &text)
}
