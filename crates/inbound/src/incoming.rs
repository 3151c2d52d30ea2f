//! `POST /webhooks/twilio/incoming`: a contact's message → `{ns}.inbound.received`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sms_proto::events::v1::{InboundMedia, InboundReceived};
use sms_twilio::webhook::IncomingMessage;

use crate::app::{App, count, malformed, refused};

pub(crate) async fn incoming(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = match app.verify(&uri, &headers, &body) {
        Ok(h) => h,
        Err(r) => return refused("incoming", r),
    };
    let message = match IncomingMessage::from_form(&hook.params) {
        Ok(m) => m,
        Err(e) => return refused("incoming", malformed(e)),
    };
    if sms_core::phone::is_short_code(&message.from) {
        count("incoming", "short_code");
        tracing::info!(
            from = %message.from,
            "inbound message from a short code: acknowledged, not delivered"
        );
        return twiml();
    }
    let Some(org) = app.holder(&message.to).await else {
        count("incoming", "unknown_number");
        tracing::warn!(
            to = %message.to,
            "inbound message to a number we do not hold: acknowledged, dropped"
        );
        return twiml();
    };
    // The contact's text is never refused: what cannot be stored is replaced, and said.
    let (body, replaced) = message.storable_body();
    if replaced > 0 {
        tracing::warn!(
            sid = %message.message_sid,
            replaced,
            "inbound text held characters that cannot be stored; replaced with U+FFFD"
        );
    }
    let event = InboundReceived {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&message.message_sid, "inbound"]),
            &org,
            "",
        )),
        from: message.from.clone(),
        to: message.to.clone(),
        body,
        carrier_sid: message.message_sid.clone(),
        media: message
            .media
            .iter()
            .map(|m| InboundMedia {
                url: m.url.clone(),
                content_type: m.content_type.clone(),
            })
            .collect(),
        num_segments: message.num_segments,
        account_sid: message.account_sid.clone(),
        replaced_characters: u32::try_from(replaced).unwrap_or(u32::MAX),
    };
    match app.publish("incoming", &event).await.status() {
        StatusCode::OK => twiml(),
        other => other.into_response(),
    }
}

/// How long a message to a number this receiver's copy does not know waits for the copy to
/// catch up (a number added a moment ago) before it is dropped.
const UNKNOWN_NUMBER_PATIENCE: Duration = Duration::from_secs(2);

impl App {
    /// The organization holding `number` (waiting a moment for a number the copy does not
    /// know yet).
    pub(crate) async fn holder(&self, number: &str) -> Option<String> {
        self.numbers.holder(number, UNKNOWN_NUMBER_PATIENCE).await
    }

    /// Publishes and waits for JetStream to store the event: only then may the carrier stop
    /// retrying. While the bus is unavailable (a stream leader being elected, a reconnect) it
    /// keeps trying, with jittered back-off, for the receiver's patience; then it answers 503 and
    /// the carrier's own retries take over (the dispatcher asks Twilio for them in the callback
    /// URL's connection overrides).
    pub(crate) async fn publish<E: sms_bus::Event>(
        &self,
        kind: &'static str,
        event: &E,
    ) -> Response {
        let backoff =
            sms_runtime::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let deadline = Instant::now() + self.patience;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, self.bus.publish_durably(event)).await {
                Ok(Ok(())) => {
                    count(kind, "stored");
                    return StatusCode::OK.into_response();
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no acknowledgement in time".to_owned(),
            };
            let pause = backoff.delay(attempt);
            if Instant::now() + pause >= deadline {
                count(kind, "unavailable");
                tracing::error!(attempts = attempt, %error, "could not store a webhook event; the carrier will retry");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
            }
            tracing::warn!(attempt, %error, "storing a webhook event failed; trying again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// An empty TwiML reply: nothing to send back.
fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}
