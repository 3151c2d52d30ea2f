//! A message as the `submit_sm`s that carry it: split exactly where `sms-core` splits it (so
//! the parts sent are the segments billed; an escape or a surrogate pair is never cut), in
//! GSM-7 (`data_coding` 0, packed or one septet per octet, as the connection says) or UCS-2
//! (`data_coding` 8, UTF-16 big-endian, so a character outside the BMP is its surrogate pair),
//! with a concatenation header (UDH, 8-bit reference) or the SAR TLVs.

use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use sms_core::encoding::{Encoding, count, split};

/// `data_coding` for the SMSC's default alphabet (GSM-7).
pub const DATA_CODING_DEFAULT: u8 = 0x00;
/// `data_coding` for UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;
/// `esm_class`'s UDH indicator.
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// Most octets in a `short_message` that reaches a handset as one SMS.
pub const MAX_SHORT_MESSAGE: usize = 140;

/// How the parts of a long message are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concatenation {
    /// A user data header in each part (information element 0x00, 8-bit reference).
    #[default]
    Udh,
    /// The `sar_msg_ref_num`, `sar_total_segments` and `sar_segment_seqnum` TLVs.
    Sar,
}

/// How GSM-7 text is written into `short_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gsm7Packing {
    /// One septet per octet (what most SMSCs expect with `data_coding` 0).
    #[default]
    Unpacked,
    /// Septets packed 8 to 7 octets (3GPP TS 23.038), after the header's fill bits.
    Packed,
}

/// A connection's settings for the parts it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartSettings {
    /// How long messages are tied together.
    pub concatenation: Concatenation,
    /// How GSM-7 is written.
    pub gsm7: Gsm7Packing,
}

/// The SAR TLVs of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sar {
    /// `sar_msg_ref_num`: the same for every part of a message.
    pub reference: u16,
    /// `sar_total_segments`.
    pub total: u8,
    /// `sar_segment_seqnum`, from 1.
    pub seq: u8,
}

/// One `submit_sm`'s share of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class` (the UDH indicator when there is a header).
    pub esm_class: u8,
    /// `short_message`: the header, when there is one, then the text.
    pub short_message: Vec<u8>,
    /// The SAR TLVs, with [`Concatenation::Sar`] on a long message.
    pub sar: Option<Sar>,
}

/// Why a body cannot be sent as SMPP parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// Nothing to send.
    #[error("the body is empty")]
    Empty,
    /// More parts than a concatenation header can number.
    #[error("the body needs {0} parts (at most 255)")]
    TooManyParts(usize),
    /// A character `sms-core` counted as GSM-7 that the GSM-7 encoder does not have (a bug
    /// between the two tables; the test below keeps them in step).
    #[error("GSM-7 cannot encode {0:?}")]
    NotGsm7(char),
}

/// The parts of `body`: one when it fits in one segment, else one per segment `sms-core`
/// counts. `reference` ties a long message's parts together (its low 8 bits in a UDH).
pub fn parts(body: &str, reference: u16, settings: PartSettings) -> Result<Vec<Part>, PartsError> {
    if body.is_empty() {
        return Err(PartsError::Empty);
    }
    let encoding = count(body).encoding;
    let texts = split(body);
    let total = texts.len();
    let total_u8 = u8::try_from(total).map_err(|_| PartsError::TooManyParts(total))?;
    let data_coding = match encoding {
        Encoding::Gsm7 => DATA_CODING_DEFAULT,
        Encoding::Ucs2 => DATA_CODING_UCS2,
    };
    let mut out = Vec::with_capacity(total);
    for (i, text) in texts.into_iter().enumerate() {
        let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
        let (header, sar) = match (total > 1, settings.concatenation) {
            (false, _) => (Vec::new(), None),
            (true, Concatenation::Udh) => (
                // UDHL 5; IE 0x00 (concatenated, 8-bit reference), length 3.
                vec![0x05, 0x00, 0x03, reference.to_be_bytes()[1], total_u8, seq],
                None,
            ),
            (true, Concatenation::Sar) => (
                Vec::new(),
                Some(Sar {
                    reference,
                    total: total_u8,
                    seq,
                }),
            ),
        };
        let mut short_message = header.clone();
        match encoding {
            Encoding::Ucs2 => short_message.extend(text.encode_utf16().flat_map(u16::to_be_bytes)),
            Encoding::Gsm7 => {
                let septets = gsm7_septets(text)?;
                match settings.gsm7 {
                    Gsm7Packing::Unpacked => short_message.extend(septets),
                    Gsm7Packing::Packed => {
                        short_message.extend(pack(&septets, fill_bits(header.len())));
                    }
                }
            }
        }
        out.push(Part {
            data_coding,
            esm_class: if header.is_empty() { 0 } else { ESM_CLASS_UDHI },
            short_message,
            sar,
        });
    }
    Ok(out)
}

