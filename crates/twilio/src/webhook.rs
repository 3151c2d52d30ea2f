//! Twilio's webhooks as typed values: the status callback and the incoming message, parsed
//! from (and, for the simulator, built into) the form Twilio POSTs. Everything the receiver
//! acts on is checked here once: sids of the right shape, numbers and URLs of bounded length,
//! no control characters where none belong, statuses and error codes we know.

use sms_core::text::{self, Lines, quote};

/// Largest form accepted. Twilio's are a few KB; 64 KiB leaves room for 10 media URLs.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Longest phone number field (`From`, `To`): short codes, E.164, and what carriers put there.
pub const MAX_NUMBER_CHARS: usize = 64;
/// Longest media URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest media content type.
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;
/// Most media on one message (Twilio's limit).
pub const MAX_MEDIA: usize = 10;

/// Why a webhook form cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The body is not `application/x-www-form-urlencoded` UTF-8.
    #[error("the body is not a UTF-8 form")]
    NotAForm,
    /// A required parameter is missing or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A parameter is not of the form it must have.
    #[error("{field} is invalid: {why}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// Why.
        why: String,
    },
    /// A parameter is too long or holds characters it may not.
    #[error(transparent)]
    Field(#[from] text::FieldError),
}

/// Parses a form body into its (name, value) pairs, in order; repeated names are kept.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(WebhookError::Invalid {
            field: "body",
            why: format!("larger than {MAX_FORM_BYTES} bytes"),
        });
    }
    std::str::from_utf8(body).map_err(|_| WebhookError::NotAForm)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Percent-decoding can yield bytes that are not UTF-8; form_urlencoded replaces them with
    // U+FFFD, which is kept: the text is stored as it arrived, minus what cannot be stored.
    Ok(pairs)
}

/// Builds a form body from pairs.
pub fn build_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn required<'a>(
    pairs: &'a [(String, String)],
    name: &'static str,
) -> Result<&'a str, WebhookError> {
    get(pairs, name).ok_or(WebhookError::Missing(name))
}

/// A sid: two letters that name its kind and 32 letters or digits (`SM…`, `MM…`, `AC…`).
fn sid(field: &'static str, value: &str, prefixes: &[&str]) -> Result<String, WebhookError> {
    let ok = value.len() == 34
        && prefixes.iter().any(|p| value.starts_with(p))
        && value[2..].bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(WebhookError::Invalid {
            field,
            why: format!("{} is not a {} sid", quote(value), prefixes.join(" or ")),
        })
    }
}

fn number(field: &'static str, value: &str) -> Result<String, WebhookError> {
    text::check(field, value, MAX_NUMBER_CHARS, Lines::Single)?;
    Ok(value.trim().to_owned())
}

/// A message's status as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// `accepted` (a Messaging Service took it).
    Accepted,
    /// `scheduled`.
    Scheduled,
    /// `queued`.
    Queued,
    /// `sending`.
    Sending,
    /// `sent`.
    Sent,
    /// `delivered`.
    Delivered,
    /// `undelivered`.
    Undelivered,
    /// `failed`.
    Failed,
    /// `read` (WhatsApp and RCS read receipts).
    Read,
    /// `canceled`.
    Canceled,
    /// `partially_delivered` (an MMS some of whose parts arrived).
    PartiallyDelivered,
    /// `receiving` / `received` (inbound).
    Received,
    /// A status Twilio may add later: acknowledged, not acted on.
    Other,
}

impl MessageStatus {
    /// The status named `s`; [`MessageStatus::Other`] for names we do not know.
    pub fn parse(s: &str) -> MessageStatus {
        match s {
            "accepted" => MessageStatus::Accepted,
            "scheduled" => MessageStatus::Scheduled,
            "queued" => MessageStatus::Queued,
            "sending" => MessageStatus::Sending,
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "undelivered" => MessageStatus::Undelivered,
            "failed" => MessageStatus::Failed,
            "read" => MessageStatus::Read,
            "canceled" => MessageStatus::Canceled,
            "partially_delivered" => MessageStatus::PartiallyDelivered,
            "receiving" | "received" => MessageStatus::Received,
            _ => MessageStatus::Other,
        }
    }

