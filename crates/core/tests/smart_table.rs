//! Smart encoding is exactly Twilio's table: every character it maps, to exactly what it maps
//! it to, and nothing else. The table in `data/` was written from Twilio's own package by
//! `scripts/twilio-smart-encoding.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use sms_core::smart::{replacement, smart_encode, table};

const TWILIO: &str = include_str!("data/twilio-smart-encoding.tsv");

fn twilio() -> BTreeMap<char, String> {
    TWILIO
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let cp = u32::from_str_radix(fields.next().unwrap(), 16).unwrap();
            let to: String = serde_json::from_str(fields.next().unwrap()).unwrap();
            (char::from_u32(cp).unwrap(), to)
        })
        .collect()
}

#[test]
fn every_code_point_is_mapped_as_twilio_maps_it() {
    let twilio = twilio();
    assert_eq!(twilio.len(), 271, "Twilio's 1.3.0 table has 271 entries");
    let mut differences = Vec::new();
    for code in 0..=0x10FFFFu32 {
        let Some(c) = char::from_u32(code) else {
            continue;
        };
        let ours = replacement(c);
        let theirs = twilio.get(&c).map(String::as_str);
        if ours != theirs {
            differences.push(format!("U+{code:04X}: Twilio {theirs:?}, ours {ours:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert_eq!(table().len(), twilio.len());
}

#[test]
fn a_whole_text_of_table_characters_becomes_the_replacements() {
    let twilio = twilio();
    let typed: String = twilio.keys().collect();
    let expected: String = twilio.values().map(String::as_str).collect();
    assert_eq!(smart_encode(&typed), expected);
}
