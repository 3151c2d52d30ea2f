//! How messages, numbers, statuses and times are shown: one line for people, JSON for
//! programs.

use anyhow::Context;
use serde_json::{Value, json};
use sms_proto::v1::{Message, MessageStatus, NumberKind, PhoneNumber};
pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("{flag}: {s:?} is not an RFC 3339 time (2026-11-29T10:00:00Z)"))?;
    Ok(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

pub(crate) fn status_name(status: i32) -> String {
    MessageStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MESSAGE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn reason_suffix(reason: &str, code: u32) -> String {
    match (reason.is_empty(), code) {
        (true, 0) => String::new(),
        (false, 0) => format!(" ({reason})"),
        (_, code) => format!(" ({reason}, carrier code {code})"),
    }
}

pub(crate) fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "organization_id": m.organization_id,
        "direction": if m.direction == 2 { "inbound" } else { "outbound" },
        "from": m.from,
        "to": m.to,
        "body": m.body,
        "status": status_name(m.status),
        "reason": m.reason,
        "carrier_error_code": m.carrier_error_code,
        "encoding": m.encoding,
        "segments": m.segments,
        "characters": m.characters,
        "user_id": m.user_id,
        "carrier_sid": m.carrier_sid,
        "created_at": timestamp(m.created_at.as_ref()),
        "updated_at": timestamp(m.updated_at.as_ref()),
        "history": m.history.iter().map(|h| json!({
            "status": status_name(h.status),
            "at": timestamp(h.at.as_ref()),
            "reason": h.reason,
            "carrier_error_code": h.carrier_error_code,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn number_json(n: &PhoneNumber) -> Value {
    json!({
        "id": n.id,
        "number": n.number,
        "region": n.region,
        "number_type": n.number_type,
        "sms_capable": n.sms_capable,
        "mms_capable": n.mms_capable,
        "voice_capable": n.voice_capable,
        "kind": if n.kind == NumberKind::External as i32 { "external" } else { "internal" },
        "owner_user_id": n.owner_user_id,
        "owner_group_id": n.owner_group_id,
        "send_rate": n.send_rate,
        "send_burst": n.send_burst,
        "source": source_name(n.source),
        "carrier_sid": n.carrier_sid,
        "carrier_connection": n.carrier_connection,
    })
}

fn source_name(source: i32) -> &'static str {
    match sms_proto::v1::NumberSource::try_from(source) {
        Ok(sms_proto::v1::NumberSource::Rented) => "rented",
        Ok(sms_proto::v1::NumberSource::Imported) => "imported",
        _ => "recorded",
    }
}

/// What a number can do, as `sms,mms,voice`.
pub(crate) fn capabilities(sms: bool, mms: bool, voice: bool) -> String {
    [(sms, "sms"), (mms, "mms"), (voice, "voice")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn number_line(n: &PhoneNumber) -> String {
    let owner = if n.owner_group_id.is_empty() {
        format!("user {}", n.owner_user_id)
    } else {
        format!("group {}", n.owner_group_id)
    };
    let kind = if n.kind == NumberKind::External as i32 {
        "external"
    } else {
        "internal"
    };
    let rate = if n.send_rate > 0.0 {
        format!("  {}/s burst {}", n.send_rate, n.send_burst)
    } else {
        "  default rate".to_owned()
    };
    let via = if n.carrier_connection.is_empty() {
        "default carrier"
    } else {
        n.carrier_connection.as_str()
    };
    format!(
        "{}  {}  {}  {}  [{}]  {owner}{rate}  {}  via {via}",
        n.number,
        n.region,
        n.number_type,
        kind,
        capabilities(n.sms_capable, n.mms_capable, n.voice_capable),
        source_name(n.source)
    )
}

/// One message on one line, for people.
pub(crate) fn message_line(m: &Message) -> String {
    let when = if m.status == MessageStatus::Scheduled as i32 {
        format!("  due {}", timestamp(m.send_at.as_ref()))
    } else {
        String::new()
    };
    format!(
        "{}  {}  {} → {}  {}{}{when}  {:?}",
        m.id,
        timestamp(m.created_at.as_ref()),
        m.from,
        m.to,
        status_name(m.status),
        reason_suffix(&m.reason, m.carrier_error_code),
        m.body.chars().take(60).collect::<String>()
    )
}
