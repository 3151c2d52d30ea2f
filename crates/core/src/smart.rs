//! Smart encoding: replaces look-alike Unicode characters with GSM-7 ones, so that a body
//! pasted from a word processor is not billed as UCS-2 for one curly quote.
//!
//! The table is exactly Twilio's: the `SmartEncodingMap` of Twilio's segment calculator
//! (npm `sms-segments-calculator` 1.3.0), which is what Twilio's Messaging Services apply and
//! what customers compare our counts with; every character it maps, to exactly what it maps it
//! to, and nothing else (`tests/smart_table.rs` checks every code point against the package's
//! table, `scripts/twilio-smart-encoding.sh` fetches it). Twilio's choices are kept even where
//! they surprise: a no-break space becomes two spaces, a tab seven spaces, and `×`, `−` and
//! `′` are left alone. It is opt-in: the sender decides, because the body
//! that arrives is then not byte-for-byte what was typed.

use std::borrow::Cow;

use serde::Serialize;

use crate::encoding::{SegmentCount, count};

/// Twilio's table, sorted by character.
const TABLE: [(char, &str); 271] = [
    ('\u{0000}', ""),        // <control>
    ('\u{0003}', ""),        // <control>
    ('\u{0004}', ""),        // <control>
    ('\u{0009}', "       "), // <control>
    ('\u{0010}', ""),        // <control>
    ('\u{0011}', ""),        // <control>
    ('\u{0012}', ""),        // <control>
    ('\u{0013}', ""),        // <control>
    ('\u{0014}', ""),        // <control>
    ('\u{0017}', ""),        // <control>
    ('\u{0019}', ""),        // <control>
    ('\u{0060}', "'"),       // grave accent
    ('\u{0080}', "  "),      // <control>
    ('\u{008D}', "  "),      // <control>
    ('\u{0090}', "  "),      // <control>
    ('\u{009B}', "  "),      // <control>
    ('\u{009F}', "  "),      // <control>
    ('\u{00A0}', "  "),      // no-break space
    ('\u{00AB}', "\""),      // left-pointing double angle quotation mark
    ('\u{00B4}', "'"),       // acute accent
    ('\u{00BB}', "\""),      // right-pointing double angle quotation mark
    ('\u{00BC}', "1/4"),     // vulgar fraction one quarter
    ('\u{00BD}', "1/2"),     // vulgar fraction one half
    ('\u{00BE}', "3/4"),     // vulgar fraction three quarters
    ('\u{00F7}', "/"),       // division sign
    ('\u{01C3}', "!"),       // latin letter retroflex click
    ('\u{0262}', "G"),       // latin letter small capital g
    ('\u{026A}', "I"),       // latin letter small capital i
    ('\u{0274}', "N"),       // latin letter small capital n
    ('\u{0280}', "R"),       // latin letter small capital r
    ('\u{028F}', "Y"),       // latin letter small capital y
    ('\u{0299}', "B"),       // latin letter small capital b
    ('\u{029C}', "H"),       // latin letter small capital h
    ('\u{029F}', "L"),       // latin letter small capital l
    ('\u{02B9}', "'"),       // modifier letter prime
    ('\u{02BA}', "\""),      // modifier letter double prime
    ('\u{02BB}', "'"),       // modifier letter turned comma
    ('\u{02BC}', "'"),       // modifier letter apostrophe
    ('\u{02BD}', "'"),       // modifier letter reversed comma
    ('\u{02C6}', "^"),       // modifier letter circumflex accent
    ('\u{02C8}', "'"),       // modifier letter vertical line
    ('\u{02CA}', "'"),       // modifier letter acute accent
    ('\u{02CB}', "'"),       // modifier letter grave accent
    ('\u{02D0}', ":"),       // modifier letter triangular colon
    ('\u{02D6}', "+"),       // modifier letter plus sign
    ('\u{02DC}', "~"),       // small tilde
    ('\u{02EE}', "\""),      // modifier letter double apostrophe
    ('\u{02F7}', "~"),       // modifier letter low tilde
    ('\u{02F8}', ":"),       // modifier letter raised colon
    ('\u{0302}', "^"),       // combining circumflex accent
    ('\u{0303}', "~"),       // combining tilde
    ('\u{0313}', "'"),       // combining comma above
    ('\u{0314}', "'"),       // combining reversed comma above
    ('\u{0326}', ","),       // combining comma below
    ('\u{0330}', "~"),       // combining tilde below
    ('\u{0332}', "_"),       // combining low line
    ('\u{0334}', "~"),       // combining tilde overlay
    ('\u{0337}', "/"),       // combining short solidus overlay
    ('\u{0338}', "/"),       // combining long solidus overlay
    ('\u{0347}', "="),       // combining equals sign below
    ('\u{1D00}', "A"),       // latin letter small capital a
    ('\u{1D04}', "C"),       // latin letter small capital c
    ('\u{1D05}', "D"),       // latin letter small capital d
    ('\u{1D07}', "E"),       // latin letter small capital e
    ('\u{1D0A}', "J"),       // latin letter small capital j
    ('\u{1D0B}', "K"),       // latin letter small capital k
    ('\u{1D0D}', "M"),       // latin letter small capital m
    ('\u{1D0F}', "O"),       // latin letter small capital o
    ('\u{1D18}', "P"),       // latin letter small capital p
    ('\u{1D1B}', "T"),       // latin letter small capital t
    ('\u{1D1C}', "U"),       // latin letter small capital u
    ('\u{1D20}', "V"),       // latin letter small capital v
    ('\u{1D21}', "W"),       // latin letter small capital w
    ('\u{1D22}', "Z"),       // latin letter small capital z
    ('\u{1DCD}', "^"),       // combining double circumflex above
    ('\u{2000}', "  "),      // en quad
    ('\u{2001}', " "),       // em quad
    ('\u{2002}', "  "),      // en space
    ('\u{2003}', "  "),      // em space
    ('\u{2004}', "  "),      // three-per-em space
    ('\u{2005}', "  "),      // four-per-em space
    ('\u{2006}', "  "),      // six-per-em space
    ('\u{2007}', "  "),      // figure space
    ('\u{2008}', "  "),      // punctuation space
    ('\u{2009}', "  "),      // thin space
    ('\u{200A}', "  "),      // hair space
    ('\u{200B}', ""),        // zero width space
    ('\u{200C}', ""),        // zero width non-joiner
    ('\u{2010}', "-"),       // hyphen
    ('\u{2013}', "-"),       // en dash
    ('\u{2014}', "-"),       // em dash
    ('\u{2015}', "-"),       // horizontal bar
    ('\u{2017}', "_"),       // double low line
    ('\u{2018}', "'"),       // left single quotation mark
    ('\u{2019}', "'"),       // right single quotation mark
    ('\u{201A}', ","),       // single low-9 quotation mark
    ('\u{201B}', "'"),       // single high-reversed-9 quotation mark
    ('\u{201C}', "\""),      // left double quotation mark
    ('\u{201D}', "\""),      // right double quotation mark
    ('\u{201E}', "\""),      // double low-9 quotation mark
    ('\u{201F}', "\""),      // double high-reversed-9 quotation mark
    ('\u{2022}', "-"),       // bullet
    ('\u{2026}', "..."),     // horizontal ellipsis
    ('\u{2028}', " "),       // line separator
    ('\u{2029}', " "),       // paragraph separator
    ('\u{202F}', "  "),      // narrow no-break space
    ('\u{2039}', "<"),       // single left-pointing angle quotation mark
    ('\u{203A}', ">"),       // single right-pointing angle quotation mark
    ('\u{203C}', "!!"),      // double exclamation mark
    ('\u{2043}', "-"),       // hyphen bullet
    ('\u{2044}', "/"),       // fraction slash
    ('\u{204E}', "*"),       // low asterisk
    ('\u{204F}', ";"),       // reversed semicolon
    ('\u{205F}', "  "),      // medium mathematical space
    ('\u{2060}', ""),        // word joiner
    ('\u{20D2}', "|"),       // combining long vertical line overlay
    ('\u{20D3}', "|"),       // combining short vertical line overlay
    ('\u{20E5}', "\\"),      // combining reverse solidus overlay
    ('\u{2215}', "/"),       // division slash
    ('\u{2217}', "*"),       // asterisk operator
    ('\u{2223}', "|"),       // divides
    ('\u{223C}', "~"),       // tilde operator
    ('\u{229B}', "*"),       // circled asterisk operator
    ('\u{239C}', "|"),       // left parenthesis extension
    ('\u{239F}', "|"),       // right parenthesis extension
    ('\u{23B8}', "|"),       // left vertical box line
    ('\u{23B9}', "|"),       // right vertical box line
    ('\u{23BC}', "-"),       // horizontal scan line-7
    ('\u{23BD}', "-"),       // horizontal scan line-9
    ('\u{23D0}', "|"),       // vertical line extension
    ('\u{2722}', "*"),       // four teardrop-spoked asterisk
    ('\u{2723}', "*"),       // four balloon-spoked asterisk
    ('\u{2724}', "*"),       // heavy four balloon-spoked asterisk
    ('\u{2725}', "*"),       // four club-spoked asterisk
    ('\u{2731}', "*"),       // heavy asterisk
    ('\u{2732}', "*"),       // open centre asterisk
    ('\u{2733}', "*"),       // eight spoked asterisk
    ('\u{273A}', "*"),       // sixteen pointed asterisk
    ('\u{273B}', "*"),       // teardrop-spoked asterisk
    ('\u{273C}', "*"),       // open centre teardrop-spoked asterisk
    ('\u{273D}', "*"),       // heavy teardrop-spoked asterisk
    ('\u{2743}', "*"),       // heavy teardrop-spoked pinwheel asterisk
    ('\u{2749}', "*"),       // balloon-spoked asterisk
    ('\u{274A}', "*"),       // eight teardrop-spoked propeller asterisk
    ('\u{274B}', "*"),       // heavy eight teardrop-spoked propeller asterisk
    ('\u{275B}', "'"),       // heavy single turned comma quotation mark ornament
    ('\u{275C}', "'"),       // heavy single comma quotation mark ornament
    ('\u{275D}', "\""),      // heavy double turned comma quotation mark ornament
    ('\u{275E}', "\""),      // heavy double comma quotation mark ornament
    ('\u{2768}', "("),       // medium left parenthesis ornament
    ('\u{2769}', ")"),       // medium right parenthesis ornament
    ('\u{276A}', "("),       // medium flattened left parenthesis ornament
    ('\u{276B}', ")"),       // medium flattened right parenthesis ornament
    ('\u{2774}', "{"),       // medium left curly bracket ornament
    ('\u{2775}', "}"),       // medium right curly bracket ornament
    ('\u{27EE}', "("),       // mathematical left flattened parenthesis
    ('\u{27EF}', ")"),       // mathematical right flattened parenthesis
    ('\u{2982}', ":"),       // z notation type colon
    ('\u{2985}', "("),       // left white parenthesis
    ('\u{2986}', ")"),       // right white parenthesis
    ('\u{29C6}', "*"),       // squared asterisk
    ('\u{29F5}', "\\"),      // reverse solidus operator
    ('\u{29F8}', "/"),       // big solidus
    ('\u{29F9}', "\\"),      // big reverse solidus
    ('\u{3000}', "  "),      // ideographic space
    ('\u{3001}', ","),       // ideographic comma
    ('\u{3002}', "."),       // ideographic full stop
    ('\u{301D}', "\""),      // reversed double prime quotation mark
    ('\u{301E}', "\""),      // double prime quotation mark
    ('\u{A730}', "F"),       // latin letter small capital f
    ('\u{A731}', "S"),       // latin letter small capital s
    ('\u{A789}', ":"),       // modifier letter colon
    ('\u{A78A}', "="),       // modifier letter short equals sign
    ('\u{FE10}', "'"),       // presentation form for vertical comma
    ('\u{FE11}', "'"),       // presentation form for vertical ideographic comma
    ('\u{FE13}', ":"),       // presentation form for vertical colon
    ('\u{FE14}', ";"),       // presentation form for vertical semicolon
    ('\u{FE15}', "!"),       // presentation form for vertical exclamation mark
    ('\u{FE16}', "?"),       // presentation form for vertical question mark
    ('\u{FE50}', ","),       // small comma
    ('\u{FE51}', ","),       // small ideographic comma
    ('\u{FE52}', "."),       // small full stop
    ('\u{FE54}', ";"),       // small semicolon
    ('\u{FE56}', "?"),       // small question mark
    ('\u{FE57}', "!"),       // small exclamation mark
    ('\u{FE59}', "("),       // small left parenthesis
    ('\u{FE5A}', ")"),       // small right parenthesis
    ('\u{FE5B}', "{"),       // small left curly bracket
    ('\u{FE5C}', "}"),       // small right curly bracket
    ('\u{FE5F}', "#"),       // small number sign
    ('\u{FE60}', "&"),       // small ampersand
    ('\u{FE61}', "*"),       // small asterisk
    ('\u{FE62}', "+"),       // small plus sign
    ('\u{FE63}', "-"),       // small hyphen-minus
    ('\u{FE64}', "<"),       // small less-than sign
    ('\u{FE65}', ">"),       // small greater-than sign
    ('\u{FE66}', "="),       // small equals sign
    ('\u{FE68}', "\\"),      // small reverse solidus
    ('\u{FE69}', "$"),       // small dollar sign
    ('\u{FE6A}', "%"),       // small percent sign
    ('\u{FE6B}', "@"),       // small commercial at
    ('\u{FEFF}', ""),        // zero width no-break space
    ('\u{FF01}', "!"),       // fullwidth exclamation mark
    ('\u{FF02}', "\""),      // fullwidth quotation mark
    ('\u{FF03}', "#"),       // fullwidth number sign
    ('\u{FF04}', "$"),       // fullwidth dollar sign
    ('\u{FF05}', "%"),       // fullwidth percent sign
    ('\u{FF06}', "&"),       // fullwidth ampersand
    ('\u{FF07}', "'"),       // fullwidth apostrophe
    ('\u{FF08}', "("),       // fullwidth left parenthesis
    ('\u{FF09}', ")"),       // fullwidth right parenthesis
    ('\u{FF0A}', "*"),       // fullwidth asterisk
    ('\u{FF0B}', "+"),       // fullwidth plus sign
    ('\u{FF0C}', ","),       // fullwidth comma
    ('\u{FF0D}', "-"),       // fullwidth hyphen-minus
    ('\u{FF0E}', "."),       // fullwidth full stop
    ('\u{FF0F}', "/"),       // fullwidth solidus
    ('\u{FF10}', "0"),       // fullwidth digit zero
    ('\u{FF11}', "1"),       // fullwidth digit one
    ('\u{FF12}', "2"),       // fullwidth digit two
    ('\u{FF13}', "3"),       // fullwidth digit three
    ('\u{FF14}', "4"),       // fullwidth digit four
    ('\u{FF15}', "5"),       // fullwidth digit five
    ('\u{FF16}', "6"),       // fullwidth digit six
    ('\u{FF17}', "7"),       // fullwidth digit seven
    ('\u{FF18}', "8"),       // fullwidth digit eight
    ('\u{FF19}', "9"),       // fullwidth digit nine
    ('\u{FF1A}', ":"),       // fullwidth colon
    ('\u{FF1B}', ";"),       // fullwidth semicolon
    ('\u{FF1C}', "<"),       // fullwidth less-than sign
    ('\u{FF1D}', "="),       // fullwidth equals sign
    ('\u{FF1E}', ">"),       // fullwidth greater-than sign
    ('\u{FF1F}', "?"),       // fullwidth question mark
    ('\u{FF20}', "@"),       // fullwidth commercial at
    ('\u{FF21}', "A"),       // fullwidth latin capital letter a
    ('\u{FF22}', "B"),       // fullwidth latin capital letter b
    ('\u{FF23}', "C"),       // fullwidth latin capital letter c
    ('\u{FF24}', "D"),       // fullwidth latin capital letter d
    ('\u{FF25}', "E"),       // fullwidth latin capital letter e
    ('\u{FF26}', "F"),       // fullwidth latin capital letter f
    ('\u{FF27}', "G"),       // fullwidth latin capital letter g
    ('\u{FF28}', "H"),       // fullwidth latin capital letter h
    ('\u{FF29}', "I"),       // fullwidth latin capital letter i
    ('\u{FF2A}', "J"),       // fullwidth latin capital letter j
    ('\u{FF2B}', "K"),       // fullwidth latin capital letter k
    ('\u{FF2C}', "L"),       // fullwidth latin capital letter l
    ('\u{FF2D}', "M"),       // fullwidth latin capital letter m
    ('\u{FF2E}', "N"),       // fullwidth latin capital letter n
    ('\u{FF2F}', "O"),       // fullwidth latin capital letter o
    ('\u{FF30}', "P"),       // fullwidth latin capital letter p
    ('\u{FF31}', "Q"),       // fullwidth latin capital letter q
    ('\u{FF32}', "R"),       // fullwidth latin capital letter r
    ('\u{FF33}', "S"),       // fullwidth latin capital letter s
    ('\u{FF34}', "T"),       // fullwidth latin capital letter t
    ('\u{FF35}', "U"),       // fullwidth latin capital letter u
    ('\u{FF36}', "V"),       // fullwidth latin capital letter v
    ('\u{FF37}', "W"),       // fullwidth latin capital letter w
    ('\u{FF38}', "X"),       // fullwidth latin capital letter x
    ('\u{FF39}', "Y"),       // fullwidth latin capital letter y
    ('\u{FF3A}', "Z"),       // fullwidth latin capital letter z
    ('\u{FF3B}', "["),       // fullwidth left square bracket
    ('\u{FF3C}', "\\"),      // fullwidth reverse solidus
    ('\u{FF3D}', "]"),       // fullwidth right square bracket
    ('\u{FF3E}', "^"),       // fullwidth circumflex accent
    ('\u{FF3F}', "_"),       // fullwidth low line
    ('\u{FF5B}', "{"),       // fullwidth left curly bracket
    ('\u{FF5C}', "|"),       // fullwidth vertical line
    ('\u{FF5D}', "}"),       // fullwidth right curly bracket
    ('\u{FF5E}', "~"),       // fullwidth tilde
    ('\u{FF61}', "."),       // halfwidth ideographic full stop
    ('\u{FF64}', ","),       // halfwidth ideographic comma
];

