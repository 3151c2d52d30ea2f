//! Our values as `rusmpp` PDUs and back: the `submit_sm` of a [`Part`], the `deliver_sm` of a
//! receipt or a contact's message, and numbers with their TON/NPI. Both ends use it: the
//! adapter writes `submit_sm` and reads `deliver_sm`, the simulator's SMSC the other way round.

use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessageState as State, NetworkErrorCode, Npi, RegisteredDelivery, Ton,
};

use crate::mo::{MoError, MoPart, MoPdu};
use crate::parts::{Gsm7Packing, Part, Sar};
use crate::receipt::{Receipt, ReceiptError, ReceiptPdu};

/// `esm_class` bits 2–5: the message type.
const MESSAGE_TYPE: u8 = 0x3C;
/// Message type "SMSC delivery receipt".
const DELIVERY_RECEIPT: u8 = 0x04;
/// Message type "intermediate delivery notification".
const INTERMEDIATE: u8 = 0x20;

/// A PDU field that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// An address longer than 20 characters, or not ASCII.
    #[error("address {0} does not fit an SMPP address (at most 20 ASCII characters)")]
    Address(String),
    /// A message longer than 255 octets.
    #[error("short_message of {0} octets (at most 255)")]
    ShortMessage(usize),
    /// A receipt with no usable content.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// A contact's message that cannot be read.
    #[error(transparent)]
    Mo(#[from] MoError),
    /// An address that is not a number we can use.
    #[error("{field} {value} is not a phone number or sender")]
    Number {
        /// `source_addr` or `destination_addr`.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// An address and its type of number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// TON.
    pub ton: u8,
    /// NPI.
    pub npi: u8,
    /// The digits (or letters) without a `+`.
    pub addr: String,
}

/// TON international.
pub const TON_INTERNATIONAL: u8 = 1;
/// TON network specific (short codes).
pub const TON_NETWORK_SPECIFIC: u8 = 3;
/// TON alphanumeric.
pub const TON_ALPHANUMERIC: u8 = 5;
/// NPI ISDN (E.164).
pub const NPI_ISDN: u8 = 1;

impl Address {
    /// Our number (E.164 with `+`, a short code's digits, or an alphanumeric sender) as an
    /// SMPP address with its TON/NPI.
    pub fn of(number: &str) -> Result<Address, PduError> {
        let bad = || PduError::Address(sms_core::text::quote(number));
        if let Some(digits) = number.strip_prefix('+') {
            if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            return Ok(Address {
                ton: TON_INTERNATIONAL,
                npi: NPI_ISDN,
                addr: digits.to_owned(),
            });
        }
        if number.is_empty()
            || number.len() > 20
            || !number.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(bad());
        }
        if number.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Address {
                ton: TON_NETWORK_SPECIFIC,
                npi: 0,
                addr: number.to_owned(),
            });
        }
        Ok(Address {
            ton: TON_ALPHANUMERIC,
            npi: 0,
            addr: number.to_owned(),
        })
    }

    /// The number an SMSC's address stands for, as we write numbers: international (and
    /// unknown-type digits long enough to hold a country code) with `+`, short codes and
    /// letters as they are.
    pub fn number(&self) -> String {
        let digits = !self.addr.is_empty() && self.addr.bytes().all(|b| b.is_ascii_digit());
        if digits && (self.ton == TON_INTERNATIONAL || (self.ton == 0 && self.addr.len() > 8)) {
            format!("+{}", self.addr)
        } else {
            self.addr.clone()
        }
    }

    fn c_string(&self) -> Result<COctetString<1, 21>, PduError> {
        COctetString::from_vec(format!("{}\0", self.addr).into_bytes())
            .map_err(|_| PduError::Address(sms_core::text::quote(&self.addr)))
    }
}

