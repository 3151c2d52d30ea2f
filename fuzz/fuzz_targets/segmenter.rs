//! Any text through the segment counter, the splitter and smart encoding: no panic, the parts
//! rebuild the text, the count agrees with the parts, and smart encoding never makes a body
//! cost more segments in GSM-7 than it did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sms_core::encoding::{self, Encoding};
use sms_core::smart;

fuzz_target!(|text: &str| {
    let counted = encoding::count(text);
    let analysis = encoding::analyze(text);
    assert_eq!(counted.encoding, analysis.encoding);
    assert_eq!(counted.segments, analysis.segments);
    let parts = encoding::split(text);
    assert_eq!(parts.concat(), text);
    assert_eq!(parts.len(), counted.segments);
    let limit = match (counted.encoding, parts.len()) {
        (Encoding::Gsm7, 1) => 160,
        (Encoding::Gsm7, _) => 153,
        (Encoding::Ucs2, 1) => 70,
        (Encoding::Ucs2, _) => 67,
    };
    for p in &parts {
        assert!(encoding::units_in(counted.encoding, p) <= limit);
    }
    let s = smart::smart_encoded(text);
    if s.after.encoding == Encoding::Gsm7 && s.before.encoding == Encoding::Gsm7 {
        assert_eq!(s.text, text, "GSM-7 text has nothing to replace");
    }
    let _ = sms_core::validate_body(text);
    let _ = sms_core::keywords::classify(text);
});