/// The GSM-7 replacement of one character, or `None` when smart encoding leaves it alone.
///
/// An empty replacement removes the character (zero-width and some control characters).
pub fn replacement(c: char) -> Option<&'static str> {
    TABLE
        .binary_search_by_key(&c, |(from, _)| *from)
        .ok()
        .map(|i| TABLE[i].1)
}

/// Every character smart encoding replaces, with its replacement, in code point order.
pub fn table() -> &'static [(char, &'static str)] {
    &TABLE
}

/// Replaces every look-alike character of `text`; borrows when nothing changes.
pub fn smart_encode(text: &str) -> Cow<'_, str> {
    let Some(first) = text.char_indices().find(|(_, c)| replacement(*c).is_some()) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first.0]);
    for c in text[first.0..].chars() {
        match replacement(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What smart encoding would do to a body: the new text and the segments before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartEncoded {
    /// The body after replacement.
    pub text: String,
    /// Count of the body as typed.
    pub before: SegmentCount,
    /// Count of the body after replacement.
    pub after: SegmentCount,
}

impl SmartEncoded {
    /// Segments saved by smart encoding (never negative: replacements only shrink or keep).
    pub fn segments_saved(&self) -> usize {
        self.before.segments.saturating_sub(self.after.segments)
    }
}

/// Applies smart encoding and reports the segments before and after.
pub fn smart_encoded(text: &str) -> SmartEncoded {
    let after_text = smart_encode(text).into_owned();
    SmartEncoded {
        before: count(text),
        after: count(&after_text),
        text: after_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, is_gsm7};

    #[test]
    fn word_processor_text_becomes_gsm7() {
        let typed = "“Hello” — it’s 5 o‘clock… see\u{00A0}you\u{200B}!";
        let s = smart_encoded(typed);
        // Twilio turns a no-break space into two spaces.
        assert_eq!(s.text, "\"Hello\" - it's 5 o'clock... see  you!");
        assert_eq!(s.before.encoding, Encoding::Ucs2);
        assert_eq!(s.after.encoding, Encoding::Gsm7);
    }

    #[test]
    fn twilios_choices_are_kept() {
        // Full-width capitals and digits map; Twilio's table has no full-width small letters.
        assert_eq!(smart_encode("ＡＢＣ１２３！～ａ"), "ABC123!~ａ");
        assert_eq!(smart_encode("½ ¼ ¾ ÷"), "1/2 1/4 3/4 /");
        assert_eq!(smart_encode("‹a›"), "<a>");
        assert_eq!(smart_encode("a\tb"), "a       b");
        // Left alone, although they look like ASCII.
        for kept in ["×", "−", "′", "‑", "•‣"] {
            assert_eq!(smart_encode(kept), kept.replace('•', "-"), "{kept}");
        }
    }

    #[test]
    fn every_replacement_is_gsm7() {
        for code in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            if let Some(r) = replacement(c) {
                assert!(r.chars().all(is_gsm7), "{c:?} -> {r:?} is not GSM-7");
                assert!(
                    !is_gsm7(c),
                    "{c:?} is already GSM-7 and must not be replaced"
                );
            }
        }
    }

    #[test]
    fn emoji_stays_and_message_stays_ucs2() {
        let s = smart_encoded("Great news — 😀");
        assert_eq!(s.text, "Great news - 😀");
        assert_eq!(s.after.encoding, Encoding::Ucs2);
    }

    #[test]
    fn savings_are_reported() {
        let typed = format!("{}’", "a".repeat(100));
        let s = smart_encoded(&typed);
        assert_eq!(
            (s.before.segments, s.after.segments, s.segments_saved()),
            (2, 1, 1)
        );
        assert!(matches!(smart_encode("plain"), Cow::Borrowed(_)));
    }
}
