//! What callers give, checked the same way everywhere: the calling user, ids, numbers used as
//! filters, page sizes and page tokens. Depends on nothing else in the composer but its errors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sms_core::MessageId;
use uuid::Uuid;

use crate::error::Common;

use sms_runtime::auth::Caller;

/// The calling user, which sends and personal views need.
pub(crate) fn user(caller: &Caller) -> Result<&str, Common> {
    caller.user_id.as_deref().ok_or(Common::MissingUser)
}

/// Longest id field (ids are UUIDs; anything longer is not one).
pub(crate) const MAX_ID_FIELD: usize = 64;

/// Parses an id given by a caller in `field`.
pub(crate) fn parse_id<T: From<Uuid>>(field: &'static str, id: &str) -> Result<T, Common> {
    sms_core::text::check(field, id, MAX_ID_FIELD, sms_core::text::Lines::Single)?;
    Uuid::parse_str(id.trim())
        .map(T::from)
        .map_err(|_| Common::InvalidId(id.to_owned()))
}

/// A number a caller gave in `field`: checked as one line, then parsed (valid, in
/// international form); `invalid` says which refusal a bad number is.
pub(crate) fn number<E: From<Common>>(
    field: &'static str,
    value: &str,
    invalid: fn(sms_core::PhoneError) -> E,
) -> Result<sms_core::PhoneNumber, E> {
    number_line(field, value)?;
    sms_core::PhoneNumber::parse_valid(value, None).map_err(invalid)
}

/// A number field is one line, no longer than a number can be written.
pub(crate) fn number_line<E: From<Common>>(field: &'static str, value: &str) -> Result<(), E> {
    sms_core::text::check(
        field,
        value,
        sms_core::phone::MAX_INPUT_LEN,
        sms_core::text::Lines::Single,
    )
    .map_err(|e| E::from(Common::Field(e)))
}

/// An optional number a caller gave in `field` (a filter): none when empty, otherwise as
/// [`number`] reads it.
pub(crate) fn optional_number<E: From<Common>>(
    field: &'static str,
    value: &str,
    invalid: fn(sms_core::PhoneError) -> E,
) -> Result<Option<sms_core::PhoneNumber>, E> {
    if value.trim().is_empty() {
        // Still one bounded line: a filter of spaces and a control character is refused.
        number_line(field, value)?;
        return Ok(None);
    }
    number(field, value, invalid).map(Some)
}

/// Longest page token.
pub(crate) const MAX_PAGE_TOKEN: usize = 512;

/// A page size asked for: `default` when 0, at most 500.
pub(crate) fn page_size(asked: u32, default: u32) -> u32 {
    match asked {
        0 => default,
        n => n.min(500),
    }
}

/// Drops the extra row fetched to learn whether there is more, and makes the next page's
/// token from the last row kept (empty when this is the last page).
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    size: u32,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if rows.len() > size as usize {
        rows.truncate(size as usize);
        let next = rows.last().map(token).unwrap_or_default();
        (rows, next)
    } else {
        (rows, String::new())
    }
}

/// The page token after a message.
pub(crate) fn message_token(m: &crate::store::MessageRow) -> String {
    encode_page_token(m.created_at, m.id)
}

pub(crate) fn encode_page_token(at: DateTime<Utc>, id: MessageId) -> String {
    encode_page_token_with(at, &id.to_string())
}

/// A page token carrying a time and a key.
pub(crate) fn encode_page_token_with(at: DateTime<Utc>, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{key}", at.timestamp_micros()))
}

/// The (time, key) a page token carries; the key is what the caller's kind of page orders by.
pub(crate) fn decode_token(token: &str) -> Result<Option<(DateTime<Utc>, String)>, Common> {
    sms_core::text::check(
        "page_token",
        token,
        MAX_PAGE_TOKEN,
        sms_core::text::Lines::Single,
    )?;
    if token.is_empty() {
        return Ok(None);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(Common::InvalidPageToken)?;
    let (micros, key) = raw.split_once(':').ok_or(Common::InvalidPageToken)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(Common::InvalidPageToken)?;
    Ok(Some((at, key.to_owned())))
}

pub(crate) fn decode_page_token(token: &str) -> Result<Option<(DateTime<Utc>, MessageId)>, Common> {
    match decode_token(token)? {
        None => Ok(None),
        Some((at, id)) => id
            .parse::<MessageId>()
            .map(|id| Some((at, id)))
            .map_err(|_| Common::InvalidPageToken),
    }
}

/// A protobuf timestamp as a UTC time.
pub(crate) fn datetime(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A UTC time as a protobuf timestamp.
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = MessageId::from(Uuid::now_v7());
        assert_eq!(
            decode_page_token(&encode_page_token(at, id)).unwrap(),
            Some((at, id))
        );
        assert_eq!(decode_page_token("").unwrap(), None);
        assert!(decode_page_token("nope!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:x")).is_err());
        assert!(matches!(
            decode_page_token(&"a".repeat(MAX_PAGE_TOKEN + 1)),
            Err(Common::Field(_))
        ));
    }

    #[test]
    fn ids_are_checked_before_parsing() {
        assert!(matches!(
            parse_id::<MessageId>("id", "not-a-uuid"),
            Err(Common::InvalidId(_))
        ));
        assert!(matches!(
            parse_id::<MessageId>("id", &"0".repeat(65)),
            Err(Common::Field(_))
        ));
        assert!(matches!(
            parse_id::<MessageId>("id", "a\0b"),
            Err(Common::Field(_))
        ));
        assert!(parse_id::<MessageId>("id", &Uuid::now_v7().to_string()).is_ok());
    }
}
