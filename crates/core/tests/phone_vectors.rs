//! sms-core reads phone numbers as libphonenumber does: the same validity, E.164, region and
//! type for numbers as people type them (national, international with spaces and
//! punctuation, E.164, the international dialling prefix), with and without a hint region.
//!
//! The vectors were written by libphonenumber itself (its Python port, at the metadata version
//! of the `phonenumber` crate): `scripts/libphonenumber-vectors.py`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sms_core::{PhoneNumber, Region};

const VECTORS: &str = include_str!("data/libphonenumber.json");

#[test]
fn every_reading_matches_libphonenumber() {
    let data: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() > 10_000, "{} cases", cases.len());
    let mut mismatches = Vec::new();
    let mut agreed_errors = 0;
    for case in cases {
        let row = case.as_array().unwrap();
        let text = row[0].as_str().unwrap();
        let hint = row[1].as_str().unwrap();
        let region: Option<Region> = (!hint.is_empty()).then(|| hint.parse().unwrap());
        let ours = PhoneNumber::parse(text, region);
        let expected = if row.len() == 3 {
            None
        } else {
            Some((
                row[2].as_bool().unwrap(),
                row[3].as_str().unwrap().to_owned(),
                row[4].as_str().unwrap().to_owned(),
                row[5].as_str().unwrap().to_owned(),
            ))
        };
        let got = ours.as_ref().ok().map(|n| {
            (
                n.is_valid(),
                n.e164().to_owned(),
                n.region().map(|r| r.to_string()).unwrap_or_default(),
                n.number_type().as_str().to_owned(),
            )
        });
        match (&expected, &got) {
            (None, None) => agreed_errors += 1,
            (Some(e), Some(g)) if e == g => {}
            _ => mismatches.push(format!(
                "{text:?} hint {hint:?}: libphonenumber {expected:?}, ours {got:?} ({ours:?})"
            )),
        }
    }
    assert!(agreed_errors > 100, "{agreed_errors} agreed refusals");
    assert!(
        mismatches.is_empty(),
        "{} of {} readings differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
