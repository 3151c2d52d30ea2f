//! The send path's request, parsed once: `SendMessageRequest` into a [`SendCommand`], a send
//! time (`send_at`, `send_at_local`) into a [`When`], a template context into sms-core's.

use sms_core::schedule;
use sms_core::text::{self, Lines};
use sms_core::{PhoneNumber, mms};
use sms_proto::v1::{LocalDateTime, NewAttachment, SendMessageRequest, TemplateContext};

use crate::error::{Common, SendError};
use crate::send::command::{
    Attachment, Content, MAX_CONTENT_TYPE, MAX_CONTEXT_ENTRIES, MAX_CONTEXT_KEY, MAX_CONTEXT_VALUE,
    MAX_CRM_ID, MAX_FILE_NAME, MAX_IDEMPOTENCY_KEY, MAX_TIME_FIELD, MAX_URL, SendCommand, Source,
    When,
};

pub(super) fn line(field: &'static str, value: &str, max: usize) -> Result<(), Common> {
    Ok(text::check(field, value, max, Lines::Single)?)
}

fn lines(field: &'static str, value: &str, max: usize) -> Result<(), Common> {
    Ok(text::check(field, value, max, Lines::Multi)?)
}

pub(super) fn optional(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl TryFrom<SendMessageRequest> for SendCommand {
    type Error = SendError;

    fn try_from(r: SendMessageRequest) -> Result<Self, Self::Error> {
        line("from", &r.from, sms_core::phone::MAX_INPUT_LEN)?;
        line("to", &r.to, sms_core::phone::MAX_INPUT_LEN)?;
        let from = match r.from.trim() {
            "" => None,
            given => Some(PhoneNumber::parse_valid(given, None).map_err(SendError::InvalidSender)?),
        };
        // A national-format recipient is read in the sender's country; without a sender it
        // must be in international form.
        let to = PhoneNumber::parse_valid(&r.to, from.as_ref().and_then(PhoneNumber::region))
            .map_err(SendError::InvalidRecipient)?;
        // The body's characters now; its length once it is final (rendered, smart-encoded).
        lines("body", &r.body, usize::MAX)?;
        line("template_id", &r.template_id, crate::fields::MAX_ID_FIELD)?;
        // Checked whether or not a template uses it: every field of a request is.
        let context = context(r.context.as_ref())?;
        let content = match r.template_id.trim() {
            "" => Content::Body(r.body.clone()),
            id => {
                if !r.body.is_empty() {
                    return Err(SendError::BodyAndTemplate);
                }
                Content::Template {
                    id: crate::fields::parse_id("template_id", id)?,
                    context: Box::new(context),
                }
            }
        };
        line("lead_id", &r.lead_id, MAX_CRM_ID)?;
        line("contact_id", &r.contact_id, MAX_CRM_ID)?;
        line("idempotency_key", &r.idempotency_key, MAX_IDEMPOTENCY_KEY)?;
        let when = when(r.send_at.as_ref(), r.send_at_local.as_ref())?;
        let attachments = attachments(&r.attachments)?;
        let validity_seconds = match r.validity_seconds {
            None => sms_core::MAX_VALIDITY_SECS,
            Some(s) if (1..=sms_core::MAX_VALIDITY_SECS).contains(&s) => s,
            Some(s) => return Err(SendError::ValidityOutOfRange(s)),
        };
        let command = SendCommand {
            fingerprint: [0; 32],
            to,
            from,
            content,
            lead_id: optional(&r.lead_id),
            contact_id: optional(&r.contact_id),
            idempotency_key: optional(&r.idempotency_key),
            when,
            attachments,
            smart_encoding: r.smart_encoding,
            validity_seconds,
            validity_given: r.validity_seconds.is_some(),
        };
        Ok(SendCommand {
            fingerprint: command.compute_fingerprint(),
            ..command
        })
    }
}

/// The send time asked for: an instant, or a local time in a zone (not both). Whether it is
/// in the allowed window depends on the clock, and is checked when the message is accepted.
pub fn when(
    at: Option<&prost_types::Timestamp>,
    local: Option<&LocalDateTime>,
) -> Result<When, SendError> {
    if let Some(l) = local {
        line("send_at_local.date_time", &l.date_time, MAX_TIME_FIELD)?;
        line("send_at_local.time_zone", &l.time_zone, MAX_TIME_FIELD)?;
    }
    let local = local.filter(|l| !l.date_time.is_empty() || !l.time_zone.is_empty());
    match (at, local) {
        (None, None) => Ok(When::Now),
        (Some(_), Some(_)) => Err(SendError::TwoSendTimes),
        (Some(t), None) => Ok(When::At(schedule::instant(t.seconds, t.nanos)?)),
        (None, Some(l)) => {
            let resolved = schedule::resolve_local(&l.date_time, &l.time_zone)?;
            Ok(When::Local {
                at: resolved.at,
                ambiguous: resolved.ambiguous,
                date_time: l.date_time.trim().to_owned(),
                zone: l.time_zone.trim().to_owned(),
            })
        }
    }
}

fn attachments(given: &[NewAttachment]) -> Result<Vec<Attachment>, SendError> {
    if given.len() > mms::MAX_ATTACHMENTS {
        return Err(mms::MmsError::TooManyAttachments { count: given.len() }.into());
    }
    given
        .iter()
        .map(|a| {
            line("attachments.file_name", &a.file_name, MAX_FILE_NAME)?;
            line(
                "attachments.content_type",
                &a.content_type,
                MAX_CONTENT_TYPE,
            )?;
            line("attachments.url", &a.url, MAX_URL)?;
            let source = match a.url.trim() {
                "" => Source::Bytes(a.data.clone()),
                url => Source::Url(url.to_owned()),
            };
            Ok(Attachment {
                file_name: a.file_name.trim().to_owned(),
                content_type: a.content_type.clone(),
                source,
            })
        })
        .collect()
}

/// Checks every field of a template context and converts it (missing parts are empty).
pub fn context(c: Option<&TemplateContext>) -> Result<sms_core::template::Context, Common> {
    use sms_core::template as t;
    let Some(c) = c else {
        return Ok(t::Context::default());
    };
    let v = |field: &'static str, value: &str| -> Result<String, Common> {
        lines(field, value, MAX_CONTEXT_VALUE)?;
        Ok(value.to_owned())
    };
    let map = |field: &'static str,
               m: &std::collections::HashMap<String, String>|
     -> Result<std::collections::BTreeMap<String, String>, Common> {
        if m.len() > MAX_CONTEXT_ENTRIES {
            return Err(Common::TooManyEntries {
                field,
                count: m.len(),
                max: MAX_CONTEXT_ENTRIES,
            });
        }
        m.iter()
            .map(|(k, value)| {
                line(field, k, MAX_CONTEXT_KEY)?;
                lines(field, value, MAX_CONTEXT_VALUE)?;
                Ok((k.clone(), value.clone()))
            })
            .collect()
    };
    let mut out = t::Context::default();
    if let Some(l) = &c.lead {
        let a = l.primary_address.clone().unwrap_or_default();
        out.lead = t::Lead {
            display_name: v("context.lead.display_name", &l.display_name)?,
            name: v("context.lead.name", &l.name)?,
            primary_contact_name: v("context.lead.primary_contact_name", &l.primary_contact_name)?,
            description: v("context.lead.description", &l.description)?,
            url: v("context.lead.url", &l.url)?,
            status_label: v("context.lead.status_label", &l.status_label)?,
            custom: map("context.lead.custom", &l.custom)?,
            primary_address: t::Address {
                address_1: v("context.lead.primary_address.address_1", &a.address_1)?,
                address_2: v("context.lead.primary_address.address_2", &a.address_2)?,
                city: v("context.lead.primary_address.city", &a.city)?,
                state: v("context.lead.primary_address.state", &a.state)?,
                zipcode: v("context.lead.primary_address.zipcode", &a.zipcode)?,
                country: v("context.lead.primary_address.country", &a.country)?,
                country_name: v("context.lead.primary_address.country_name", &a.country_name)?,
            },
            primary_opportunity_custom: map(
                "context.lead.primary_opportunity_custom",
                &l.primary_opportunity_custom,
            )?,
        };
    }
    if let Some(k) = &c.contact {
        out.contact = t::Contact {
            name: v("context.contact.name", &k.name)?,
            first_name: v("context.contact.first_name", &k.first_name)?,
            last_name: v("context.contact.last_name", &k.last_name)?,
            title: v("context.contact.title", &k.title)?,
            phone: v("context.contact.phone", &k.phone)?,
            email: v("context.contact.email", &k.email)?,
            url: v("context.contact.url", &k.url)?,
            custom: map("context.contact.custom", &k.custom)?,
        };
    }
    if let Some(u) = &c.user {
        out.user = t::User {
            from_name: v("context.user.from_name", &u.from_name)?,
            from_email: v("context.user.from_email", &u.from_email)?,
            phone: v("context.user.phone", &u.phone)?,
            email: v("context.user.email", &u.email)?,
            full_name: v("context.user.full_name", &u.full_name)?,
            first_name: v("context.user.first_name", &u.first_name)?,
            last_name: v("context.user.last_name", &u.last_name)?,
        };
    }
    if let Some(o) = &c.organization {
        out.organization.name = v("context.organization.name", &o.name)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms_runtime::rpc::Refusal;

    fn request(to: &str, body: &str) -> SendMessageRequest {
        SendMessageRequest {
            to: to.into(),
            from: "+12015550100".into(),
            body: body.into(),
            ..Default::default()
        }
    }

    #[test]
    fn numbers_are_parsed_once() {
        let c = SendCommand::try_from(request("(201) 555-0123", "hi")).unwrap();
        assert_eq!(c.to.e164(), "+12015550123");
        assert_eq!(c.from.unwrap().e164(), "+12015550100");
        // International form keeps every digit whatever the sender's region.
        let c = SendCommand::try_from(request("+49 151 12345678", "hi")).unwrap();
        assert_eq!(c.to.e164(), "+4915112345678");
    }

    #[test]
    fn fields_are_bounded() {
        let e = SendCommand::try_from(SendMessageRequest {
            lead_id: "l".repeat(2_700),
            ..request("+12015550123", "hi")
        })
        .unwrap_err();
        assert_eq!(e.reason(), "FIELD_TOO_LONG");
        assert_eq!(e.metadata()["field"], "lead_id");
        let e = SendCommand::try_from(request("+12015550123", "a\0b")).unwrap_err();
        assert_eq!(e.reason(), "INVALID_CHARACTER");
        assert_eq!(e.metadata()["field"], "body");
        // Line breaks and tabs are text.
        assert!(SendCommand::try_from(request("+12015550123", "a\r\n\tb")).is_ok());
        let e = SendCommand::try_from(SendMessageRequest {
            send_at_local: Some(LocalDateTime {
                date_time: "2030-01-01T09:00".into(),
                time_zone: "x".repeat(100_000),
            }),
            ..request("+12015550123", "hi")
        })
        .unwrap_err();
        assert_eq!(e.reason(), "FIELD_TOO_LONG");
    }

    #[test]
    fn the_fingerprint_follows_the_request_not_its_spelling() {
        let a = SendCommand::try_from(request("+12015550123", "hi")).unwrap();
        let b = SendCommand::try_from(request("(201) 555-0123", "hi")).unwrap();
        let c = SendCommand::try_from(request("+12015550123", "hi!")).unwrap();
        let d = SendCommand::try_from(request("+12015550124", "hi")).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
    }
}