/// A relative `validity_period` (`YYMMDDhhmmss000R`) of `seconds`, at most 99 days.
pub fn relative_time(seconds: u32) -> String {
    let s = seconds.min(99 * 86_400 + 86_399);
    let (days, rest) = (s / 86_400, s % 86_400);
    format!(
        "0000{days:02}{:02}{:02}{:02}000R",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Reads a relative `validity_period` back into seconds (years and months as 365 and 30 days).
pub fn read_relative_time(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 16 || b[15] != b'R' || !b[..12].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    Some(n(0) * 365 * 86_400 + n(2) * 30 * 86_400 + n(4) * 86_400 + n(6) * 3600 + n(8) * 60 + n(10))
}

/// What goes in one `submit_sm`.
#[derive(Debug, Clone, Copy)]
pub struct Submit<'a> {
    /// Sender.
    pub from: &'a Address,
    /// Recipient.
    pub to: &'a Address,
    /// The part.
    pub part: &'a Part,
    /// How long the SMSC may keep trying, in seconds.
    pub validity_seconds: Option<u32>,
}

/// The `submit_sm` of one part, asking for a final delivery receipt.
pub fn submit_sm(s: Submit<'_>) -> Result<SubmitSm, PduError> {
    let short_message = OctetString::from_slice(&s.part.short_message)
        .map_err(|_| PduError::ShortMessage(s.part.short_message.len()))?;
    let validity = match s.validity_seconds {
        Some(secs) => {
            EmptyOrFullCOctetString::from_vec(format!("{}\0", relative_time(secs)).into_bytes())
                .unwrap_or_else(|_| EmptyOrFullCOctetString::empty())
        }
        None => EmptyOrFullCOctetString::empty(),
    };
    let mut pdu = SubmitSm::builder()
        .source_addr_ton(Ton::from(s.from.ton))
        .source_addr_npi(Npi::from(s.from.npi))
        .source_addr(s.from.c_string()?)
        .dest_addr_ton(Ton::from(s.to.ton))
        .dest_addr_npi(Npi::from(s.to.npi))
        .destination_addr(s.to.c_string()?)
        .esm_class(EsmClass::from(s.part.esm_class))
        .validity_period(validity)
        .registered_delivery(RegisteredDelivery::from(0x01))
        .data_coding(DataCoding::from(s.part.data_coding))
        .short_message(short_message)
        .build();
    if let Some(sar) = s.part.sar {
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(
            sar.reference,
        ));
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(
            sar.total,
        ));
        pdu.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(sar.seq));
    }
    Ok(pdu)
}

/// A `submit_sm` as the SMSC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Sender.
    pub from: Address,
    /// Recipient.
    pub to: Address,
    /// The part as it came.
    pub part: Part,
    /// Whether a receipt was asked for.
    pub registered_delivery: bool,
    /// `validity_period`, as written.
    pub validity_period: String,
}

/// Reads a `submit_sm`.
pub fn submitted(pdu: &SubmitSm) -> Submitted {
    let mut sar = SarFields::default();
    for tlv in pdu.tlvs() {
        sar.take(tlv.value());
    }
    Submitted {
        from: Address {
            ton: u8::from(pdu.source_addr_ton),
            npi: u8::from(pdu.source_addr_npi),
            addr: pdu.source_addr.as_str().to_owned(),
        },
        to: Address {
            ton: u8::from(pdu.dest_addr_ton),
            npi: u8::from(pdu.dest_addr_npi),
            addr: pdu.destination_addr.as_str().to_owned(),
        },
        part: Part {
            data_coding: u8::from(pdu.data_coding),
            esm_class: u8::from(pdu.esm_class),
            short_message: pdu.short_message().as_ref().to_vec(),
            sar: sar.get().map(|(reference, total, seq)| Sar {
                reference,
                total,
                seq,
            }),
        },
        registered_delivery: u8::from(pdu.registered_delivery) & 0x03 != 0,
        validity_period: pdu.validity_period.as_str().to_owned(),
    }
}

#[derive(Default)]
struct SarFields {
    reference: Option<u16>,
    total: Option<u8>,
    seq: Option<u8>,
}

impl SarFields {
    fn take(&mut self, value: Option<&TlvValue>) {
        match value {
            Some(TlvValue::SarMsgRefNum(r)) => self.reference = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => self.total = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => self.seq = Some(*s),
            _ => {}
        }
    }

    fn get(&self) -> Option<(u16, u8, u8)> {
        Some((self.reference?, self.total?, self.seq?))
    }
}

/// What a `deliver_sm` brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A delivery receipt for a message we sent.
    Receipt {
        /// The recipient of the message it is about (the receipt's `source_addr`).
        contact: String,
        /// The receipt.
        receipt: Receipt,
        /// An intermediate notification rather than a final receipt.
        intermediate: bool,
    },
    /// A contact's message (or part of one).
    Message {
        /// The contact.
        from: String,
        /// Our number.
        to: String,
        /// The text and which part it is.
        part: MoPart,
    },
}