/// The GSM-7 septets of `text` (an extension-table character is the escape and its code).
/// The form feed (page break, extension 0x0A) is ours: rusmpp's default table lacks it.
pub fn gsm7_septets(text: &str) -> Result<Vec<u8>, PartsError> {
    let encoder = Gsm7BitUnpacked::new();
    let mut out = Vec::with_capacity(text.len());
    for (i, piece) in text.split('\u{c}').enumerate() {
        if i > 0 {
            out.extend([0x1B, 0x0A]);
        }
        let septets = encoder.encode_to_vec(piece).map_err(|_| {
            let bad = piece
                .chars()
                .find(|c| encoder.encode_to_vec(&c.to_string()).is_err())
                .unwrap_or('\u{fffd}');
            PartsError::NotGsm7(bad)
        })?;
        out.extend(septets);
    }
    Ok(out)
}

/// Fill bits after a header of `header_octets`, so that the first septet starts on a septet
/// boundary (3GPP TS 23.040, 9.2.3.24).
pub(crate) fn fill_bits(header_octets: usize) -> usize {
    (7 - (header_octets * 8) % 7) % 7
}

/// Septets packed into octets, least significant bits first, after `fill` zero bits. Seven
/// spare bits at the end are a CR, not zeros that a handset would show as `@` (3GPP TS 23.038,
/// 6.1.2.3.1).
pub fn pack(septets: &[u8], fill: usize) -> Vec<u8> {
    let mut padded;
    let septets = if (fill + septets.len() * 7) % 8 == 1 {
        padded = septets.to_vec();
        padded.push(0x0D);
        &padded[..]
    } else {
        septets
    };
    let bits = fill + septets.len() * 7;
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (i, septet) in septets.iter().enumerate() {
        let at = fill + i * 7;
        let (byte, shift) = (at / 8, at % 8);
        let value = u16::from(septet & 0x7f) << shift;
        out[byte] |= (value & 0xff) as u8;
        if shift > 1 {
            out[byte + 1] |= (value >> 8) as u8;
        }
    }
    out
}

