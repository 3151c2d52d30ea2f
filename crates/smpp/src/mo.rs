//! Mobile-originated messages as they arrive in `deliver_sm`: the user data header (any
//! information elements; the concatenation ones, 8- or 16-bit reference, are read and the rest
//! skipped), or the SAR TLVs, and the text in the `data_coding` it came in. Parts are put back
//! together by [`assemble`] from whatever order they were stored in.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::parts::{
    DATA_CODING_DEFAULT, DATA_CODING_UCS2, ESM_CLASS_UDHI, Gsm7Packing, fill_bits, unpack,
};

/// `data_coding` for IA5 (ASCII).
pub const DATA_CODING_IA5: u8 = 0x01;
/// `data_coding` for Latin-1.
pub const DATA_CODING_LATIN1: u8 = 0x03;

/// Which part of a long message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartOf {
    /// The reference shared by its parts (8-bit references widened).
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

/// Why a mobile-originated `deliver_sm` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoError {
    /// The header says it is longer than the message.
    #[error("the user data header ({declared} octets) is longer than the message ({len})")]
    HeaderTooLong {
        /// What the header's length octet says.
        declared: usize,
        /// The message's length.
        len: usize,
    },
    /// An information element runs past the header.
    #[error("information element {iei:#04x} runs past the user data header")]
    ElementOverrun {
        /// Its identifier.
        iei: u8,
    },
    /// A concatenation element that numbers its part 0, or past the total.
    #[error("part {seq} of {total} is not a part")]
    BadPartNumber {
        /// The part number.
        seq: u8,
        /// The total.
        total: u8,
    },
    /// A `data_coding` we do not take text in (binary, or a reserved value).
    #[error("data_coding {0:#04x} is not text we read")]
    DataCoding(u8),
    /// UCS-2 of an odd number of octets.
    #[error("UCS-2 text of an odd number of octets ({0})")]
    OddUcs2(usize),
}

/// A mobile-originated message (or part) as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPart {
    /// Which part it is, when it is one.
    pub part: Option<PartOf>,
    /// Its text.
    pub text: String,
}

/// What a `deliver_sm` carries, as the codec read it.
#[derive(Debug, Clone, Copy)]
pub struct MoPdu<'a> {
    /// `esm_class`.
    pub esm_class: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `short_message` (or `message_payload`).
    pub short_message: &'a [u8],
    /// The SAR TLVs, when present: reference, total, seq.
    pub sar: Option<(u16, u8, u8)>,
}

