//! Delivery receipts: the text of SMPP 3.4's Appendix B (`id:… sub:… dlvrd:… submit date:…
//! done date:… stat:… err:… text:…`) and the `receipted_message_id` / `message_state` /
//! `network_error_code` TLVs, which win when both are there. SMSCs differ in the details
//! (case, missing fields, extra spaces, a `Text:` with anything in it): the reading is lenient
//! about those and strict about the id and the state, without which a receipt says nothing.

use sms_core::{Reason, Status};

use crate::id::{IdError, SmscId};

/// Longest receipt text read (a `short_message` is at most 254 octets; a `message_payload`
/// receipt is cut here).
pub const MAX_RECEIPT_TEXT: usize = 512;

/// Where a message stands, as SMPP 3.4 names it (`message_state`, 5.2.28; `stat:` in a receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// `ENROUTE` (1): on its way.
    Enroute,
    /// `DELIVRD` (2): delivered.
    Delivered,
    /// `EXPIRED` (3): its validity ran out.
    Expired,
    /// `DELETED` (4): deleted (by the SMSC or a `cancel_sm`).
    Deleted,
    /// `UNDELIV` (5): could not be delivered.
    Undeliverable,
    /// `ACCEPTD` (6): accepted on the subscriber's behalf (SMSCs also use it for "taken").
    Accepted,
    /// `UNKNOWN` (7): in no valid state.
    Unknown,
    /// `REJECTD` (8): rejected.
    Rejected,
    /// `SKIPPED` (9, SMPP 5): skipped.
    Skipped,
}

impl MessageState {
    /// The state a receipt's `stat:` names (its first seven letters, any case).
    pub fn from_stat(stat: &str) -> Option<MessageState> {
        let upper = stat.trim().to_ascii_uppercase();
        Some(match upper.get(..7).unwrap_or(&upper) {
            "ENROUTE" => MessageState::Enroute,
            "DELIVRD" | "DELIVER" => MessageState::Delivered,
            "EXPIRED" => MessageState::Expired,
            "DELETED" => MessageState::Deleted,
            "UNDELIV" => MessageState::Undeliverable,
            "ACCEPTD" | "ACCEPTE" => MessageState::Accepted,
            "UNKNOWN" => MessageState::Unknown,
            "REJECTD" | "REJECTE" => MessageState::Rejected,
            "SKIPPED" => MessageState::Skipped,
            _ => return None,
        })
    }

    /// The state a `message_state` TLV (or `query_sm_resp`) carries.
    pub fn from_code(code: u8) -> Option<MessageState> {
        Some(match code {
            1 => MessageState::Enroute,
            2 => MessageState::Delivered,
            3 => MessageState::Expired,
            4 => MessageState::Deleted,
            5 => MessageState::Undeliverable,
            6 => MessageState::Accepted,
            7 => MessageState::Unknown,
            8 => MessageState::Rejected,
            9 => MessageState::Skipped,
            _ => return None,
        })
    }

    /// Its code (`message_state`).
    pub fn code(self) -> u8 {
        match self {
            MessageState::Enroute => 1,
            MessageState::Delivered => 2,
            MessageState::Expired => 3,
            MessageState::Deleted => 4,
            MessageState::Undeliverable => 5,
            MessageState::Accepted => 6,
            MessageState::Unknown => 7,
            MessageState::Rejected => 8,
            MessageState::Skipped => 9,
        }
    }

    /// Its name in a receipt's `stat:`.
    pub fn stat(self) -> &'static str {
        match self {
            MessageState::Enroute => "ENROUTE",
            MessageState::Delivered => "DELIVRD",
            MessageState::Expired => "EXPIRED",
            MessageState::Deleted => "DELETED",
            MessageState::Undeliverable => "UNDELIV",
            MessageState::Accepted => "ACCEPTD",
            MessageState::Unknown => "UNKNOWN",
            MessageState::Rejected => "REJECTD",
            MessageState::Skipped => "SKIPPED",
        }
    }

    /// Our status for it, with `reason` (from the receipt's error) for a failure: `None` for a
    /// state that changes nothing we show (`UNKNOWN`: the status check asks again later).
    /// `ENROUTE` and `ACCEPTD` are `sent`: many SMSCs send `ACCEPTD` for "taken", before the
    /// final receipt.
    pub fn ours(self, reason: Option<Reason>) -> Option<(Status, Option<Reason>)> {
        Some(match self {
            MessageState::Enroute | MessageState::Accepted => (Status::Sent, None),
            MessageState::Delivered => (Status::Delivered, None),
            MessageState::Expired => (Status::Undelivered, Some(Reason::Expired)),
            MessageState::Undeliverable => (
                Status::Undelivered,
                Some(reason.unwrap_or(Reason::UnknownCarrierError)),
            ),
            MessageState::Deleted | MessageState::Rejected | MessageState::Skipped => (
                Status::Failed,
                Some(reason.unwrap_or(Reason::UnknownCarrierError)),
            ),
            MessageState::Unknown => return None,
        })
    }
}

