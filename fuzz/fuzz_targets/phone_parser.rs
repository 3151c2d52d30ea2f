//! Any text as a phone number, with and without a hint region: no panic, a valid result is in
//! E.164 and reads back as itself, and errors quote a bounded part of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sms_core::{PhoneNumber, Region};

const HINTS: [Option<&str>; 6] = [None, Some("US"), Some("GB"), Some("DE"), Some("FR"), Some("JP")];

fuzz_target!(|data: (u8, &str)| {
    let (hint, text) = data;
    let region: Option<Region> = HINTS[usize::from(hint) % HINTS.len()].map(|r| r.parse().unwrap());
    match PhoneNumber::parse(text, region) {
        Ok(n) => {
            assert!(n.e164().starts_with('+'));
            if n.is_valid() {
                let again = PhoneNumber::parse(n.e164(), None).unwrap();
                assert_eq!(again.e164(), n.e164());
                assert_eq!(again.region(), n.region());
            }
        }
        Err(e) => assert!(e.to_string().len() < 500, "{e}"),
    }
    let _ = sms_core::phone::is_short_code(text);
});
