//! Twilio's REST API as the simulator serves it (messages, media, numbers, its control
//! endpoints), and the webhooks it posts: status callbacks and contacts' messages.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use sms_twilio::overrides::{Attempt, ConnectionOverrides};
use sms_twilio::webhook::{
    IncomingMessage, Media as TwilioMedia, MessageStatus as TwilioStatus, StatusCallback,
};
use sms_twilio::{API_VERSION, ApiError, MessageResource, SIGNATURE_HEADER};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Incoming;
use crate::sim::{RecordedRequest, Sim, api_error, authorized, control_refused, unauthorized};
use crate::{hooks, numbers};

impl Sim {
    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Media/{media_id}",
                get(get_media),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(create_message).get(list_messages),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}",
                get(fetch_message),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/AvailablePhoneNumbers/{country}/{resource}",
                get(numbers::search),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json",
                post(numbers::rent).get(numbers::list_held),
            )
            .route(
                "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}",
                get(numbers::fetch_held)
                    .post(numbers::update_held)
                    .delete(numbers::release),
            )
            .route("/_sim/requests", get(list_requests))
            .route("/_sim/reply", post(post_reply))
            .route("/_sim/hooks", post(hooks::receive).get(hooks::list))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            *self
                .inner
                .public_url
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(format!("http://{addr}"));
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}

async fn get_media(
    State(sim): State<Sim>,
    Path((account_sid, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&sim, &account_sid, &headers) {
        return unauthorized();
    }
    let found = sim
        .inner
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&media_id)
        .cloned();
    match found {
        Some((content_type, data)) => {
            ([(axum::http::header::CONTENT_TYPE, content_type)], data).into_response()
        }
        None => api_error(
            StatusCode::NOT_FOUND,
            ApiError::new(404, 20404, "Not found"),
        ),
    }
}

async fn list_requests(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    if !sim.controlled_by(&headers) {
        return control_refused();
    }
    Json(sim.requests()).into_response()
}

async fn create_message(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    let latency = sim.behaviour().api_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // What arrived is recorded as it came, a form Twilio would refuse included; the reading
    // that decides is `CreateMessage`'s (sms-twilio), the dispatcher's own writer's.
    let form = sms_twilio::CreateMessage::from_params(&params);
    let first = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut record = RecordedRequest {
        account_sid: account_sid.clone(),
        from: first("From"),
        to: first("To"),
        body: first("Body"),
        status_callback: first("StatusCallback"),
        validity_period: form.as_ref().ok().and_then(|f| f.validity_period),
        received_at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
        media_urls: params
            .iter()
            .filter(|(k, _)| k == "MediaUrl")
            .map(|(_, v)| v.clone())
            .collect(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        media_sizes: Vec::new(),
        http_status: 0,
        sid: None,
    };
    // Like a carrier, fetch the attachments and check them before accepting the message.
    let response = if !authorized(&sim, &account_sid, &headers) {
        unauthorized()
    } else {
        match form {
            Err(error) => api_error(StatusCode::BAD_REQUEST, error),
            Ok(form) => {
                let media_error = if form.media_urls.is_empty() {
                    None
                } else {
                    sim.check_media(&mut record).await
                };
                match media_error {
                    Some(error) => api_error(StatusCode::BAD_REQUEST, error),
                    None => respond(&sim, &account_sid, &form, &mut record),
                }
            }
        }
    };
    record.http_status = response.status().as_u16();
    let answer = sim
        .behaviour()
        .auto_reply
        .clone()
        .filter(|a| a.answers(&record.body));
    if record.sid.is_some()
        && let Some(answer) = answer
    {
        // The contact answers from the number we texted, to the number that texted them.
        let (sim, from, to) = (sim.clone(), record.to.clone(), record.from.clone());
        tokio::spawn(async move {
            tokio::time::sleep(answer.delay).await;
            if let Err(e) = sim.reply(&from, &to, &answer.text, Vec::new()).await {
                tracing::warn!(error = %e, "scripted reply not delivered");
            }
        });
    }
    let hang = record.sid.is_some() && sim.behaviour().taken_unanswered.contains(&record.to);
    sim.lock_requests().push(record);
    if hang {
        // Taken, but the caller hears nothing until it gives up.
        let hang = sim.behaviour().hang;
        tokio::time::sleep(hang).await;
    }
    response
}

/// Answers a message read: `None` to go on, or the failure the behaviour asks for.
fn lookup_fault(sim: &Sim, account_sid: &str, headers: &HeaderMap) -> Option<Response> {
    if !authorized(sim, account_sid, headers) {
        return Some(unauthorized());
    }
    sim.inner.lookups.fetch_add(1, Ordering::Relaxed);
    let b = sim.behaviour();
    if b.lookups_unavailable {
        return Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::new(503, 20503, "Service Unavailable"),
        ));
    }
    b.lookups_garbled
        .then(|| (StatusCode::OK, "<html>upstream proxy error</html>").into_response())
}

