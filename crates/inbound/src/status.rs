//! `POST /webhooks/twilio/status`: a carrier's status callback → `{ns}.status.<status>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sms_core::Status;
use sms_proto::events::v1::{StatusChanged, StatusSource};
use sms_twilio::webhook::StatusCallback;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::{App, Rejection, count, malformed, refused};

/// The message id and organization our status callback URL carries (`mid`, `org`).
fn callback_target(query: &HashMap<String, String>) -> Result<(String, String), Rejection> {
    let (Some(org), Some(mid)) = (query.get("org"), query.get("mid")) else {
        return Err(malformed("the callback URL lacks org and mid"));
    };
    sms_core::text::check(
        "org",
        org,
        sms_runtime::auth::MAX_ID_LEN,
        sms_core::text::Lines::Single,
    )
    .map_err(malformed)?;
    let mid = uuid::Uuid::parse_str(mid).map_err(|_| {
        malformed(format!(
            "mid {} is not a message id",
            sms_core::text::quote(mid)
        ))
    })?;
    Ok((org.clone(), mid.to_string()))
}

pub(crate) async fn status_callback(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = match app.verify(&uri, &headers, &body) {
        Ok(h) => h,
        Err(r) => return refused("status", r),
    };
    let span = tracing::info_span!(
        "twilio_status",
        otel.kind = "server",
        "http.route" = "/webhooks/twilio/status",
        message_id = %hook.query.get("mid").map_or("", String::as_str),
    );
    if let Some(tp) = hook.query.get("tp") {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.clone())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    async move {
        let (org, mid) = match callback_target(&hook.query) {
            Ok(t) => t,
            Err(r) => return refused("status", r),
        };
        let callback = match StatusCallback::from_form(&hook.params) {
            Ok(c) => c,
            Err(e) => return refused("status", malformed(e)),
        };
        let Some(status) = callback.status.ours() else {
            tracing::debug!(
                twilio = callback.status.as_str(),
                "ignoring a status we do not track"
            );
            count("status", "ignored");
            return StatusCode::OK.into_response();
        };
        let code = callback.error_code.unwrap_or(0);
        let reason = (code != 0 || status.is_error()).then(|| sms_twilio::errors::reason(code));
        let event = StatusChanged {
            meta: Some(sms_bus::meta(
                sms_bus::carrier_status_event_id(
                    &callback.message_sid,
                    status,
                    &callback.account_sid,
                    &org,
                    &mid,
                ),
                &org,
                &mid,
            )),
            status: sms_bus::status_to_proto(status) as i32,
            carrier_sid: callback.message_sid.clone(),
            carrier_error_code: code,
            detail: String::new(),
            contact_number: if status == Status::Failed {
                callback.to.clone()
            } else {
                String::new()
            },
            source: StatusSource::Carrier as i32,
            // Verified above: the account whose token signed this callback.
            carrier_account: callback.account_sid.clone(),
            ..sms_bus::reasoned(reason)
        };
        app.publish("status", &event).await
    }
    .instrument(span)
    .await
}
