//! What the simulated SMSC keeps: its binds, the messages it took and their parts, and how it
//! is told to behave.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rusmpp::pdus::DeliverSm;
use rusmpp::{Command, CommandStatus};
use serde::Serialize;
use sms_smpp::pdu::Address;
use sms_smpp::receipt::{MessageState, Receipt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How the SMSC quotes a message's id in its receipts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ReceiptIds {
    /// As the `submit_sm_resp` gave it (hexadecimal, upper case).
    #[default]
    AsAnswered,
    /// The same number in decimal.
    Decimal,
    /// Hexadecimal, lower case, padded with zeros to 16 digits.
    ZeroPadded,
}

/// How the SMSC's side behaves (part of [`crate::Behaviour`]).
#[derive(Debug, Clone, Default)]
pub struct SmppBehaviour {
    /// How receipts quote ids.
    pub receipt_ids: ReceiptIds,
    /// Recipients whose receipt is sent before the `submit_sm_resp` (on the same bind).
    pub receipt_first: std::collections::HashSet<String>,
    /// Receipts go to a receiving bind other than the one that submitted, when there is one.
    pub receipts_elsewhere: bool,
    /// A contact's long message comes last part first.
    pub mo_reversed: bool,
    /// Our numbers whose contacts' messages come over SMPP ([`crate::Sim::reply`]).
    pub numbers: std::collections::HashSet<String>,
    /// Every number's contacts' messages come over SMPP.
    pub all_numbers: bool,
}

/// One `submit_sm` as the SMSC took (or refused) it.
#[derive(Debug, Clone, Serialize)]
pub struct SubmittedPart {
    /// The system id of the bind.
    pub system_id: String,
    /// Which bind (a number per connection).
    pub bind: u64,
    /// Sender, as we write numbers.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class`.
    pub esm_class: u8,
    /// The part's text, as read back.
    pub text: String,
    /// (reference, total, seq) when it is a part of a longer message.
    pub part_of: Option<(u16, u8, u8)>,
    /// `validity_period`.
    pub validity_period: String,
    /// The id given; `None` when refused.
    pub message_id: Option<String>,
    /// The `command_status` answered (0: taken).
    pub command_status: u32,
    /// When it came, in milliseconds since the epoch.
    pub received_at_ms: u64,
}

/// A bind's way in: what the SMSC sends it.
pub(crate) enum Outgoing {
    Command(Command),
    Deliver(DeliverSm, oneshot::Sender<CommandStatus>),
}

pub(crate) struct BindHandle {
    pub(crate) id: u64,
    pub(crate) system_id: String,
    pub(crate) receives: bool,
    pub(crate) out: mpsc::UnboundedSender<Outgoing>,
}

/// A message the SMSC took, by its number.
pub(crate) struct Taken {
    pub(crate) state: MessageState,
    pub(crate) error: Option<String>,
}

/// A long message's parts: (system id, from, to, reference).
pub(crate) type PartsKey = (String, String, String, u16);
/// A part's text and the id it was given.
pub(crate) type PartText = (String, String);

/// The SMSC's state, inside [`Sim`].
#[derive(Default)]
pub(crate) struct Smsc {
    pub(crate) binds: Mutex<Vec<BindHandle>>,
    pub(crate) next_bind: AtomicU64,
    pub(crate) next_id: AtomicU64,
    pub(crate) taken: Mutex<HashMap<u64, Taken>>,
    /// Parts of messages being put back together: (system id, from, to, reference) → texts.
    pub(crate) assembling: Mutex<HashMap<PartsKey, Vec<Option<PartText>>>>,
    pub(crate) parts: Mutex<Vec<SubmittedPart>>,
    /// Cancelled to cut every connection; replaced after.
    pub(crate) cut: Mutex<CancellationToken>,
    /// `deliver_sm`s acknowledged with status 0 (receipts and contacts' messages).
    pub(crate) acknowledged: AtomicU64,
    /// Receipts waiting for a bind to take them.
    pub(crate) waiting: AtomicU32,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A receipt the SMSC owes a bind.
pub(crate) struct ReceiptDue {
    pub(crate) system_id: String,
    /// The message's number (its ids are this in some form).
    pub(crate) number: u64,
    pub(crate) contact: Address,
    pub(crate) ours: Address,
    pub(crate) receipt: Receipt,
    /// The message's text (the receipt quotes its start).
    pub(crate) text: String,
}