    /// Twilio's name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Accepted => "accepted",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Read => "read",
            MessageStatus::Canceled => "canceled",
            MessageStatus::PartiallyDelivered => "partially_delivered",
            MessageStatus::Received => "received",
            MessageStatus::Other => "other",
        }
    }

    /// Our status for it; `None` for statuses we do not track.
    ///
    /// Twilio's `queued` is not tracked: the dispatcher reports `queued` itself when it takes
    /// the message on, before calling the carrier, so the callback would only repeat it.
    /// Twilio's own `accepted` and `scheduled` are Messaging Service states we never use, and
    /// `canceled` by the carrier is what it says: a callback cannot cancel (only the scheduler
    /// does, before the message is handed on).
    pub fn ours(self) -> Option<sms_core::Status> {
        use sms_core::Status as S;
        Some(match self {
            MessageStatus::Sending => S::Sending,
            MessageStatus::Sent => S::Sent,
            MessageStatus::Delivered | MessageStatus::Read => S::Delivered,
            MessageStatus::Undelivered | MessageStatus::PartiallyDelivered => S::Undelivered,
            MessageStatus::Failed => S::Failed,
            MessageStatus::Accepted
            | MessageStatus::Scheduled
            | MessageStatus::Queued
            | MessageStatus::Canceled
            | MessageStatus::Received
            | MessageStatus::Other => return None,
        })
    }
}

/// A status callback: what happened to a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// `MessageSid` (`SM…` or `MM…`).
    pub message_sid: String,
    /// `AccountSid` (`AC…`).
    pub account_sid: String,
    /// `MessageStatus`.
    pub status: MessageStatus,
    /// `ErrorCode`, when the message failed.
    pub error_code: Option<u32>,
    /// `From`, our number.
    pub from: String,
    /// `To`, the contact.
    pub to: String,
}

impl StatusCallback {
    /// Reads a callback from its form.
    pub fn from_form(pairs: &[(String, String)]) -> Result<Self, WebhookError> {
        let error_code = match get(pairs, "ErrorCode") {
            None => None,
            Some(code) => Some(code.parse::<u32>().map_err(|_| WebhookError::Invalid {
                field: "ErrorCode",
                why: format!("{} is not a number", quote(code)),
            })?),
        };
        Ok(StatusCallback {
            message_sid: sid("MessageSid", required(pairs, "MessageSid")?, &["SM", "MM"])?,
            account_sid: sid("AccountSid", required(pairs, "AccountSid")?, &["AC"])?,
            status: MessageStatus::parse(required(pairs, "MessageStatus")?),
            error_code: error_code.filter(|c| *c != 0),
            from: number("From", get(pairs, "From").unwrap_or(""))?,
            to: number("To", get(pairs, "To").unwrap_or(""))?,
        })
    }

    /// The form Twilio posts for it.
    pub fn to_form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("MessageSid", self.message_sid.clone()),
            ("SmsSid", self.message_sid.clone()),
            ("AccountSid", self.account_sid.clone()),
            ("From", self.from.clone()),
            ("To", self.to.clone()),
            ("MessageStatus", self.status.as_str().to_owned()),
            ("SmsStatus", self.status.as_str().to_owned()),
            ("ApiVersion", crate::API_VERSION.to_owned()),
        ];
        if let Some(code) = self.error_code {
            form.push(("ErrorCode", code.to_string()));
        }
        form
    }
}

/// An attachment of an incoming MMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `MediaUrlN`: where the carrier hosts it.
    pub url: String,
    /// `MediaContentTypeN`.
    pub content_type: String,
}