/// Reads a mobile-originated message or part; `gsm7` says how the connection's SMSC writes
/// GSM-7.
pub fn read(pdu: MoPdu<'_>, gsm7: Gsm7Packing) -> Result<MoPart, MoError> {
    let data = pdu.short_message;
    let (mut part, header_len) = if pdu.esm_class & ESM_CLASS_UDHI != 0 && !data.is_empty() {
        let declared = usize::from(data[0]) + 1;
        if declared > data.len() {
            return Err(MoError::HeaderTooLong {
                declared,
                len: data.len(),
            });
        }
        (concatenation(&data[1..declared])?, declared)
    } else {
        (None, 0)
    };
    if part.is_none()
        && let Some((reference, total, seq)) = pdu.sar
    {
        part = Some(checked(reference, total, seq)?);
    }
    let payload = &data[header_len..];
    let text = match pdu.data_coding {
        DATA_CODING_DEFAULT => {
            let septets = match gsm7 {
                Gsm7Packing::Unpacked => payload.to_vec(),
                Gsm7Packing::Packed => {
                    let fill = fill_bits(header_len);
                    let bits = (payload.len() * 8).saturating_sub(fill);
                    let mut s = unpack(payload, fill, bits / 7);
                    // Seven spare bits hold a CR (3GPP TS 23.038).
                    if bits.is_multiple_of(7) && s.last() == Some(&0x0D) {
                        s.pop();
                    }
                    s
                }
            };
            gsm7_text(&septets)
        }
        DATA_CODING_IA5 => payload.iter().map(|b| char::from(b & 0x7f)).collect(),
        DATA_CODING_LATIN1 => payload.iter().map(|b| char::from(*b)).collect(),
        DATA_CODING_UCS2 => {
            if !payload.len().is_multiple_of(2) {
                return Err(MoError::OddUcs2(payload.len()));
            }
            let units: Vec<u16> = payload
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        other => return Err(MoError::DataCoding(other)),
    };
    Ok(MoPart { part, text })
}

/// The concatenation element of a header, if it has one; other elements are skipped.
fn concatenation(mut header: &[u8]) -> Result<Option<PartOf>, MoError> {
    let mut found = None;
    while let [iei, len, rest @ ..] = header {
        let len = usize::from(*len);
        let Some(value) = rest.get(..len) else {
            return Err(MoError::ElementOverrun { iei: *iei });
        };
        match (*iei, value) {
            (0x00, [reference, total, seq]) => {
                found = Some(checked(u16::from(*reference), *total, *seq)?);
            }
            (0x08, [hi, lo, total, seq]) => {
                found = Some(checked(u16::from_be_bytes([*hi, *lo]), *total, *seq)?);
            }
            _ => {}
        }
        header = &rest[len..];
    }
    if let [iei] = header {
        return Err(MoError::ElementOverrun { iei: *iei });
    }
    Ok(found)
}

fn checked(reference: u16, total: u8, seq: u8) -> Result<PartOf, MoError> {
    if seq == 0 || seq > total {
        return Err(MoError::BadPartNumber { seq, total });
    }
    Ok(PartOf {
        reference,
        total,
        seq,
    })
}

/// GSM-7 septets as text: the encoder's table read backwards; a code with no character (an
/// escape to nothing, a national table's) is U+FFFD.
pub fn gsm7_text(septets: &[u8]) -> String {
    static TABLE: LazyLock<HashMap<Vec<u8>, char>> = LazyLock::new(|| {
        (0..=0xFFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| sms_core::encoding::is_gsm7(*c))
            .filter_map(|c| {
                crate::parts::gsm7_septets(&c.to_string())
                    .ok()
                    .map(|s| (s, c))
            })
            .collect()
    });
    let mut out = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let width = if septets[i] == 0x1B && i + 1 < septets.len() {
            2
        } else {
            1
        };
        let code = &septets[i..i + width];
        out.push(TABLE.get(code).copied().unwrap_or('\u{fffd}'));
        i += width;
    }
    out
}