/// Septets unpacked from octets after `fill` bits: `count` of them.
pub fn unpack(octets: &[u8], fill: usize, count: usize) -> Vec<u8> {
    (0..count)
        .map_while(|i| {
            let at = fill + i * 7;
            let (byte, shift) = (at / 8, at % 8);
            let lo = u16::from(*octets.get(byte)?);
            let hi = u16::from(octets.get(byte + 1).copied().unwrap_or(0));
            Some((((hi << 8 | lo) >> shift) & 0x7f) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `parts` as the reader of mobile-originated messages reads it back.
    fn text_of(parts: &[Part], settings: PartSettings) -> String {
        parts
            .iter()
            .map(|p| {
                crate::mo::read(
                    crate::mo::MoPdu {
                        esm_class: p.esm_class,
                        data_coding: p.data_coding,
                        short_message: &p.short_message,
                        sar: None,
                    },
                    settings.gsm7,
                )
                .unwrap()
                .text
            })
            .collect()
    }

    const SETTINGS: [PartSettings; 4] = [
        PartSettings {
            concatenation: Concatenation::Udh,
            gsm7: Gsm7Packing::Unpacked,
        },
        PartSettings {
            concatenation: Concatenation::Udh,
            gsm7: Gsm7Packing::Packed,
        },
        PartSettings {
            concatenation: Concatenation::Sar,
            gsm7: Gsm7Packing::Unpacked,
        },
        PartSettings {
            concatenation: Concatenation::Sar,
            gsm7: Gsm7Packing::Packed,
        },
    ];

    #[test]
    fn the_parts_sent_are_the_segments_billed_and_read_back_whole() {
        let bodies = [
            "Hi".to_owned(),
            "a".repeat(160),
            "a".repeat(161),
            "Price: 100$ {promo} [today] ~ |now| €5 ^_^ \\o/ é\u{c}\n".repeat(9),
            "Ω".repeat(70),
            "Привет! Как дела? 😀 ".repeat(12),
            format!("{}😀", "x".repeat(66)),
            format!("{}€", "a".repeat(152)),
        ];
        for body in &bodies {
            for settings in SETTINGS {
                let p = parts(body, 0x1234, settings).unwrap();
                let counted = count(body);
                assert_eq!(p.len(), counted.segments, "{body:?} {settings:?}");
                assert_eq!(text_of(&p, settings), *body, "{settings:?}");
                for (i, part) in p.iter().enumerate() {
                    assert!(
                        part.short_message.len() <= 160,
                        "{}",
                        part.short_message.len()
                    );
                    if settings.gsm7 == Gsm7Packing::Packed || part.data_coding == DATA_CODING_UCS2
                    {
                        assert!(
                            part.short_message.len() <= MAX_SHORT_MESSAGE,
                            "{body:?} part {i}: {} octets",
                            part.short_message.len()
                        );
                    }
                    if p.len() > 1 {
                        match settings.concatenation {
                            Concatenation::Udh => {
                                assert_eq!(part.esm_class, ESM_CLASS_UDHI);
                                assert_eq!(
                                    &part.short_message[..6],
                                    &[5, 0, 3, 0x34, p.len() as u8, i as u8 + 1]
                                );
                            }
                            Concatenation::Sar => assert_eq!(
                                part.sar,
                                Some(Sar {
                                    reference: 0x1234,
                                    total: p.len() as u8,
                                    seq: i as u8 + 1
                                })
                            ),
                        }
                    } else {
                        assert_eq!((part.esm_class, part.sar), (0, None));
                    }
                }
            }
        }
    }

    #[test]
    fn a_surrogate_pair_or_an_escape_is_never_cut() {
        // 66 units then an emoji (2 units) crosses the 67-unit boundary: it moves whole.
        let body = format!("{}😀{}", "ж".repeat(66), "ж".repeat(70));
        let p = parts(&body, 1, PartSettings::default()).unwrap();
        let first = &p[0].short_message[6..];
        assert_eq!(first.len(), 66 * 2, "the pair went to the next part");
        // 152 septets then '€' (escape + code) crosses 153: it moves whole.
        let body = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let p = parts(&body, 1, PartSettings::default()).unwrap();
        assert_eq!(p[0].short_message.len(), 6 + 152);
        assert_eq!(&p[1].short_message[6..8], &[0x1B, 0x65]);
    }

    #[test]
    fn gsm7_packs_as_the_specification_shows() {
        // 3GPP TS 23.038's example: "hellohello" packs to E8 32 9B FD 46 97 D9 EC 37.
        let septets = gsm7_septets("hellohello").unwrap();
        assert_eq!(
            pack(&septets, 0),
            vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(unpack(&pack(&septets, 0), 0, 10), septets);
        // After a 6-octet UDH one fill bit: the first septet starts at bit 1.
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(0), 0);
        assert_eq!(unpack(&pack(&septets, 1), 1, 10), septets);
        assert_eq!(pack(&[0x41], 1), vec![0x82]);
        // Seven septets fill 49 bits: the seven spare bits of the last octet are a CR.
        let seven = gsm7_septets("abcdefg").unwrap();
        let packed = pack(&seven, 0);
        assert_eq!(packed.len(), 7);
        assert_eq!(unpack(&packed, 0, 8)[7], 0x0D);
    }

    /// Every character sms-core counts as GSM-7 is one the encoder has, at the same cost.
    #[test]
    fn the_counting_and_the_encoding_share_one_alphabet() {
        for c in (0..=0xFFFFu32).filter_map(char::from_u32) {
            let cost = sms_core::encoding::gsm7_septets(c);
            let encoded = gsm7_septets(&c.to_string()).ok();
            match (cost, encoded) {
                (Some(n), Some(septets)) => assert_eq!(usize::from(n), septets.len(), "{c:?}"),
                (None, None) => {}
                (Some(_), None) => panic!("{c:?} is counted as GSM-7 but cannot be encoded"),
                (None, Some(_)) => {} // sent as UCS-2 anyway: never asked of the encoder
            }
        }
    }

    #[test]
    fn bodies_that_cannot_be_parts_are_refused() {
        assert_eq!(
            parts("", 1, PartSettings::default()),
            Err(PartsError::Empty)
        );
    }
}