/// An incoming message: a contact (or a short code) texted one of our numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// `MessageSid`.
    pub message_sid: String,
    /// `AccountSid`.
    pub account_sid: String,
    /// `From`: the contact, or a short code.
    pub from: String,
    /// `To`: our number.
    pub to: String,
    /// `Body`, as the carrier sent it (it may hold characters we cannot store; see
    /// [`IncomingMessage::storable_body`]).
    pub body: String,
    /// `NumSegments`.
    pub num_segments: u32,
    /// `MediaUrlN` / `MediaContentTypeN`.
    pub media: Vec<Media>,
}

impl IncomingMessage {
    /// Reads a message from its form.
    pub fn from_form(pairs: &[(String, String)]) -> Result<Self, WebhookError> {
        let num_media: usize = match get(pairs, "NumMedia") {
            None => 0,
            Some(n) => n.parse().map_err(|_| WebhookError::Invalid {
                field: "NumMedia",
                why: format!("{} is not a number", quote(n)),
            })?,
        };
        if num_media > MAX_MEDIA {
            return Err(WebhookError::Invalid {
                field: "NumMedia",
                why: format!("{num_media} media; at most {MAX_MEDIA}"),
            });
        }
        let mut media = Vec::with_capacity(num_media);
        for &(url_field, type_field) in &MEDIA_FIELDS[..num_media] {
            let Some(url) = get(pairs, url_field) else {
                continue;
            };
            text::check(url_field, url, MAX_URL_CHARS, Lines::Single)?;
            let content_type = get(pairs, type_field).unwrap_or("");
            text::check(
                type_field,
                content_type,
                MAX_CONTENT_TYPE_CHARS,
                Lines::Single,
            )?;
            media.push(Media {
                url: url.to_owned(),
                content_type: content_type.to_owned(),
            });
        }
        let num_segments = match get(pairs, "NumSegments") {
            None => 1,
            Some(n) => n.parse().map_err(|_| WebhookError::Invalid {
                field: "NumSegments",
                why: format!("{} is not a number", quote(n)),
            })?,
        };
        Ok(IncomingMessage {
            message_sid: sid("MessageSid", required(pairs, "MessageSid")?, &["SM", "MM"])?,
            account_sid: sid("AccountSid", required(pairs, "AccountSid")?, &["AC"])?,
            from: number("From", required(pairs, "From")?)?,
            to: number("To", required(pairs, "To")?)?,
            body: get(pairs, "Body").unwrap_or("").to_owned(),
            num_segments,
            media,
        })
    }

    /// The body with what cannot be stored (NUL and other control characters; tabs and line
    /// breaks are text) replaced with U+FFFD, and how many characters were replaced. A message
    /// is never refused for its text: it is the contact's, and may be a STOP.
    pub fn storable_body(&self) -> (String, usize) {
        text::sanitize(&self.body, Lines::Multi)
    }

    /// The form Twilio posts for it.
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = vec![
            ("MessageSid".into(), self.message_sid.clone()),
            ("SmsSid".into(), self.message_sid.clone()),
            ("SmsMessageSid".into(), self.message_sid.clone()),
            ("AccountSid".into(), self.account_sid.clone()),
            ("From".into(), self.from.clone()),
            ("To".into(), self.to.clone()),
            ("Body".into(), self.body.clone()),
            ("NumMedia".into(), self.media.len().to_string()),
            ("NumSegments".into(), self.num_segments.to_string()),
            ("SmsStatus".into(), "received".into()),
            ("ApiVersion".into(), crate::API_VERSION.into()),
        ];
        for (i, m) in self.media.iter().enumerate() {
            form.push((format!("MediaUrl{i}"), m.url.clone()));
            form.push((format!("MediaContentType{i}"), m.content_type.clone()));
        }
        form
    }
}