/// A delivery receipt in our words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The id of the message it is about, as the receipt quotes it.
    pub id: SmscId,
    /// Where the message stands.
    pub state: MessageState,
    /// The error the SMSC gave (`err:`, or the `network_error_code`'s code), without leading
    /// zeros; `None` for none (`000`).
    pub error: Option<String>,
}

/// Why a receipt says nothing we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Neither `receipted_message_id` nor an `id:` field.
    #[error("the receipt names no message id")]
    NoId,
    /// The id is not an id.
    #[error("the receipt's message id: {0}")]
    BadId(#[from] IdError),
    /// Neither `message_state` nor a `stat:` field we know.
    #[error("the receipt names no message state we know ({0})")]
    NoState(String),
}

/// What a `deliver_sm` that is a receipt carries, as the codec read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiptPdu<'a> {
    /// Its `short_message` (or `message_payload`).
    pub text: &'a [u8],
    /// The `receipted_message_id` TLV.
    pub receipted_message_id: Option<&'a str>,
    /// The `message_state` TLV.
    pub message_state: Option<u8>,
    /// The `network_error_code` TLV: network type, then a 2-octet error code.
    pub network_error_code: Option<[u8; 3]>,
}

impl Receipt {
    /// Reads a receipt: the TLVs when present, the text for the rest.
    pub fn read(pdu: ReceiptPdu<'_>) -> Result<Receipt, ReceiptError> {
        let text = &pdu.text[..pdu.text.len().min(MAX_RECEIPT_TEXT)];
        let text = String::from_utf8_lossy(text);
        let fields = fields(&text);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let id = match pdu
            .receipted_message_id
            .map(|s| s.trim_end_matches('\0'))
            .filter(|s| !s.is_empty())
        {
            Some(id) => SmscId::parse(id)?,
            None => SmscId::parse(field("id").ok_or(ReceiptError::NoId)?)?,
        };
        let state = match pdu.message_state.and_then(MessageState::from_code) {
            Some(state) => state,
            None => {
                let stat = field("stat").unwrap_or("");
                MessageState::from_stat(stat)
                    .ok_or_else(|| ReceiptError::NoState(sms_core::text::quote(stat)))?
            }
        };
        let error = match pdu.network_error_code {
            Some([_, hi, lo]) => Some(u16::from_be_bytes([hi, lo]).to_string()),
            None => field("err").map(str::to_owned),
        }
        .map(|e| {
            let t = e.trim_start_matches('0');
            if t.is_empty() {
                String::new()
            } else {
                t.to_ascii_lowercase()
            }
        })
        .filter(|e| !e.is_empty());
        Ok(Receipt { id, state, error })
    }

    /// The Appendix B text of a receipt (what the simulator's SMSC sends).
    pub fn text(&self, submitted: &str, done: &str, body: &str) -> String {
        let delivered = u8::from(self.state == MessageState::Delivered);
        let err = self.error.as_deref().unwrap_or("0");
        let head: String = body.chars().take(20).collect();
        format!(
            "id:{} sub:001 dlvrd:{delivered:03} submit date:{submitted} done date:{done} stat:{} \
             err:{err:0>3} text:{head}",
            self.id,
            self.state.stat(),
        )
    }
}

