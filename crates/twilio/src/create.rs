//! The Create-Message call (`POST …/Messages.json`): its form, built by the dispatcher and read
//! by the carrier simulator, in one place.

use crate::ApiError;

/// Most characters in a body (Twilio's limit on the concatenated message).
pub const MAX_BODY_CHARS: usize = 1600;
/// Most attachments on one message.
pub const MAX_MEDIA_URLS: usize = 10;
/// The longest `ValidityPeriod`, in seconds (10 hours, also the default).
pub const MAX_VALIDITY_PERIOD: u32 = 36_000;

/// A Create-Message request, as a form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateMessage {
    /// `To`: the recipient, E.164.
    pub to: String,
    /// `From`: one of the account's numbers, E.164.
    pub from: String,
    /// `Body` (may be empty when there is media).
    pub body: String,
    /// `StatusCallback`: where the carrier posts the message's statuses.
    pub status_callback: Option<String>,
    /// `ValidityPeriod`: seconds the message may wait in the carrier's queue (1 to 36,000).
    pub validity_period: Option<u32>,
    /// `MediaUrl`, repeated: the attachments' public URLs.
    pub media_urls: Vec<String>,
}

impl CreateMessage {
    /// The form's fields, in Twilio's names (`MediaUrl` once per attachment).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("To", self.to.clone()),
            ("From", self.from.clone()),
            ("Body", self.body.clone()),
        ];
        if let Some(url) = &self.status_callback {
            params.push(("StatusCallback", url.clone()));
        }
        if let Some(v) = self.validity_period {
            params.push(("ValidityPeriod", v.to_string()));
        }
        params.extend(self.media_urls.iter().map(|u| ("MediaUrl", u.clone())));
        params
    }

    /// Reads a form as Twilio does: the error it answers (HTTP 400 with its code) for a
    /// request it would refuse whatever the account. Unknown fields are ignored, as Twilio
    /// ignores them; a field given twice counts once (the first), except `MediaUrl`.
    pub fn from_params<K, V>(params: &[(K, V)]) -> Result<CreateMessage, ApiError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| v.as_ref().to_owned())
        };
        let to = field("To").unwrap_or_default();
        if to.is_empty() {
            return Err(ApiError::new(
                400,
                21604,
                "A 'To' phone number is required.",
            ));
        }
        let from = field("From").unwrap_or_default();
        if from.is_empty() {
            return Err(ApiError::new(
                400,
                21603,
                "A 'From' phone number is required.",
            ));
        }
        let media_urls: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.as_ref() == "MediaUrl")
            .map(|(_, v)| v.as_ref().to_owned())
            .collect();
        if media_urls.len() > MAX_MEDIA_URLS {
            return Err(ApiError::new(
                400,
                21623,
                format!(
                    "Too many media URLs: {} (at most {MAX_MEDIA_URLS}).",
                    media_urls.len()
                ),
            ));
        }
        let body = field("Body").unwrap_or_default();
        if body.is_empty() && media_urls.is_empty() {
            return Err(ApiError::new(400, 21602, "Message body is required."));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(ApiError::new(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            ));
        }
        let validity_period = match field("ValidityPeriod") {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n @ 1..=MAX_VALIDITY_PERIOD) => Some(n),
                _ => {
                    return Err(ApiError::new(
                        400,
                        21624,
                        format!(
                            "Invalid validity period value {}: an integer from 1 to 36000 \
                             seconds.",
                            sms_core::text::quote(&v)
                        ),
                    ));
                }
            },
        };
        let status_callback = field("StatusCallback").filter(|u| !u.is_empty());
        Ok(CreateMessage {
            to,
            from,
            body,
            status_callback,
            validity_period,
            media_urls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> CreateMessage {
        CreateMessage {
            to: "+14155550100".into(),
            from: "+12015550101".into(),
            body: "Hi & welcome = 100%".into(),
            status_callback: Some("https://sms.example/webhooks/twilio/status?org=o&mid=m".into()),
            validity_period: Some(3600),
            media_urls: vec![
                "https://a.example/1.png".into(),
                "https://a.example/2.png".into(),
            ],
        }
    }

    #[test]
    fn a_form_reads_back_as_it_was_built() {
        let m = message();
        assert_eq!(CreateMessage::from_params(&m.params()).unwrap(), m);
        let plain = CreateMessage {
            status_callback: None,
            validity_period: None,
            media_urls: Vec::new(),
            ..message()
        };
        assert_eq!(CreateMessage::from_params(&plain.params()).unwrap(), plain);
        // Through the wire encoding too.
        let encoded = crate::webhook::build_form(m.params().iter().map(|(k, v)| (*k, v.as_str())));
        let decoded = crate::webhook::parse_form(encoded.as_bytes()).unwrap();
        assert_eq!(CreateMessage::from_params(&decoded).unwrap(), m);
    }

    type Form = Vec<(&'static str, String)>;

    #[test]
    fn what_twilio_refuses_is_refused_with_its_code() {
        let code = |edit: &dyn Fn(&mut Form)| {
            let mut p = message().params();
            edit(&mut p);
            CreateMessage::from_params(&p).err().map(|e| e.code)
        };
        assert_eq!(code(&|p| p.retain(|(k, _)| *k != "To")), Some(21604));
        assert_eq!(code(&|p| p.retain(|(k, _)| *k != "From")), Some(21603));
        assert_eq!(
            code(&|p| p.retain(|(k, _)| *k != "Body" && *k != "MediaUrl")),
            Some(21602)
        );
        assert_eq!(code(&|p| p.retain(|(k, _)| *k != "Body")), None);
        assert_eq!(
            code(&|p| p.push(("Body", "x".repeat(2000)))),
            None,
            "the first Body counts"
        );
        assert_eq!(
            code(&|p| {
                p.retain(|(k, _)| *k != "Body");
                p.push(("Body", "é".repeat(1601)));
            }),
            Some(21617)
        );
        assert_eq!(
            code(&|p| p.extend((0..8).map(|i| ("MediaUrl", format!("https://a.example/{i}.png"))))),
            None,
            "10 attachments"
        );
        assert_eq!(
            code(&|p| p.extend((0..9).map(|i| ("MediaUrl", format!("https://a.example/{i}.png"))))),
            Some(21623)
        );
        for bad in ["0", "36001", "-1", "1.5", "", "ten"] {
            assert_eq!(
                code(&|p| {
                    p.retain(|(k, _)| *k != "ValidityPeriod");
                    p.push(("ValidityPeriod", bad.to_owned()));
                }),
                Some(21624),
                "{bad:?}"
            );
        }
    }
}