/// Reads a `deliver_sm`; `gsm7` says how this connection's SMSC writes GSM-7.
pub fn delivered(pdu: &DeliverSm, gsm7: Gsm7Packing) -> Result<Delivered, PduError> {
    let esm_class = u8::from(pdu.esm_class);
    let mut sar = SarFields::default();
    let mut receipted: Option<String> = None;
    let mut state: Option<u8> = None;
    let mut network_error: Option<[u8; 3]> = None;
    let mut payload: Option<Vec<u8>> = None;
    for tlv in pdu.tlvs() {
        let value = tlv.value();
        sar.take(value);
        match value {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(e)) => {
                let [hi, lo] = e.error_code.to_be_bytes();
                network_error = Some([u8::from(e.network_type), hi, lo]);
            }
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref().to_vec()),
            _ => {}
        }
    }
    let in_field: &[u8] = pdu.short_message().as_ref();
    let short_message: &[u8] = match &payload {
        Some(p) if in_field.is_empty() => p,
        _ => in_field,
    };
    let source = Address {
        ton: u8::from(pdu.source_addr_ton),
        npi: u8::from(pdu.source_addr_npi),
        addr: pdu.source_addr.as_str().to_owned(),
    };
    let dest = Address {
        ton: u8::from(pdu.dest_addr_ton),
        npi: u8::from(pdu.dest_addr_npi),
        addr: pdu.destination_addr.as_str().to_owned(),
    };
    let kind = esm_class & MESSAGE_TYPE;
    if kind == DELIVERY_RECEIPT || kind == INTERMEDIATE {
        let receipt = Receipt::read(ReceiptPdu {
            text: short_message,
            receipted_message_id: receipted.as_deref(),
            message_state: state,
            network_error_code: network_error,
        })?;
        return Ok(Delivered::Receipt {
            contact: source.number(),
            receipt,
            intermediate: kind == INTERMEDIATE,
        });
    }
    let part = crate::mo::read(
        MoPdu {
            esm_class,
            data_coding: u8::from(pdu.data_coding),
            short_message,
            sar: sar.get(),
        },
        gsm7,
    )?;
    Ok(Delivered::Message {
        from: source.number(),
        to: dest.number(),
        part,
    })
}

/// A `deliver_sm` from `contact` to `ours`, without TLVs.
fn deliver_sm(
    contact: &Address,
    ours: &Address,
    esm_class: u8,
    data_coding: u8,
    short_message: &[u8],
) -> Result<DeliverSm, PduError> {
    let message = OctetString::from_slice(short_message)
        .map_err(|_| PduError::ShortMessage(short_message.len()))?;
    Ok(DeliverSm::builder()
        .source_addr_ton(Ton::from(contact.ton))
        .source_addr_npi(Npi::from(contact.npi))
        .source_addr(contact.c_string()?)
        .dest_addr_ton(Ton::from(ours.ton))
        .dest_addr_npi(Npi::from(ours.npi))
        .destination_addr(ours.c_string()?)
        .esm_class(EsmClass::from(esm_class))
        .data_coding(DataCoding::from(data_coding))
        .short_message(message)
        .build())
}

