//! GSM 03.38 / UCS-2 encoding detection and segment counting, exactly as carriers bill.
//!
//! A message is sent as GSM-7 when every character is in the GSM 03.38 basic table or its
//! extension table; otherwise the whole message is sent as UCS-2 (UTF-16 on the wire).
//!
//! * GSM-7 counts septets: a basic character is one, an extension character is an escape plus
//!   the character, two septets. One segment carries 160 septets; a concatenated message carries
//!   153 per segment (the user-data header takes the rest), and an escape pair is never split.
//! * UCS-2 counts UTF-16 code units: one segment carries 70; a concatenated one 67 per segment,
//!   and a surrogate pair (an emoji, say) is never split.

use serde::Serialize;

/// Septets in a single, unconcatenated GSM-7 message.
pub const GSM7_SINGLE: usize = 160;
/// Septets per segment of a concatenated GSM-7 message.
pub const GSM7_MULTI: usize = 153;
/// UTF-16 code units in a single, unconcatenated UCS-2 message.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 code units per segment of a concatenated UCS-2 message.
pub const UCS2_MULTI: usize = 67;

/// The encoding a carrier uses for a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "message_encoding", rename_all = "lowercase")
)]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet (with its extension table).
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 / UTF-16, used when any character is outside GSM-7.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name carriers and our APIs use: `GSM-7` or `UCS-2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units one unconcatenated segment holds.
    pub fn single_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE,
            Encoding::Ucs2 => UCS2_SINGLE,
        }
    }

    /// Units each segment of a concatenated message holds.
    pub fn multi_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_MULTI,
            Encoding::Ucs2 => UCS2_MULTI,
        }
    }

    /// Units a character costs in this encoding (septets or UTF-16 code units).
    ///
    /// For GSM-7 the caller must know the character is in the GSM alphabet.
    fn cost(self, c: char) -> usize {
        match self {
            Encoding::Gsm7 => usize::from(gsm7_septets(c).unwrap_or(1)),
            Encoding::Ucs2 => c.len_utf16(),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Class of each ASCII byte: 0 = not in GSM-7, 1 = basic table, 2 = extension table.
///
/// ASCII is most of what salespeople type, so it gets a table instead of a `match`.
const ASCII_CLASS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = match b {
            b'\n' | b'\r' | b' ' | b'!' | b'"' | b'#' | b'$' | b'%' | b'&' | b'\'' => 1,
            b'('..=b'?' | b'@' | b'A'..=b'Z' | b'_' | b'a'..=b'z' => 1,
            // Form feed (page break) and the bracket family live in the extension table.
            0x0C | b'^' | b'{' | b'}' | b'\\' | b'[' | b'~' | b']' | b'|' => 2,
            // Backtick, tab, DEL and the other control characters are not in GSM 03.38.
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Septets a character costs in GSM-7: `Some(1)` for the basic table, `Some(2)` for the
/// extension table (escape + character), `None` when it is not in GSM 03.38 at all.
#[inline]
pub fn gsm7_septets(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 128 {
        return match ASCII_CLASS[code as usize] {
            0 => None,
            n => Some(n),
        };
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '€' => Some(2),
        _ => None,
    }
}

/// Whether a character can be sent in GSM-7.
#[inline]
pub fn is_gsm7(c: char) -> bool {
    gsm7_septets(c).is_some()
}

/// The billing-relevant facts about a body: encoding, units counted and segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentCount {
    /// Encoding the body will be sent in.
    pub encoding: Encoding,
    /// Units counted: septets for GSM-7, UTF-16 code units for UCS-2.
    pub units: usize,
    /// Segments the carrier will bill (0 for an empty body).
    pub segments: usize,
}

/// A full analysis of a body, for people: the count plus the characters that forced UCS-2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// Encoding the body will be sent in.
    pub encoding: Encoding,
    /// Units counted: septets for GSM-7, UTF-16 code units for UCS-2.
    pub characters: usize,
    /// Segments the carrier will bill (0 for an empty body).
    pub segments: usize,
    /// Distinct characters outside GSM-7, in order of first appearance (empty for GSM-7).
    pub non_gsm: Vec<char>,
    /// Units that still fit in the last segment before another one is billed (for an empty
    /// body, a whole single segment).
    pub left_in_segment: usize,
}

/// Counts encoding, units and segments of `text` in one pass (two for UCS-2 bodies).
///
/// This is the hot path: it allocates nothing.
pub fn count(text: &str) -> SegmentCount {
    match count_in(Encoding::Gsm7, text) {
        Some(c) => c,
        None => count_in(Encoding::Ucs2, text).unwrap_or(SegmentCount {
            encoding: Encoding::Ucs2,
            units: 0,
            segments: 0,
        }),
    }
}

/// Counts `text` in `encoding`; `None` when `text` cannot be sent in it (GSM-7 only).
///
/// Segments are packed greedily, which is optimal for a sequence whose items cost one or two
/// units: a pair only moves to the next segment when it does not fit in the current one.
fn count_in(encoding: Encoding, text: &str) -> Option<SegmentCount> {
    let multi = encoding.multi_limit();
    let mut units = 0usize;
    // Segments and fill of the current segment, as if the message were concatenated.
    let mut multi_segments = 1usize;
    let mut fill = 0usize;
    for c in text.chars() {
        let cost = match encoding {
            Encoding::Gsm7 => usize::from(gsm7_septets(c)?),
            Encoding::Ucs2 => c.len_utf16(),
        };
        units += cost;
        if fill + cost > multi {
            multi_segments += 1;
            fill = 0;
        }
        fill += cost;
    }
    let segments = match units {
        0 => 0,
        u if u <= encoding.single_limit() => 1,
        _ => multi_segments,
    };
    Some(SegmentCount {
        encoding,
        units,
        segments,
    })
}

/// Analyses `text` for a person: encoding, units, segments and the characters forcing UCS-2.
pub fn analyze(text: &str) -> Analysis {
    let counted = count(text);
    let mut non_gsm = Vec::new();
    if counted.encoding == Encoding::Ucs2 {
        for c in text.chars().filter(|c| !is_gsm7(*c)) {
            if !non_gsm.contains(&c) {
                non_gsm.push(c);
            }
        }
    }
    let left_in_segment = match counted.segments {
        0 | 1 => counted
            .encoding
            .single_limit()
            .saturating_sub(counted.units),
        _ => {
            let last = split(text)
                .last()
                .map_or(0, |p| units_in(counted.encoding, p));
            counted.encoding.multi_limit().saturating_sub(last)
        }
    };
    Analysis {
        encoding: counted.encoding,
        characters: counted.units,
        segments: counted.segments,
        non_gsm,
        left_in_segment,
    }
}

/// Splits `text` into the segments a carrier sends, never splitting an escape pair or a
/// surrogate pair (both are single `char`s here, so a split always falls between chars).
pub fn split(text: &str) -> Vec<&str> {
    let counted = count(text);
    if counted.segments <= 1 {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![text]
        };
    }
    let encoding = counted.encoding;
    let limit = encoding.multi_limit();
    let mut parts = Vec::with_capacity(counted.segments);
    let mut start = 0;
    let mut fill = 0;
    for (i, c) in text.char_indices() {
        let cost = encoding.cost(c);
        if fill + cost > limit {
            parts.push(&text[start..i]);
            start = i;
            fill = 0;
        }
        fill += cost;
    }
    parts.push(&text[start..]);
    parts
}

/// Units `text` costs in `encoding` (septets or UTF-16 code units).
pub fn units_in(encoding: Encoding, text: &str) -> usize {
    text.chars().map(|c| encoding.cost(c)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_in_segment_follows_the_billing_boundaries() {
        let left = |t: &str| {
            let a = analyze(t);
            (a.segments, a.left_in_segment)
        };
        assert_eq!(left(""), (0, 160));
        assert_eq!(left(&"a".repeat(160)), (1, 0));
        // 161 septets: 153 + 8, so 145 more fit before a third segment.
        assert_eq!(left(&"a".repeat(161)), (2, 145));
        // An escape pair costs two septets.
        assert_eq!(left("€"), (1, 158));
        // One emoji: UCS-2, two code units of 70.
        assert_eq!(left("hi 😀"), (1, 65));
        assert_eq!(left(&"é".repeat(70)), (1, 90));
        assert_eq!(left(&"ж".repeat(71)), (2, 63));
    }

    fn seg(text: &str) -> (Encoding, usize, usize) {
        let c = count(text);
        (c.encoding, c.units, c.segments)
    }

    #[test]
    fn basic_table_is_complete() {
        // The 128 positions of GSM 03.38, less the escape (0x1B), as Unicode.
        let basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
        assert_eq!(basic.chars().count(), 127);
        for c in basic.chars() {
            assert_eq!(gsm7_septets(c), Some(1), "{c:?} is in the basic table");
        }
    }

    #[test]
    fn extension_table_costs_two_septets() {
        for c in "\u{0C}^{}\\[~]|€".chars() {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?} is in the extension table");
        }
    }

    #[test]
    fn common_non_gsm_characters() {
        for c in "`\táçêíóúÀ’“”—…😀你\u{A0}".chars() {
            assert_eq!(gsm7_septets(c), None, "{c:?} is not GSM-7");
        }
    }

    #[test]
    fn published_examples() {
        let cases: &[(String, Encoding, usize, usize)] = &[
            (String::new(), Encoding::Gsm7, 0, 0),
            ("a".repeat(160), Encoding::Gsm7, 160, 1),
            ("a".repeat(161), Encoding::Gsm7, 161, 2),
            ("a".repeat(306), Encoding::Gsm7, 306, 2),
            ("a".repeat(307), Encoding::Gsm7, 307, 3),
            ("]".repeat(80), Encoding::Gsm7, 160, 1),
            ("]".repeat(81), Encoding::Gsm7, 162, 2),
            // 76 escape pairs fill 152 septets; the 77th would be split, so it moves on.
            ("]".repeat(153), Encoding::Gsm7, 306, 3),
            ("€".repeat(76), Encoding::Gsm7, 152, 1),
            (format!("{}]", "a".repeat(152)), Encoding::Gsm7, 154, 1),
            (format!("{}]", "a".repeat(159)), Encoding::Gsm7, 161, 2),
            // 152 septets then a pair: it cannot straddle the 153 boundary, so three segments.
            (
                format!("{}]{}", "a".repeat(152), "a".repeat(152)),
                Encoding::Gsm7,
                306,
                3,
            ),
            ("é".repeat(70), Encoding::Gsm7, 70, 1),
            ("ç".repeat(70), Encoding::Ucs2, 70, 1),
            ("ç".repeat(71), Encoding::Ucs2, 71, 2),
            ("ç".repeat(134), Encoding::Ucs2, 134, 2),
            ("ç".repeat(135), Encoding::Ucs2, 135, 3),
            ("😀".repeat(35), Encoding::Ucs2, 70, 1),
            ("😀".repeat(36), Encoding::Ucs2, 72, 2),
            // 66 units then an emoji: the surrogate pair moves to the second segment.
            (
                format!("{}😀{}", "ç".repeat(66), "ç".repeat(10)),
                Encoding::Ucs2,
                78,
                2,
            ),
            (format!("{}😀", "a".repeat(152)), Encoding::Ucs2, 154, 3),
            ("Hello, world!".into(), Encoding::Gsm7, 13, 1),
            ("Price: 5€".into(), Encoding::Gsm7, 10, 1),
            ("Don’t".into(), Encoding::Ucs2, 5, 1),
        ];
        for (text, encoding, units, segments) in cases {
            assert_eq!(
                seg(text),
                (*encoding, *units, *segments),
                "body of {} chars starting {:?}",
                text.chars().count(),
                text.chars().take(3).collect::<String>()
            );
        }
    }

    #[test]
    fn analysis_lists_each_forcing_character_once_in_order() {
        let a = analyze("Don’t “go” — ok’");
        assert_eq!(a.encoding, Encoding::Ucs2);
        assert_eq!(a.non_gsm, vec!['’', '“', '”', '—']);
        assert_eq!(analyze("plain {text}").non_gsm, Vec::<char>::new());
    }

    #[test]
    fn split_keeps_pairs_whole() {
        let text = format!("{}]{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&text);
        assert_eq!(
            parts,
            vec!["a".repeat(152).as_str(), &format!("]{}", "b".repeat(10))]
        );
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("hi"), vec!["hi"]);
    }
}
