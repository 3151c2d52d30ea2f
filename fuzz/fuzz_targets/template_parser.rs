//! Any text as a template: parsing never panics, a template that parses renders within its
//! limit against any context, and errors quote a bounded part of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sms_core::template::{Context, Template};

fuzz_target!(|source: &str| {
    match Template::parse(source) {
        Ok(t) => {
            let mut c = Context::default();
            c.contact.first_name = source.chars().take(50).collect();
            c.lead.custom.insert(source.chars().take(20).collect(), source.to_owned());
            if let Ok(out) = t.render(&c, 4000) {
                assert!(out.chars().count() <= 4000);
            }
        }
        Err(e) => assert!(e.to_string().len() < 500, "{e}"),
    }
});