/// The `deliver_sm` of a receipt: the Appendix B text and the TLVs saying the same.
pub fn receipt_deliver_sm(
    contact: &Address,
    ours: &Address,
    receipt: &Receipt,
    text: &str,
) -> Result<DeliverSm, PduError> {
    let mut pdu = deliver_sm(contact, ours, DELIVERY_RECEIPT, 0, text.as_bytes())?;
    if let Ok(id) = COctetString::from_vec(format!("{}\0", receipt.id).into_bytes()) {
        pdu.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    pdu.push_tlv(MessageDeliveryRequestTlvValue::MessageState(State::from(
        receipt.state.code(),
    )));
    if let Some(code) = receipt.error.as_deref().and_then(|e| e.parse::<u16>().ok()) {
        pdu.push_tlv(MessageDeliveryRequestTlvValue::NetworkErrorCode(
            NetworkErrorCode::new(rusmpp::values::ErrorCodeNetworkType::from(3), code),
        ));
    }
    Ok(pdu)
}

/// The `deliver_sm` of a contact's message part.
pub fn message_deliver_sm(
    contact: &Address,
    ours: &Address,
    part: &Part,
) -> Result<DeliverSm, PduError> {
    let mut pdu = deliver_sm(
        contact,
        ours,
        part.esm_class,
        part.data_coding,
        &part.short_message,
    )?;
    if let Some(sar) = part.sar {
        pdu.push_tlv(MessageDeliveryRequestTlvValue::SarMsgRefNum(sar.reference));
        pdu.push_tlv(MessageDeliveryRequestTlvValue::SarTotalSegments(sar.total));
        pdu.push_tlv(MessageDeliveryRequestTlvValue::SarSegmentSeqnum(sar.seq));
    }
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SmscId;
    use crate::parts::{Concatenation, PartSettings};
    use crate::receipt::MessageState;

    #[test]
    fn numbers_take_their_type() {
        assert_eq!(
            Address::of("+447700900123").unwrap(),
            Address {
                ton: 1,
                npi: 1,
                addr: "447700900123".into()
            }
        );
        assert_eq!(Address::of("12345").unwrap().ton, TON_NETWORK_SPECIFIC);
        assert_eq!(Address::of("Acme").unwrap().ton, TON_ALPHANUMERIC);
        assert!(Address::of("+12a").is_err());
        assert!(Address::of("").is_err());
        assert!(Address::of(&"1".repeat(21)).is_err());
        assert_eq!(
            Address::of("+12015550100").unwrap().number(),
            "+12015550100"
        );
        let unknown_type = Address {
            ton: 0,
            npi: 0,
            addr: "12015550100".into(),
        };
        assert_eq!(unknown_type.number(), "+12015550100");
    }

    #[test]
    fn validity_is_relative_and_reads_back() {
        assert_eq!(relative_time(3600), "000000010000000R");
        assert_eq!(relative_time(36_000), "000000100000000R");
        assert_eq!(relative_time(90_061), "000001010101000R");
        for s in [1, 59, 3600, 36_000, 90_061] {
            assert_eq!(read_relative_time(&relative_time(s)), Some(s));
        }
        assert_eq!(read_relative_time("2612071530000000+"), None);
    }

    #[test]
    fn every_part_of_a_message_is_read_back_by_the_smsc() {
        let body = "Привет! ".repeat(20);
        for concatenation in [Concatenation::Udh, Concatenation::Sar] {
            let parts = crate::parts::parts(
                &body,
                7,
                PartSettings {
                    concatenation,
                    gsm7: Gsm7Packing::Unpacked,
                },
            )
            .unwrap();
            let (from, to) = (
                Address::of("+12015550100").unwrap(),
                Address::of("+12015550123").unwrap(),
            );
            let mut texts = Vec::new();
            for part in &parts {
                let pdu = submit_sm(Submit {
                    from: &from,
                    to: &to,
                    part,
                    validity_seconds: Some(600),
                })
                .unwrap();
                let s = submitted(&pdu);
                assert_eq!((&s.from, &s.to, &s.part), (&from, &to, part));
                assert!(s.registered_delivery);
                assert_eq!(read_relative_time(&s.validity_period), Some(600));
                // The SMSC hands it on as a contact's message would come.
                let mo = message_deliver_sm(&from, &to, &s.part).unwrap();
                let Delivered::Message { part, .. } =
                    delivered(&mo, Gsm7Packing::Unpacked).unwrap()
                else {
                    panic!("not a message")
                };
                texts.push((part.part.unwrap().seq, part.text));
            }
            texts.reverse();
            let whole = crate::mo::assemble(
                u8::try_from(parts.len()).unwrap(),
                texts.iter().map(|(seq, t)| (*seq, t.as_str())),
            );
            assert_eq!(whole.as_deref(), Some(body.as_str()), "{concatenation:?}");
        }
    }

    #[test]
    fn a_receipt_reads_back_from_its_tlvs_and_its_text() {
        let receipt = Receipt {
            id: SmscId::parse("6B3A9F2C").unwrap(),
            state: MessageState::Undeliverable,
            error: Some("1".into()),
        };
        let (contact, ours) = (
            Address::of("+12015550123").unwrap(),
            Address::of("+12015550100").unwrap(),
        );
        let text = receipt.text("2612071530", "2612071531", "hello");
        let pdu = receipt_deliver_sm(&contact, &ours, &receipt, &text).unwrap();
        assert_eq!(
            delivered(&pdu, Gsm7Packing::Unpacked).unwrap(),
            Delivered::Receipt {
                contact: "+12015550123".into(),
                receipt: receipt.clone(),
                intermediate: false,
            }
        );
        // Without the TLVs, the text says the same.
        let mut bare = pdu.clone();
        bare.clear_tlvs();
        assert_eq!(
            delivered(&bare, Gsm7Packing::Unpacked).unwrap(),
            Delivered::Receipt {
                contact: "+12015550123".into(),
                receipt,
                intermediate: false,
            }
        );
    }
}
