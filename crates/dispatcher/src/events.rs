//! The status events the dispatcher reports. Their ids are stable, so an event reported again
//! (a redelivery, a resolution, the composer asking) is the same event: JetStream drops the
//! repeat inside its window and the composer's history keeps one entry outside it.

use sms_core::{Reason, Status};
use sms_proto::events::v1::{OutboundMessage, StatusChanged, StatusSource};

use crate::carrier::CarrierRecord;

/// A status the dispatcher reports about `m`.
pub(crate) fn status(
    m: &OutboundMessage,
    status: Status,
    reason: Option<Reason>,
    code: Option<u32>,
    detail: &str,
) -> StatusChanged {
    StatusChanged {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&m.message_id, status.as_str(), "dispatcher"]),
            &m.organization_id,
            &m.message_id,
        )),
        status: sms_bus::status_to_proto(status) as i32,
        carrier_sid: String::new(),
        carrier_error_code: code.unwrap_or(0),
        detail: detail.to_owned(),
        contact_number: if status == Status::Failed {
            m.to.clone()
        } else {
            String::new()
        },
        source: StatusSource::Dispatcher as i32,
        ..sms_bus::reasoned(reason)
    }
}

/// `failed` for the message `message_id` of `organization_id` to `to` (when the message
/// itself is not at hand).
pub(crate) fn failed(
    organization_id: &str,
    message_id: &str,
    to: &str,
    reason: Reason,
    detail: &str,
) -> StatusChanged {
    let m = OutboundMessage {
        message_id: message_id.to_owned(),
        organization_id: organization_id.to_owned(),
        to: to.to_owned(),
        ..Default::default()
    };
    status(&m, Status::Failed, Some(reason), None, detail)
}

/// `sending`, with the sid the carrier gave the message and the account it went through.
pub(crate) fn sending(
    organization_id: &str,
    message_id: &str,
    carrier_sid: &str,
    account: &str,
) -> StatusChanged {
    StatusChanged {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[message_id, "sending", "dispatcher"]),
            organization_id,
            message_id,
        )),
        status: sms_bus::status_to_proto(Status::Sending) as i32,
        carrier_sid: carrier_sid.to_owned(),
        carrier_account: account.to_owned(),
        source: StatusSource::Dispatcher as i32,
        ..Default::default()
    }
}

/// What the carrier's records say of a message, as the callback saying it would: the same
/// source, sid and event id (so a callback that does arrive is the same event). `None` while
/// the carrier has not moved it past what `sending` says.
pub(crate) fn from_record(
    organization_id: &str,
    message_id: &str,
    account: &str,
    record: &CarrierRecord,
) -> Option<StatusChanged> {
    let status = record.status.filter(|s| *s != Status::Sending)?;
    let reason = record
        .reason
        .filter(|_| status.is_error() || record.error_code.is_some());
    Some(StatusChanged {
        meta: Some(sms_bus::meta(
            sms_bus::carrier_status_event_id(
                &record.sid,
                status,
                account,
                organization_id,
                message_id,
            ),
            organization_id,
            message_id,
        )),
        status: sms_bus::status_to_proto(status) as i32,
        carrier_sid: record.sid.clone(),
        carrier_error_code: record.error_code.unwrap_or(0),
        detail: "as the carrier's records show it".to_owned(),
        contact_number: if status == Status::Failed {
            record.to.clone()
        } else {
            String::new()
        },
        source: StatusSource::Carrier as i32,
        carrier_account: account.to_owned(),
        ..sms_bus::reasoned(reason)
    })
}
