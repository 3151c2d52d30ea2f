//! The gRPC services: the only place that sees protobuf requests. Each call is authenticated,
//! its request turned into a typed command (or checked fields), handed to its capability, and the
//! answer turned back into protobuf.

use sms_proto::v1::{
    Attachment, AttachmentState, Direction as ProtoDirection, FailureReason, Message, StatusEntry,
    Template,
};

pub(crate) use crate::fields::timestamp;

use crate::store::{HistoryRow, MediaRow, MessageRow, TemplateRow};

pub mod command;
mod contacts;
mod messaging;
mod settings;
mod templates;

pub use contacts::ContactsApi;
pub use messaging::MessagingApi;
pub use settings::SettingsApi;
pub use templates::TemplatesApi;

/// Runs a call body in its span, with the authenticated caller (`sms_runtime::rpc_call`).
macro_rules! call {
    ($self:ident, $request:ident, $method:literal, $error:ty, |$caller:ident| $body:expr) => {
        sms_runtime::rpc_call!($self, $request, $method, $error, |$caller| { $body })
    };
}
pub(crate) use call;

pub use sms_runtime::rpc::Auth;

fn proto_status(s: sms_core::Status) -> i32 {
    sms_bus::status_to_proto(s) as i32
}

pub(crate) fn template(t: TemplateRow) -> Template {
    Template {
        id: t.id.to_string(),
        name: t.name,
        body: t.body,
        shared: t.shared,
        owner_user_id: t.owner_user_id,
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
    }
}

pub(crate) fn attachment(m: MediaRow) -> Attachment {
    Attachment {
        id: m.id.to_string(),
        file_name: m.file_name,
        content_type: m.content_type,
        size: u64::try_from(m.size).unwrap_or(0),
        state: m.state.as_str().to_owned(),
        attachment_state: match m.state {
            crate::store::MediaState::Stored => AttachmentState::Stored,
            crate::store::MediaState::Failed => AttachmentState::Failed,
        } as i32,
        error: m.error.unwrap_or_default(),
    }
}

/// A stored reason (the catalogue's name) as the API's enum.
fn failure_reason(reason: Option<&sms_core::Failure>) -> i32 {
    reason
        .and_then(sms_core::Failure::reason)
        .map_or(FailureReason::Unspecified, sms_bus::reason_to_proto) as i32
}

pub(crate) fn message(m: MessageRow, history: Vec<HistoryRow>) -> Message {
    message_with(m, history, Vec::new())
}

pub(crate) fn message_with(
    m: MessageRow,
    history: Vec<HistoryRow>,
    media: Vec<MediaRow>,
) -> Message {
    Message {
        attachments: media.into_iter().map(attachment).collect(),
        id: m.id.to_string(),
        organization_id: m.organization_id,
        direction: match m.direction {
            sms_core::Direction::Inbound => ProtoDirection::Inbound as i32,
            sms_core::Direction::Outbound => ProtoDirection::Outbound as i32,
        },
        from: m.from_number.to_string(),
        to: m.to_number.to_string(),
        body: m.body,
        status: proto_status(m.status),
        failure_reason: failure_reason(m.reason.as_ref()),
        reason: m.reason.map(|r| r.to_string()).unwrap_or_default(),
        encoding_type: sms_bus::encoding_to_proto(m.encoding) as i32,
        encoding: m.encoding.as_str().to_owned(),
        segments: u32::try_from(m.segments).unwrap_or(0),
        characters: u32::try_from(m.characters).unwrap_or(0),
        user_id: m.user_id,
        carrier_sid: m.carrier_sid.unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
        history: history
            .into_iter()
            .map(|h| StatusEntry {
                status: proto_status(h.status),
                at: Some(timestamp(h.occurred_at)),
                failure_reason: failure_reason(h.reason.as_ref()),
                reason: h.reason.map(|r| r.to_string()).unwrap_or_default(),
                detail: h.detail.unwrap_or_default(),
                carrier_error_code: h
                    .carrier_error_code
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(0),
            })
            .collect(),
        lead_id: m.lead_id.unwrap_or_default(),
        contact_id: m.contact_id.unwrap_or_default(),
        send_at: m.send_at.map(timestamp),
        done: m.done,
        carrier_error_code: m
            .carrier_error_code
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
    }
}
