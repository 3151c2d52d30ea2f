//! The feed's gRPC services (`sms.v1.EventsService`, `sms.v1.WebhooksService`): the only
//! place that sees their protobuf requests.

mod events;
mod webhooks;

pub use events::EventsApi;
pub use webhooks::WebhooksApi;

pub(crate) use crate::entries::timestamp;

/// Runs a call body in its span, with the authenticated caller.
macro_rules! call {
    ($self:ident, $request:ident, $method:literal, |$caller:ident| $body:expr) => {{
        use tracing::Instrument as _;
        let span = sms_runtime::rpc::span($method, $request.metadata());
        async {
            let $caller = $self.auth.caller($request.metadata())?;
            // Who may call what: the table in sms_runtime::auth (administrators only for some).
            $caller.may_call($method)?;
            let reply: Result<_, crate::FeedError> = $body;
            Ok(tonic::Response::new(reply?))
        }
        .instrument(span)
        .await
    }};
}
pub(crate) use call;
