//! Carrier keywords in inbound messages: opt-out, opt-in and help.
//!
//! A message is a keyword only when it is exactly one keyword: case does not matter, and
//! surrounding whitespace and trailing punctuation are ignored ("Stop.", " STOP! "). A sentence
//! that contains a keyword ("stop please", "don't stop") is an ordinary reply.

use serde::Serialize;

/// What an inbound body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    /// STOP and its synonyms: no more messages from this organization.
    OptOut,
    /// START, YES, UNSTOP: messages may flow again.
    OptIn,
    /// HELP, INFO: the organization's help text is sent back.
    Help,
}

/// Opt-out keywords (the carrier list).
pub const OPT_OUT: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
/// Opt-in keywords.
pub const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];
/// Help keywords.
pub const HELP: [&str; 2] = ["HELP", "INFO"];

/// Classifies an inbound body; `None` for an ordinary message.
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
    // The longest keyword has 11 letters; anything longer is not one (and is not uppercased).
    if word.is_empty() || word.len() > 11 {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    let is = |list: &[&str]| list.contains(&upper.as_str());
    if is(&OPT_OUT) {
        Some(Keyword::OptOut)
    } else if is(&OPT_IN) {
        Some(Keyword::OptIn)
    } else if is(&HELP) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_in_any_case() {
        for (list, kind) in [
            (&OPT_OUT[..], Keyword::OptOut),
            (&OPT_IN[..], Keyword::OptIn),
            (&HELP[..], Keyword::Help),
        ] {
            for k in list {
                assert_eq!(classify(k), Some(kind), "{k}");
                assert_eq!(classify(&k.to_lowercase()), Some(kind), "{k}");
                assert_eq!(classify(&format!("  {k}!!\n")), Some(kind), "{k}");
            }
        }
        assert_eq!(classify("Stop."), Some(Keyword::OptOut));
        assert_eq!(classify("sToP ?"), Some(Keyword::OptOut));
    }

    #[test]
    fn sentences_and_near_misses_are_not_keywords() {
        for body in [
            "stop please",
            "please stop",
            "don't stop",
            "STOPP",
            "S TOP",
            "",
            "   ",
            "!STOP",
            "stop😀",
            "yes please",
            "ｓｔｏｐ",
        ] {
            assert_eq!(classify(body), None, "{body:?}");
        }
    }
}