/// `GET …/Messages.json?To=…&From=…&PageSize=…&Page=…`: newest first.
async fn list_messages(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = lookup_fault(&sim, &account_sid, &headers) {
        return fault;
    }
    let filter = |name: &str| query.get(name).filter(|v| !v.is_empty());
    let page_size = query
        .get("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, sms_twilio::MAX_PAGE_SIZE as usize);
    let page = query
        .get("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let matching: Vec<MessageResource> = sim
        .lock_messages()
        .all
        .iter()
        .rev()
        .filter(|m| m.account_sid == account_sid)
        .filter(|m| filter("To").is_none_or(|to| *to == m.to))
        .filter(|m| filter("From").is_none_or(|from| *from == m.from))
        .cloned()
        .collect();
    let uri = |page: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for name in ["To", "From"] {
            if let Some(v) = filter(name) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("PageSize", &page_size.to_string());
        q.append_pair("Page", &page.to_string());
        format!("{}?{}", sms_twilio::messages_path(&account_sid), q.finish())
    };
    let messages: Vec<MessageResource> = matching
        .iter()
        .skip(page * page_size)
        .take(page_size)
        .cloned()
        .collect();
    let more = matching.len() > (page + 1) * page_size;
    Json(sms_twilio::MessagePage {
        messages,
        next_page_uri: more.then(|| uri(page + 1)),
        page: u32::try_from(page).unwrap_or(u32::MAX),
        page_size: u32::try_from(page_size).unwrap_or(u32::MAX),
        uri: uri(page),
    })
    .into_response()
}

/// `GET …/Messages/{Sid}.json`.
async fn fetch_message(
    State(sim): State<Sim>,
    Path((account_sid, message_sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = lookup_fault(&sim, &account_sid, &headers) {
        return fault;
    }
    let sid = message_sid.strip_suffix(".json").unwrap_or(&message_sid);
    match sim.message(sid).filter(|m| m.account_sid == account_sid) {
        Some(m) => Json(m).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            ApiError::new(
                404,
                20404,
                format!(
                    "The requested resource {} was not found",
                    sms_twilio::message_path(&account_sid, sid)
                ),
            ),
        ),
    }
}

/// Answers a Create-Message call whose form is good (the account's credentials checked).
fn respond(
    sim: &Sim,
    account_sid: &str,
    form: &sms_twilio::CreateMessage,
    r: &mut RecordedRequest,
) -> Response {
    if sms_core::PhoneNumber::parse_valid(&form.to, None).is_err() {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(
                400,
                21211,
                format!("The 'To' number {} is not a valid phone number.", form.to),
            ),
        );
    }
    if !sim.may_send_from(account_sid, &form.from) {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(
                400,
                21606,
                format!(
                    "The From phone number {} is not a valid, SMS-capable inbound phone number \
                     or short code for your account.",
                    form.from
                ),
            ),
        );
    }
    if let Some((status, error)) = sim.api_failure(&form.to) {
        return api_error(status, error);
    }
    let prefix = if form.media_urls.is_empty() {
        "SM"
    } else {
        "MM"
    };
    let sid = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().to_rfc2822();
    let resource = MessageResource {
        sid: sid.clone(),
        account_sid: account_sid.to_owned(),
        from: form.from.clone(),
        to: form.to.clone(),
        body: form.body.clone(),
        status: "queued".into(),
        num_segments: sms_core::count(&form.body).segments.max(1).to_string(),
        num_media: form.media_urls.len().to_string(),
        direction: "outbound-api".into(),
        api_version: API_VERSION.into(),
        date_created: now.clone(),
        date_updated: now,
        date_sent: None,
        error_code: None,
        error_message: None,
        price: None,
        price_unit: "USD".into(),
        uri: format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"),
    };
    r.sid = Some(sid.clone());
    {
        let mut messages = sim.lock_messages();
        let index = messages.all.len();
        messages.all.push(resource.clone());
        messages.by_sid.insert(sid, index);
    }
    spawn_progress(
        sim.clone(),
        resource.clone(),
        form.status_callback.clone().unwrap_or_default(),
    );
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// Takes the message through its statuses (as the API's reads show them) and posts a signed
/// status callback for each, when callbacks are on and a `StatusCallback` was given.
fn spawn_progress(sim: Sim, message: MessageResource, url: String) {
    let (callback_delay, callbacks) = {
        let b = sim.behaviour();
        (b.callback_delay, b.callbacks)
    };
    let token = sim
        .inner
        .config
        .accounts
        .get(&message.account_sid)
        .cloned()
        .unwrap_or_default();
    let (statuses, error_code) = sim.fate(&message.to);
    tokio::spawn(async move {
        for (i, status) in statuses.iter().enumerate() {
            tokio::time::sleep(callback_delay).await;
            let last = i + 1 == statuses.len();
            let error_code = if last { error_code } else { None };
            sim.set_status(&message.sid, status, error_code);
            if !callbacks || url.is_empty() {
                continue;
            }
            let callback = StatusCallback {
                message_sid: message.sid.clone(),
                account_sid: message.account_sid.clone(),
                status: TwilioStatus::parse(status),
                error_code,
                from: message.from.clone(),
                to: message.to.clone(),
            };
            let params = callback.to_form();
            let delivered = sim
                .post_webhook(&url, &token, params.iter().map(|(k, v)| (*k, v.as_str())))
                .await;
            let counter = if delivered.is_ok_and(|s| (200..300).contains(&s)) {
                &sim.inner.callbacks_sent
            } else {
                &sim.inner.callbacks_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
}

impl Sim {
    /// POSTs a signed webhook as Twilio does: the URL without its fragment is requested and
    /// signed; the fragment's connection overrides set the timeouts and which failures are
    /// retried how often (once on a failed connection, by default). Returns the last HTTP
    /// status, or why no answer came.
    pub async fn post_webhook<'a>(
        &self,
        url: &str,
        auth_token: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<u16, String> {
        let (url, overrides) = ConnectionOverrides::split(url);
        let params: Vec<(&str, &str)> = params.into_iter().collect();
        let signature = sms_twilio::signature(auth_token, url, params.iter().copied());
        let deadline = tokio::time::Instant::now() + overrides.total_time;
        let mut outcome = Err("no attempt made".to_owned());
        for attempt in 0..=overrides.retries {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let sent = self
                .inner
                .http
                .post(url)
                .header(SIGNATURE_HEADER, &signature)
                .form(&params)
                .timeout(left.min(overrides.connect_timeout + overrides.read_timeout))
                .send()
                .await;
            let ended = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    outcome = Ok(status);
                    Attempt::Status(status)
                }
                Err(e) if e.is_connect() => {
                    outcome = Err(format!("connection failed: {e}"));
                    Attempt::ConnectFailed
                }
                Err(e) => {
                    outcome = Err(format!("no answer: {e}"));
                    Attempt::ReadTimedOut
                }
            };
            if !overrides.retries_after(ended) {
                break;
            }
            tracing::debug!(%url, attempt, ?ended, "webhook attempt failed; retrying");
        }
        if !matches!(outcome, Ok(200..=299)) {
            tracing::warn!(%url, ?outcome, "webhook not delivered");
        }
        outcome
    }
}

/// `POST /_sim/reply`: a contact texts one of our numbers.
#[derive(Debug, serde::Deserialize)]
struct ReplyRequest {
    from: String,
    to: String,
    #[serde(default)]
    body: String,
    /// Attachments: content type and bytes (standard base64).
    #[serde(default)]
    media: Vec<ReplyMedia>,
}

#[derive(Debug, serde::Deserialize)]
struct ReplyMedia {
    content_type: String,
    data: String,
}

async fn post_reply(
    State(sim): State<Sim>,
    headers: HeaderMap,
    axum::Json(r): axum::Json<ReplyRequest>,
) -> Response {
    use base64::Engine as _;
    if !sim.controlled_by(&headers) {
        return control_refused();
    }
    let bad = |why: String| (StatusCode::BAD_REQUEST, why).into_response();
    if r.from.trim().is_empty() || r.to.trim().is_empty() {
        return bad("from and to are required".into());
    }
    if r.body.is_empty() && r.media.is_empty() {
        return bad("a body or an attachment is required".into());
    }
    let mut media = Vec::with_capacity(r.media.len());
    for m in r.media {
        match base64::engine::general_purpose::STANDARD.decode(m.data.as_bytes()) {
            Ok(data) => media.push((m.content_type, data)),
            Err(e) => return bad(format!("an attachment is not base64: {e}")),
        }
    }
    match sim.reply(r.from.trim(), r.to.trim(), &r.body, media).await {
        Ok((status, sid)) => {
            axum::Json(serde_json::json!({"sid": sid, "webhook_status": status})).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, e).into_response(),
    }
}

impl Sim {
    /// Delivers `message` to `url` as Twilio delivers an incoming message: a form POST signed
    /// with the account's auth token, retried as the URL's connection overrides say (see
    /// [`Sim::post_webhook`]). Returns the last HTTP status and the sid used, or why no
    /// answer came.
    pub async fn send_incoming(
        &self,
        url: &str,
        account_sid: &str,
        message: &Incoming,
    ) -> Result<(u16, String), String> {
        let token = self
            .inner
            .config
            .accounts
            .get(account_sid)
            .cloned()
            .unwrap_or_default();
        let sid = message
            .sid
            .clone()
            .unwrap_or_else(|| format!("SM{}", uuid::Uuid::new_v4().simple()));
        let params = IncomingMessage {
            message_sid: sid.clone(),
            account_sid: account_sid.to_owned(),
            from: message.from.clone(),
            to: message.to.clone(),
            body: message.body.clone(),
            num_segments: u32::try_from(sms_core::count(&message.body).segments.max(1))
                .unwrap_or(u32::MAX),
            media: message
                .media
                .iter()
                .map(|(url, content_type)| TwilioMedia {
                    url: url.clone(),
                    content_type: content_type.clone(),
                })
                .collect(),
        }
        .to_form();
        let status = self
            .post_webhook(
                url,
                &token,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .await?;
        Ok((status, sid))
    }
}