/// `MediaUrlN` and `MediaContentTypeN` for N in 0..10.
const MEDIA_FIELDS: [(&str, &str); MAX_MEDIA] = [
    ("MediaUrl0", "MediaContentType0"),
    ("MediaUrl1", "MediaContentType1"),
    ("MediaUrl2", "MediaContentType2"),
    ("MediaUrl3", "MediaContentType3"),
    ("MediaUrl4", "MediaContentType4"),
    ("MediaUrl5", "MediaContentType5"),
    ("MediaUrl6", "MediaContentType6"),
    ("MediaUrl7", "MediaContentType7"),
    ("MediaUrl8", "MediaContentType8"),
    ("MediaUrl9", "MediaContentType9"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "SM0123456789abcdef0123456789abcdef";
    const AC: &str = "AC0123456789abcdef0123456789abcdef";

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn status_callbacks_round_trip() {
        let cb = StatusCallback {
            message_sid: SM.into(),
            account_sid: AC.into(),
            status: MessageStatus::Undelivered,
            error_code: Some(30007),
            from: "+12015550100".into(),
            to: "+12015550123".into(),
        };
        let form: Vec<(String, String)> = cb
            .to_form()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(StatusCallback::from_form(&form), Ok(cb));
    }

    #[test]
    fn incoming_messages_round_trip_and_keep_their_text() {
        let m = IncomingMessage {
            message_sid: SM.into(),
            account_sid: AC.into(),
            from: "+12015550123".into(),
            to: "+12015550100".into(),
            body: "STOP\0".into(),
            num_segments: 1,
            media: vec![Media {
                url: "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1".into(),
                content_type: "image/jpeg".into(),
            }],
        };
        let parsed = IncomingMessage::from_form(&m.to_form()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.storable_body(), ("STOP\u{fffd}".to_owned(), 1));
        let body = build_form(m.to_form().iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(body.contains("Body=STOP%00"), "{body}");
        assert_eq!(
            IncomingMessage::from_form(&parse_form(body.as_bytes()).unwrap()),
            Ok(m)
        );
    }

    #[test]
    fn bad_forms_are_refused_with_the_field() {
        let good = [
            ("MessageSid", SM),
            ("AccountSid", AC),
            ("From", "+1"),
            ("To", "+2"),
        ];
        assert!(IncomingMessage::from_form(&pairs(&good)).is_ok());
        let mut missing = good.to_vec();
        missing.retain(|(k, _)| *k != "From");
        assert_eq!(
            IncomingMessage::from_form(&pairs(&missing)),
            Err(WebhookError::Missing("From"))
        );
        let mut bad_sid = good.to_vec();
        bad_sid[0] = ("MessageSid", "SM1");
        assert!(matches!(
            IncomingMessage::from_form(&pairs(&bad_sid)),
            Err(WebhookError::Invalid {
                field: "MessageSid",
                ..
            })
        ));
        let long = "9".repeat(65);
        let mut long_from = good.to_vec();
        long_from[2] = ("From", &long);
        assert!(matches!(
            IncomingMessage::from_form(&pairs(&long_from)),
            Err(WebhookError::Field(text::FieldError::TooLong {
                field: "From",
                ..
            }))
        ));
        let mut many = good.to_vec();
        many.push(("NumMedia", "11"));
        assert!(matches!(
            IncomingMessage::from_form(&pairs(&many)),
            Err(WebhookError::Invalid {
                field: "NumMedia",
                ..
            })
        ));
        assert_eq!(parse_form(b"\xff\xfe"), Err(WebhookError::NotAForm));
        let cb = [
            ("MessageSid", SM),
            ("AccountSid", AC),
            ("MessageStatus", "delivered"),
            ("ErrorCode", "x"),
        ];
        assert!(matches!(
            StatusCallback::from_form(&pairs(&cb)),
            Err(WebhookError::Invalid {
                field: "ErrorCode",
                ..
            })
        ));
    }

    #[test]
    fn statuses() {
        use sms_core::Status;
        assert_eq!(
            MessageStatus::parse("delivered").ours(),
            Some(Status::Delivered)
        );
        assert_eq!(MessageStatus::parse("read").ours(), Some(Status::Delivered));
        assert_eq!(
            MessageStatus::parse("undelivered").ours(),
            Some(Status::Undelivered)
        );
        for ignored in ["queued", "accepted", "scheduled", "canceled", "sparkling"] {
            assert_eq!(MessageStatus::parse(ignored).ours(), None, "{ignored}");
        }
    }
}
