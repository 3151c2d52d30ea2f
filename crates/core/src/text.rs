//! Text that comes from outside: length limits, forbidden characters, and quoting a bad value
//! in an error message without echoing all of it.
//!
//! Every string a caller or a carrier hands us is checked here once, at the edge: PostgreSQL
//! refuses NUL in text, log lines and terminals misbehave on other control characters, and an
//! error that repeats a 100 KB value back overflows gRPC's metadata limit.

use std::fmt;

/// At most this many characters of a bad value appear in an error message.
pub const QUOTE_CHARS: usize = 64;

/// A value as it appears in an error message: Debug-quoted (control characters escaped),
/// at most [`QUOTE_CHARS`] characters of it, then `…` and the length when it is longer.
pub fn quote(value: &str) -> String {
    let total = value.chars().count();
    if total <= QUOTE_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(QUOTE_CHARS).collect();
    format!("{head:?}… ({total} characters)")
}

/// Which characters a field may hold besides printable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no control characters at all (ids, keys, names, numbers).
    Single,
    /// Text that may span lines: `\n`, `\r` and `\t` are allowed (bodies, templates).
    Multi,
}

/// Why a text field cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Longer than the field allows.
    #[error("{field} is {length} characters long; at most {max} are allowed")]
    TooLong {
        /// The field, as the API names it.
        field: &'static str,
        /// Its length, in characters (Unicode scalar values).
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A character the field may not hold (NUL, another control character, an unpaired
    /// surrogate's replacement is fine; a lone `\u{0}` is not).
    #[error("{field} contains {}, which is not allowed (at character {position})", describe(*character))]
    InvalidCharacter {
        /// The field, as the API names it.
        field: &'static str,
        /// The character.
        character: char,
        /// Its position, counting characters from 1.
        position: usize,
    },
}

impl FieldError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            FieldError::TooLong { field, .. } | FieldError::InvalidCharacter { field, .. } => field,
        }
    }

    /// The machine-readable reason: `FIELD_TOO_LONG` or `INVALID_CHARACTER`.
    pub fn reason(&self) -> &'static str {
        match self {
            FieldError::TooLong { .. } => "FIELD_TOO_LONG",
            FieldError::InvalidCharacter { .. } => "INVALID_CHARACTER",
        }
    }
}

/// A character as an error message names it: `U+0000 (NUL)`, `U+001B`, …
fn describe(c: char) -> impl fmt::Display {
    struct Described(char);
    impl fmt::Display for Described {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let name = match self.0 {
                '\0' => " (NUL)",
                '\u{7f}' => " (DEL)",
                '\u{1b}' => " (ESC)",
                '\u{fffe}' | '\u{ffff}' => " (a noncharacter)",
                _ => "",
            };
            write!(f, "U+{:04X}{name}", self.0 as u32)
        }
    }
    Described(c)
}

/// Whether `c` may appear in a field of kind `lines`.
pub fn allowed(c: char, lines: Lines) -> bool {
    match c {
        '\n' | '\r' | '\t' => lines == Lines::Multi,
        // C0 and C1 controls, DEL, and the two noncharacters of every plane's end that some
        // systems treat as byte-order marks gone wrong.
        c if c.is_control() => false,
        c => !matches!(c as u32 & 0xFFFF, 0xFFFE | 0xFFFF),
    }
}

/// Checks that `value` has at most `max` characters and only characters `lines` allows.
pub fn check(field: &'static str, value: &str, max: usize, lines: Lines) -> Result<(), FieldError> {
    let mut length = 0;
    for c in value.chars() {
        length += 1;
        if !allowed(c, lines) {
            return Err(FieldError::InvalidCharacter {
                field,
                character: c,
                position: length,
            });
        }
    }
    if length > max {
        return Err(FieldError::TooLong { field, length, max });
    }
    Ok(())
}

/// Replaces what a field may not hold with U+FFFD, for text we must keep whatever it holds (an
/// inbound message from a carrier); returns the text and how many characters were replaced.
pub fn sanitize(value: &str, lines: Lines) -> (String, usize) {
    let mut replaced = 0;
    let text = value
        .chars()
        .map(|c| {
            if allowed(c, lines) {
                c
            } else {
                replaced += 1;
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect();
    (text, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded_and_escaped() {
        assert_eq!(quote("a\0b"), "\"a\\0b\"");
        let long = "x".repeat(100_000);
        let q = quote(&long);
        assert!(q.len() < 100, "{q}");
        assert!(q.ends_with("… (100000 characters)"));
        assert_eq!(quote(&"é".repeat(64)), format!("{:?}", "é".repeat(64)));
    }

    #[test]
    fn control_characters() {
        assert_eq!(check("body", "hi\n\tthere\r\n", 100, Lines::Multi), Ok(()));
        assert_eq!(
            check("lead_id", "a\nb", 100, Lines::Single),
            Err(FieldError::InvalidCharacter {
                field: "lead_id",
                character: '\n',
                position: 2
            })
        );
        for bad in [
            '\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}', '\u{fffe}',
        ] {
            let e = check("body", &format!("ok{bad}"), 100, Lines::Multi).unwrap_err();
            assert_eq!(e.reason(), "INVALID_CHARACTER", "{bad:?}");
        }
        // Emoji, accents and right-to-left text are text.
        assert_eq!(check("body", "😀 é ש", 100, Lines::Single), Ok(()));
        let e = check("body", "a\0", 100, Lines::Multi).unwrap_err();
        assert_eq!(
            e.to_string(),
            "body contains U+0000 (NUL), which is not allowed (at character 2)"
        );
    }

    #[test]
    fn lengths_count_characters() {
        assert_eq!(check("key", &"é".repeat(200), 200, Lines::Single), Ok(()));
        let e = check("key", &"é".repeat(201), 200, Lines::Single).unwrap_err();
        assert_eq!(
            (e.reason(), e.field(), e.to_string()),
            (
                "FIELD_TOO_LONG",
                "key",
                "key is 201 characters long; at most 200 are allowed".to_owned()
            )
        );
    }

    #[test]
    fn sanitizing_keeps_the_rest() {
        assert_eq!(
            sanitize("a\0b\u{1}c\nd", Lines::Multi),
            ("a\u{fffd}b\u{fffd}c\nd".to_owned(), 2)
        );
        assert_eq!(sanitize("fine", Lines::Multi), ("fine".to_owned(), 0));
    }
}
