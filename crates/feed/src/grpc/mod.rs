//! The feed's gRPC services (`sms.v1.EventsService`, `sms.v1.WebhooksService`): the only
//! place that sees their protobuf requests.

mod events;
mod webhooks;

pub use events::EventsApi;
pub use webhooks::WebhooksApi;

pub(crate) use crate::entries::timestamp;

/// Runs a call body in its span, with the authenticated caller (`sms_runtime::rpc_call`).
macro_rules! call {
    ($self:ident, $request:ident, $method:literal, |$caller:ident| $body:expr) => {
        sms_runtime::rpc_call!($self, $request, $method, crate::FeedError, |$caller| $body)
    };
}
pub(crate) use call;
