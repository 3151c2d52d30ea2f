//! Smart encoding: replaces look-alike Unicode characters with GSM-7 ones, so that a body
//! pasted from a word processor is not billed as UCS-2 for one curly quote.
//!
//! The table follows the list carriers publish for this feature (curly quotes, primes, dashes,
//! ellipsis, Unicode spaces, full-width ASCII, …). It is opt-in: the sender decides, because the
//! body that arrives is then not byte-for-byte what was typed.

use std::borrow::Cow;

use serde::Serialize;

use crate::encoding::{SegmentCount, count};

/// The GSM-7 replacement of one character, or `None` when smart encoding leaves it alone.
///
/// An empty replacement removes the character (zero-width and soft-hyphen characters).
pub fn replacement(c: char) -> Option<&'static str> {
    let r = match c {
        // Double quotes and guillemets.
        '\u{00AB}' | '\u{00BB}' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}'
        | '\u{02BA}' | '\u{02EE}' | '\u{2033}' | '\u{2036}' | '\u{275D}' | '\u{275E}'
        | '\u{276E}' | '\u{276F}' | '\u{301D}' | '\u{301E}' | '\u{301F}' | '\u{FF02}' => "\"",
        // Single quotes, apostrophes, primes, accents used as quotes, and the backtick.
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{2035}'
        | '\u{2039}' | '\u{203A}' | '\u{02B9}' | '\u{02BB}' | '\u{02BC}' | '\u{02BD}'
        | '\u{02BE}' | '\u{02BF}' | '\u{02C8}' | '\u{02CA}' | '\u{02CB}' | '\u{0060}'
        | '\u{00B4}' | '\u{275B}' | '\u{275C}' | '\u{FF07}' => "'",
        // Hyphens, dashes and minus signs.
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2043}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => "-",
        '\u{2026}' => "...",
        '\u{2024}' => ".",
        '\u{2025}' => "..",
        '\u{203C}' => "!!",
        '\u{2047}' => "??",
        '\u{2048}' => "?!",
        '\u{2049}' => "!?",
        '\u{01C3}' => "!",
        '\u{037E}' => ";",
        '\u{02D0}' | '\u{02F8}' | '\u{A789}' => ":",
        '\u{2044}' | '\u{2215}' => "/",
        '\u{2216}' | '\u{29F5}' | '\u{29F9}' | '\u{FE68}' => "\\",
        '\u{02C6}' | '\u{02C4}' | '\u{2038}' => "^",
        '\u{02DC}' | '\u{2053}' => "~",
        '\u{02C2}' | '\u{2329}' | '\u{27E8}' => "<",
        '\u{02C3}' | '\u{232A}' | '\u{27E9}' => ">",
        '\u{00A6}' | '\u{2223}' | '\u{01C0}' => "|",
        '\u{2022}' | '\u{2023}' | '\u{2219}' => "-",
        '\u{00D7}' => "x",
        // Non-breaking and other Unicode spaces become a plain space.
        '\u{00A0}'
        | '\u{2000}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{3000}'
        | '\u{1680}' => " ",
        // Invisible characters that only cost money.
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' => "",
        // Line and paragraph separators.
        '\u{2028}' | '\u{2029}' => "\n",
        // Full-width ASCII forms (U+FF01..U+FF5E) map onto ASCII, which is then counted as usual.
        '\u{FF01}'..='\u{FF5E}' => return fullwidth(c),
        _ => return None,
    };
    Some(r)
}

/// Maps a full-width ASCII form to its ASCII character, as a static string.
fn fullwidth(c: char) -> Option<&'static str> {
    const PRINTABLE: &str = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ\
                             [\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    let index = (c as u32).checked_sub(0xFF01)? as usize;
    let ascii = PRINTABLE.get(index..index + 1)?;
    // The full-width backtick becomes an apostrophe: a backtick is not GSM-7 either.
    Some(if ascii == "`" { "'" } else { ascii })
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
        assert_eq!(s.text, "\"Hello\" - it's 5 o'clock... see you!");
        assert_eq!(s.before.encoding, Encoding::Ucs2);
        assert_eq!(s.after.encoding, Encoding::Gsm7);
    }

    #[test]
    fn fullwidth_ascii_maps_to_ascii() {
        assert_eq!(smart_encode("ＡＢＣ１２３！～｀"), "ABC123!~'");
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