/// The whole text of a long message from its stored parts, in any order, once every part of
/// `total` is there (a part stored twice counts once); `None` while one is missing.
pub fn assemble<'a>(total: u8, parts: impl IntoIterator<Item = (u8, &'a str)>) -> Option<String> {
    let mut slots: Vec<Option<&str>> = vec![None; usize::from(total)];
    for (seq, text) in parts {
        if let Some(slot) = usize::from(seq)
            .checked_sub(1)
            .and_then(|i| slots.get_mut(i))
        {
            slot.get_or_insert(text);
        }
    }
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|t| t.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::{Concatenation, PartSettings, parts};

    #[test]
    fn parts_we_send_are_read_back_in_any_order_and_any_setting() {
        let body = "Привет! STOP? 😀 ".repeat(10);
        let latin = "Meet at 5pm {room} [B] ~ €2 — ok? ".repeat(12);
        for body in [body.as_str(), latin.as_str(), "STOP"] {
            for concatenation in [Concatenation::Udh, Concatenation::Sar] {
                for gsm7 in [Gsm7Packing::Unpacked, Gsm7Packing::Packed] {
                    let sent = parts(
                        body,
                        0x0102,
                        PartSettings {
                            concatenation,
                            gsm7,
                        },
                    )
                    .unwrap();
                    let mut read_parts: Vec<MoPart> = sent
                        .iter()
                        .map(|p| {
                            read(
                                MoPdu {
                                    esm_class: p.esm_class,
                                    data_coding: p.data_coding,
                                    short_message: &p.short_message,
                                    sar: p.sar.map(|s| (s.reference, s.total, s.seq)),
                                },
                                gsm7,
                            )
                            .unwrap()
                        })
                        .collect();
                    read_parts.reverse();
                    if sent.len() == 1 {
                        assert_eq!(read_parts[0].part, None);
                        assert_eq!(read_parts[0].text, body);
                        continue;
                    }
                    let total = read_parts[0].part.unwrap().total;
                    let whole = assemble(
                        total,
                        read_parts
                            .iter()
                            .map(|p| (p.part.unwrap().seq, p.text.as_str())),
                    );
                    assert_eq!(whole.as_deref(), Some(body), "{concatenation:?} {gsm7:?}");
                }
            }
        }
    }

    #[test]
    fn a_header_with_other_elements_and_a_16_bit_reference_is_read() {
        // A port-addressing element (0x05) before a 16-bit concatenation element (0x08).
        let mut sm = vec![
            12, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x08, 0x04, 0xAB, 0xCD, 3, 2,
        ];
        sm.extend(b"Hi");
        let part = read(
            MoPdu {
                esm_class: 0x40,
                data_coding: 0,
                short_message: &sm,
                sar: None,
            },
            Gsm7Packing::Unpacked,
        )
        .unwrap();
        assert_eq!(
            part.part,
            Some(PartOf {
                reference: 0xABCD,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(part.text, "Hi");
    }

    #[test]
    fn missing_and_repeated_parts() {
        assert_eq!(assemble(3, [(3, "c"), (1, "a")]), None);
        assert_eq!(
            assemble(3, [(3, "c"), (1, "a"), (2, "b"), (2, "x")]).as_deref(),
            Some("abc")
        );
        assert_eq!(
            assemble(2, [(0, "z"), (3, "z"), (1, "a"), (2, "b")]).as_deref(),
            Some("ab")
        );
    }

    #[test]
    fn malformed_user_data_is_refused_by_name() {
        let pdu = |esm_class, data_coding, sm: &'static [u8]| MoPdu {
            esm_class,
            data_coding,
            short_message: sm,
            sar: None,
        };
        let r = |p| read(p, Gsm7Packing::Unpacked);
        assert_eq!(
            r(pdu(0x40, 0, &[9, 0, 3, 1])),
            Err(MoError::HeaderTooLong {
                declared: 10,
                len: 4
            })
        );
        assert_eq!(
            r(pdu(0x40, 0, &[4, 0, 3, 1, 2])),
            Err(MoError::ElementOverrun { iei: 0 })
        );
        assert_eq!(r(pdu(0x40, 0, &[2, 0x70, 0])).unwrap().part, None);
        assert_eq!(
            r(pdu(0x40, 0, &[1, 0x70])),
            Err(MoError::ElementOverrun { iei: 0x70 })
        );
        assert_eq!(
            r(pdu(0x40, 0, &[5, 0, 3, 1, 2, 3])),
            Err(MoError::BadPartNumber { seq: 3, total: 2 })
        );
        assert_eq!(
            r(pdu(0x40, 0, &[5, 0, 3, 1, 0, 0])),
            Err(MoError::BadPartNumber { seq: 0, total: 0 })
        );
        assert_eq!(r(pdu(0, 4, b"\x00\x01")), Err(MoError::DataCoding(4)));
        assert_eq!(r(pdu(0, 8, b"\x00")), Err(MoError::OddUcs2(1)));
        // A UDH indicator on an empty message, an escape at the end: no panic.
        assert_eq!(r(pdu(0x40, 0, b"")).unwrap().text, "");
        assert_eq!(r(pdu(0, 0, &[0x41, 0x1B])).unwrap().text, "A\u{fffd}");
        for coding in [0u8, 1, 3, 8] {
            let junk: Vec<u8> = (0..=255u8).collect();
            let _ = read(
                MoPdu {
                    esm_class: 0x40,
                    data_coding: coding,
                    short_message: &junk,
                    sar: None,
                },
                Gsm7Packing::Packed,
            );
        }
    }
}
