//! Any bytes as a webhook body: the form parser, the typed status callback and incoming
//! message, and the signature check never panic; a message that parses builds a form that
//! parses back to it, and its storable body holds no control character but line breaks and
//! tabs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sms_twilio::webhook::{self, IncomingMessage, StatusCallback};

fuzz_target!(|body: &[u8]| {
    let Ok(pairs) = webhook::parse_form(body) else {
        return;
    };
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let signature = sms_twilio::signature("token", "https://example.com/hook", borrowed.iter().copied());
    assert!(sms_twilio::verify("token", "https://example.com/hook", &borrowed, &signature));
    let given = String::from_utf8_lossy(body);
    let _ = sms_twilio::verify("token", "https://example.com/hook", &borrowed, &given);
    if let Ok(cb) = StatusCallback::from_form(&pairs) {
        let form: Vec<(String, String)> =
            cb.to_form().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(StatusCallback::from_form(&form).as_ref(), Ok(&cb));
    }
    if let Ok(m) = IncomingMessage::from_form(&pairs) {
        assert_eq!(IncomingMessage::from_form(&m.to_form()).as_ref(), Ok(&m));
        let (text, _) = m.storable_body();
        assert!(text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')));
    }
});
