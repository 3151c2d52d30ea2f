//! A webhook endpoint for development: `POST /_sim/hooks` keeps what the platform's webhooks
//! deliver (answering 200), `GET /_sim/hooks[?secret=whsec_…]` lists it, each with whether its
//! Standard Webhooks signature is the secret's (the listing takes an account's Basic auth, as
//! every control endpoint of the simulator does). The simulator stands in for the CRM here, as
//! it stands in for contacts elsewhere.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use crate::sim::{ReceivedHook, Sim};

/// Deliveries kept (the oldest go first).
const KEPT: usize = 1000;

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `POST /_sim/hooks`.
pub(crate) async fn receive(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let hook = ReceivedHook {
        id: header(&headers, "webhook-id"),
        timestamp: header(&headers, "webhook-timestamp").parse().unwrap_or(0),
        signature: header(&headers, "webhook-signature"),
        body,
        signature_valid: None,
    };
    let mut all = sim.lock_hooks();
    if all.len() >= KEPT {
        all.remove(0);
    }
    all.push(hook);
    "ok"
}

/// The query of `GET /_sim/hooks`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    secret: String,
}

/// `GET /_sim/hooks`.
pub(crate) async fn list(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if !sim.controlled_by(&headers) {
        return crate::sim::control_refused();
    }
    let mut all = sim.lock_hooks().clone();
    if !q.secret.is_empty() {
        for h in &mut all {
            h.signature_valid = Some(sms_runtime::webhook_signature::verify(
                &q.secret,
                &h.id,
                h.timestamp,
                h.body.as_bytes(),
                &h.signature,
            ));
        }
    }
    Json(all).into_response()
}