/// The receipt text's fields, by lowercase name: `id`, `sub`, `dlvrd`, `submit date`,
/// `done date`, `stat`, `err`, `text`. A value runs to the next field's name; `text` to the
/// end.
fn fields(text: &str) -> Vec<(&'static str, String)> {
    const NAMES: [&str; 8] = [
        "submit date:",
        "done date:",
        "dlvrd:",
        "stat:",
        "text:",
        "sub:",
        "err:",
        "id:",
    ];
    let lower = text.to_ascii_lowercase();
    // Where each field's name starts (at the start or after a space), in order.
    let mut starts: Vec<(usize, &'static str)> = Vec::new();
    let mut at = 0;
    while at < lower.len() {
        let boundary = at == 0 || lower.as_bytes()[at - 1] == b' ';
        let found = boundary
            .then(|| NAMES.iter().find(|n| lower[at..].starts_with(**n)))
            .flatten();
        if let Some(name) = found {
            starts.push((at, name));
            if *name == "text:" {
                break;
            }
            at += name.len();
        } else {
            at += lower[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let mut out = Vec::new();
    for (i, (start, name)) in starts.iter().enumerate() {
        let from = start + name.len();
        let to = starts.get(i + 1).map_or(text.len(), |(next, _)| *next);
        let value = text.get(from..to).unwrap_or("").trim();
        let key = name.trim_end_matches(':');
        if out.iter().all(|(k, _)| *k != key) {
            out.push((key, value.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Receipt, ReceiptError> {
        Receipt::read(ReceiptPdu {
            text: text.as_bytes(),
            ..ReceiptPdu::default()
        })
    }

    #[test]
    fn appendix_b_text_is_read() {
        let r = read(
            "id:0123456789 sub:001 dlvrd:001 submit date:2612071410 done date:2612071411 \
             stat:DELIVRD err:000 text:Hello there",
        )
        .unwrap();
        assert_eq!(r.id.as_str(), "0123456789");
        assert_eq!(r.state, MessageState::Delivered);
        assert_eq!(r.error, None);
        let r = read("id:AB12 sub:1 dlvrd:0 submit date:2612071410 done date:2612071411 stat:UNDELIV err:011 Text:stop: id:9 stat:DELIVRD").unwrap();
        assert_eq!(
            r.id.as_str(),
            "AB12",
            "a text that looks like fields is text"
        );
        assert_eq!(r.state, MessageState::Undeliverable);
        assert_eq!(r.error.as_deref(), Some("11"));
    }

    #[test]
    fn smscs_that_differ_in_the_details_are_read_alike() {
        for text in [
            "ID:7 SUB:001 DLVRD:001 SUBMIT DATE:2612071410 DONE DATE:2612071411 STAT:DELIVRD ERR:000",
            "id:7  stat:delivrd",
            "id:7 sub:001 dlvrd:001 submit date:261207141000 done date:261207141100 stat:DELIVERED err:0 text:",
            "stat:DELIVRD id:7",
        ] {
            let r = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (r.id.as_str(), r.state, r.error),
                ("7", MessageState::Delivered, None),
                "{text}"
            );
        }
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let r = Receipt::read(ReceiptPdu {
            text: b"id:1 stat:DELIVRD err:000",
            receipted_message_id: Some("0000001F\0"),
            message_state: Some(5),
            network_error_code: Some([3, 0, 6]),
        })
        .unwrap();
        assert_eq!(r.id.as_str(), "0000001F");
        assert_eq!(r.state, MessageState::Undeliverable);
        assert_eq!(r.error.as_deref(), Some("6"));
        // TLVs alone (an empty short_message).
        let r = Receipt::read(ReceiptPdu {
            receipted_message_id: Some("abc"),
            message_state: Some(2),
            ..ReceiptPdu::default()
        })
        .unwrap();
        assert_eq!(r.state, MessageState::Delivered);
    }

    #[test]
    fn a_receipt_without_an_id_or_a_state_is_refused_by_name() {
        assert_eq!(read("stat:DELIVRD"), Err(ReceiptError::NoId));
        assert_eq!(read(""), Err(ReceiptError::NoId));
        assert!(matches!(
            read("id: stat:DELIVRD"),
            Err(ReceiptError::BadId(IdError::Empty))
        ));
        assert!(
            matches!(read("id:1 stat:GONE"), Err(ReceiptError::NoState(s)) if s.contains("GONE"))
        );
        assert!(matches!(read("id:1"), Err(ReceiptError::NoState(_))));
        let long = format!("id:{} stat:DELIVRD", "1".repeat(70));
        assert!(matches!(
            read(&long),
            Err(ReceiptError::BadId(IdError::TooLong(70)))
        ));
        // Bytes that are not text do not panic.
        let r = Receipt::read(ReceiptPdu {
            text: &[
                0xff, 0xfe, b'i', b'd', b':', b'1', b' ', 0x80, b's', b't', b'a', b't', b':', b'D',
                b'E', b'L', b'I', b'V', b'R', b'D',
            ],
            ..ReceiptPdu::default()
        });
        assert!(r.is_ok() || r.is_err());
        let junk: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        let _ = Receipt::read(ReceiptPdu {
            text: &junk,
            ..ReceiptPdu::default()
        });
    }

    #[test]
    fn states_map_to_our_statuses() {
        use MessageState::*;
        assert_eq!(Delivered.ours(None), Some((Status::Delivered, None)));
        assert_eq!(Enroute.ours(None), Some((Status::Sent, None)));
        assert_eq!(Accepted.ours(None), Some((Status::Sent, None)));
        assert_eq!(
            Expired.ours(None),
            Some((Status::Undelivered, Some(Reason::Expired)))
        );
        assert_eq!(
            Undeliverable.ours(Some(Reason::NotSmsCapable)),
            Some((Status::Undelivered, Some(Reason::NotSmsCapable)))
        );
        assert_eq!(
            Rejected.ours(None),
            Some((Status::Failed, Some(Reason::UnknownCarrierError)))
        );
        assert_eq!(Unknown.ours(None), None);
        for code in 1..=9 {
            let state = MessageState::from_code(code).unwrap();
            assert_eq!(state.code(), code);
            assert_eq!(MessageState::from_stat(state.stat()), Some(state));
        }
        assert_eq!(MessageState::from_code(0), None);
        assert_eq!(MessageState::from_code(10), None);
    }

    #[test]
    fn the_simulators_text_reads_back() {
        let r = Receipt {
            id: SmscId::parse("5f3a").unwrap(),
            state: MessageState::Undeliverable,
            error: Some("11".into()),
        };
        let text = r.text("2612071410", "2612071411", "Hi id:9 stat:DELIVRD");
        assert_eq!(read(&text).unwrap(), r, "{text}");
    }
}
