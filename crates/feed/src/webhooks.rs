//! Webhooks: the organization's feed POSTed to the CRM's endpoints, signed per the Standard
//! Webhooks specification (<https://www.standardwebhooks.com>), retried on a schedule.
//!
//! Two loops run in every replica of the feed service, sharing the work through the database:
//! * **fan-out** locks endpoints (`FOR UPDATE SKIP LOCKED`), turns the feed events after each
//!   one's cursor into deliveries (one per endpoint and event id) and moves the cursor, in one
//!   transaction: a crash repeats nothing and loses nothing;
//! * **delivery** takes due deliveries with a lease (a replica that dies mid-attempt leaves
//!   them to be taken again when the lease ends: at least once, with a stable `webhook-id`), at
//!   most [`PER_ENDPOINT`] of an endpoint's at a time per replica and [`CONCURRENCY`] in all, so a
//!   slow or broken endpoint holds only its own slots, each attempt bounded by the timeout.
//!
//! An attempt succeeds on a 2xx. Otherwise the delivery is tried again after each delay of
//! the schedule (Standard Webhooks' and Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each
//! ±20%: about 27.5 hours), then fails and can be replayed. An endpoint that has failed every
//! attempt for [`DEFAULT_DISABLE_AFTER`] is disabled; enabling it again delivers what happened
//! meanwhile (the fan-out resumes from its cursor).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use prost::Message as _;
use sms_runtime::fetch::{FetchError, FetchPolicy};
use sms_runtime::{ConfigError, Env};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use sms_runtime::auth::Caller;
use sms_runtime::fetch::Fetcher;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::error::{Entity, FeedError};
use crate::signal::Written;
use crate::store::webhooks::{self as store, Attempted, Due, EndpointRow};

/// The event types an endpoint can ask for.
pub const EVENT_TYPES: [&str; 4] = [
    "message.status",
    "message.inbound",
    "optout.changed",
    "number.changed",
];
/// Endpoints an organization may have.
pub const MAX_ENDPOINTS: i64 = 20;
/// Longest endpoint URL.
pub const MAX_URL: usize = 2048;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 200;
/// Longest id field (ids are UUIDs; anything longer is not one).
const MAX_ID_FIELD: usize = 64;
/// Longest page token.
const MAX_PAGE_TOKEN: usize = 512;
/// Longest event id a caller may name.
pub const MAX_EVENT_ID: usize = 200;
/// Attempts under way at once per endpoint, per replica.
pub const PER_ENDPOINT: usize = 4;
/// Attempts under way at once per replica.
pub const CONCURRENCY: usize = 64;
/// The schedule of retries after a failed attempt (Standard Webhooks' example schedule).
pub const DEFAULT_RETRIES: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// How long an endpoint may fail every attempt before it is disabled.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// How long a rotated-out secret still signs.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The start of an answer kept with its attempt.
pub(crate) const RESPONSE_KEPT: u64 = 1024;
/// How often the loops look for work when nothing woke them.
const POLL: Duration = Duration::from_millis(200);
/// How long the fan-out gathers the feed's writes after one woke it.
const GATHER: Duration = Duration::from_millis(50);

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `SMS_WEBHOOK_RETRY_MS`: the delays before each retry, comma-separated milliseconds.
    pub retries: Vec<Duration>,
    /// `SMS_WEBHOOK_TIMEOUT_MS`: one attempt's time (10 s).
    pub timeout: Duration,
    /// `SMS_WEBHOOK_DISABLE_AFTER_MS`: failing this long disables an endpoint (5 days).
    pub disable_after: Duration,
    /// Plain http and loopback hosts, as for fetches (development only).
    pub allow_http: bool,
    /// `host:port` entries exempt from the address rules (development only).
    pub allow_private: Vec<String>,
}

impl WebhookConfig {
    /// Reads the variables; `fetch` is the composer's fetch policy (its development exemptions
    /// apply to endpoints too).
    pub fn from_env(env: &Env<'_>, fetch: &FetchPolicy) -> Result<Self, ConfigError> {
        let retries = match env.string_or("SMS_WEBHOOK_RETRY_MS", "").trim() {
            "" => DEFAULT_RETRIES.to_vec(),
            list => {
                let bad = |why: &str| ConfigError::new("SMS_WEBHOOK_RETRY_MS", list, why);
                let delays = list
                    .split(',')
                    .map(|d| d.trim().parse::<u64>().map(Duration::from_millis))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("expected comma-separated milliseconds"))?;
                if delays.len() > 20 || delays.iter().any(|d| *d > Duration::from_secs(86_400)) {
                    return Err(bad("at most 20 retries, each at most a day (86400000)"));
                }
                delays
            }
        };
        let timeout = env.millis_or("SMS_WEBHOOK_TIMEOUT_MS", Duration::from_secs(10))?;
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "SMS_WEBHOOK_TIMEOUT_MS",
                timeout.as_millis().to_string(),
                "expected 100 to 60000",
            ));
        }
        Ok(WebhookConfig {
            retries,
            timeout,
            disable_after: env.millis_or("SMS_WEBHOOK_DISABLE_AFTER_MS", DEFAULT_DISABLE_AFTER)?,
            allow_http: fetch.allow_http,
            allow_private: fetch.allow_private.clone(),
        })
    }

    /// The policy endpoint URLs are held to.
    pub fn policy(&self) -> FetchPolicy {
        FetchPolicy {
            allow_http: self.allow_http,
            allow_private: self.allow_private.clone(),
            timeout: self.timeout,
            max_redirects: 0,
            ..FetchPolicy::strict(RESPONSE_KEPT)
        }
    }

    /// When a delivery whose `attempt`-th attempt failed is tried again, if it is.
    fn retry_after(&self, attempt: i32) -> Option<Duration> {
        let delay = *self.retries.get(usize::try_from(attempt - 1).ok()?)?;
        // ±20%, so that a burst of failures does not come back as one burst.
        Some(delay.mul_f64(0.8 + 0.4 * fastrand::f64()))
    }
}

/// A new secret: `whsec_` and the base64 of 32 bytes from the system's random source.
pub fn new_secret() -> Result<String, FeedError> {
    let mut key = [0_u8; 32];
    getrandom::fill(&mut key).map_err(|e| FeedError::Unavailable(e.to_string()))?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

/// The three Standard Webhooks headers (one signature per secret), and the JSON type.
fn headers(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|s| sms_runtime::webhook_signature::sign(s, id, timestamp, body))
        .collect();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
        ("content-type", "application/json".to_owned()),
        ("user-agent", "sms-platform-webhooks/1".to_owned()),
    ]
}

fn event_id_field(given: &str) -> Result<(), FeedError> {
    Ok(sms_core::text::check(
        "event_id",
        given,
        MAX_EVENT_ID,
        sms_core::text::Lines::Single,
    )?)
}

fn endpoint_id(given: &str) -> Result<Uuid, FeedError> {
    sms_core::text::check(
        "endpoint_id",
        given,
        MAX_ID_FIELD,
        sms_core::text::Lines::Single,
    )?;
    Uuid::parse_str(given.trim()).map_err(|_| FeedError::InvalidId(given.to_owned()))
}

/// Attempts under way, per endpoint, in this replica.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<Uuid, usize>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn full(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, n)| **n >= PER_ENDPOINT)
            .map(|(id, _)| *id)
            .collect()
    }

    fn add(&self, id: Uuid) {
        *self.lock().entry(id).or_default() += 1;
    }

    fn done(&self, id: Uuid) {
        let mut map = self.lock();
        if let Some(n) = map.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&id);
            }
        }
    }
}

/// Webhooks: an organization's endpoints (checked, with rotating secrets), and the delivery
/// of its feed to them, signed, retried, and disabled when an endpoint stays down.
#[derive(Clone)]
pub struct Webhooks {
    pool: PgPool,
    /// Wakes the fan-out when the feed was written.
    written: Written,
    /// Wakes this replica's deliveries when the fan-out made some.
    due: Arc<Notify>,
    /// Endpoints are checked and POSTed to through this.
    fetcher: Fetcher,
}

impl Webhooks {
    /// Endpoints kept in `pool`, reached through `fetcher`; the fan-out woken by `written`.
    pub fn new(pool: PgPool, written: Written, fetcher: Fetcher) -> Self {
        Webhooks {
            pool,
            written,
            due: Arc::default(),
            fetcher,
        }
    }

    /// Registers an endpoint; returns it with its secret (shown this once).
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        url: &str,
        event_types: &[String],
        description: &str,
    ) -> Result<(EndpointRow, String), FeedError> {
        let org = &caller.organization_id;
        sms_core::text::check("url", url, MAX_URL, sms_core::text::Lines::Single)?;
        sms_core::text::check(
            "description",
            description,
            MAX_DESCRIPTION,
            sms_core::text::Lines::Single,
        )?;
        let url = self
            .fetcher
            .check(url, &sms_runtime::fetch::Request::default())
            .map_err(|e| FeedError::InvalidWebhookUrl {
                url: url.trim().to_owned(),
                why: e.to_string(),
            })?
            .to_string();
        if event_types.len() > EVENT_TYPES.len() {
            return Err(FeedError::TooManyEntries {
                field: "event_types",
                count: event_types.len(),
                max: EVENT_TYPES.len(),
            });
        }
        let mut types: Vec<String> = Vec::new();
        for t in event_types {
            let t = t.trim();
            if !EVENT_TYPES.contains(&t) {
                return Err(FeedError::UnknownEventType {
                    given: t.chars().take(64).collect(),
                    known: &EVENT_TYPES,
                });
            }
            if !types.iter().any(|k| k == t) {
                types.push(t.to_owned());
            }
        }
        if store::count(&self.pool, org).await? >= MAX_ENDPOINTS {
            return Err(FeedError::TooManyWebhookEndpoints { max: MAX_ENDPOINTS });
        }
        let secret = new_secret()?;
        let from = crate::store::feed::now(&self.pool).await?;
        let row = store::create(
            &self.pool,
            &store::NewEndpoint {
                id: Uuid::now_v7(),
                organization_id: org,
                url: &url,
                event_types: &types,
                description: description.trim(),
                secret: &secret,
                from,
            },
        )
        .await
        .map_err(|e| {
            crate::error::on_constraint(e, "webhook_endpoints_url", || {
                FeedError::WebhookEndpointExists(url.clone())
            })
        })?;
        Ok((row, secret))
    }

    /// The organization's endpoints.
    pub async fn list_webhooks(&self, caller: &Caller) -> Result<Vec<EndpointRow>, FeedError> {
        Ok(store::list(&self.pool, &caller.organization_id).await?)
    }

    /// Enables or disables an endpoint.
    pub async fn set_webhook_enabled(
        &self,
        caller: &Caller,
        id: &str,
        enabled: bool,
    ) -> Result<EndpointRow, FeedError> {
        let id = endpoint_id(id)?;
        store::set_enabled(
            &self.pool,
            &caller.organization_id,
            id,
            enabled,
            "disabled by a caller",
        )
        .await?
        .ok_or(FeedError::NotFound(Entity::WebhookEndpoint))
    }

    /// Deletes an endpoint.
    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<(), FeedError> {
        let id = endpoint_id(id)?;
        if store::delete(&self.pool, &caller.organization_id, id).await? {
            Ok(())
        } else {
            Err(FeedError::NotFound(Entity::WebhookEndpoint))
        }
    }

    /// A new secret for an endpoint (the old one signs too for [`ROTATION_OVERLAP`]).
    pub async fn rotate_webhook_secret(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<String, FeedError> {
        let id = endpoint_id(id)?;
        let secret = new_secret()?;
        if store::rotate(
            &self.pool,
            &caller.organization_id,
            id,
            &secret,
            ROTATION_OVERLAP,
        )
        .await?
        {
            Ok(secret)
        } else {
            Err(FeedError::NotFound(Entity::WebhookEndpoint))
        }
    }

    /// An endpoint's attempts, newest first, a page at a time.
    pub async fn webhook_attempts(
        &self,
        caller: &Caller,
        id: &str,
        event_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<store::AttemptRow>, String), FeedError> {
        event_id_field(event_id)?;
        sms_core::text::check(
            "page_token",
            page_token,
            MAX_PAGE_TOKEN,
            sms_core::text::Lines::Single,
        )?;
        let id = endpoint_id(id)?;
        let before = match page_token.trim() {
            "" => None,
            t => Some(
                t.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(FeedError::InvalidPageToken)?,
            ),
        };
        // 0: the default page; at most 500.
        let limit = i64::from(match page_size {
            0 => 50,
            n => n.min(500),
        });
        if !store::exists(&self.pool, &caller.organization_id, id).await? {
            return Err(FeedError::NotFound(Entity::WebhookEndpoint));
        }
        let event = Some(event_id.trim()).filter(|e| !e.is_empty());
        let rows = store::attempts(&self.pool, id, event, before, limit).await?;
        let next = if i64::try_from(rows.len()).unwrap_or(0) == limit {
            rows.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// Delivers an event (or every failed delivery) to an endpoint again; how many.
    pub async fn replay_webhooks(
        &self,
        caller: &Caller,
        id: &str,
        event_id: &str,
        all_failed: bool,
    ) -> Result<u64, FeedError> {
        event_id_field(event_id)?;
        let id = endpoint_id(id)?;
        let event_id = event_id.trim();
        if event_id.is_empty() != all_failed {
            return Err(FeedError::InvalidReplay);
        }
        let org = &caller.organization_id;
        if !store::exists(&self.pool, org, id).await? {
            return Err(FeedError::NotFound(Entity::WebhookEndpoint));
        }
        if all_failed {
            return Ok(store::replay_failed(&self.pool, id).await?);
        }
        if store::replay_event(&self.pool, org, id, event_id).await? {
            Ok(1)
        } else {
            Err(FeedError::NotFound(Entity::Event))
        }
    }

    /// Fans the feed out to endpoints and delivers, until `shutdown`.
    pub async fn run_webhooks(self, config: WebhookConfig, shutdown: CancellationToken) {
        let fan_out = {
            let app = self.clone();
            let shutdown = shutdown.clone();
            async move {
                loop {
                    let written = app.written.notified();
                    match store::fan_out(&app.pool, 50, 500).await {
                        Ok((served, made)) if served > 0 => {
                            if made > 0 {
                                app.due.notify_waiters();
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "webhook fan-out failed"),
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        // What is written over the next moment goes out in the same pass: a
                        // busy composer writes the feed hundreds of times a second, and a pass
                        // per write cost the accept path (P2) for nothing.
                        () = written => tokio::time::sleep(GATHER).await,
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
            }
        };
        tokio::join!(fan_out, self.deliver(config, shutdown));
    }

    async fn deliver(self, config: WebhookConfig, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let in_flight = Arc::new(InFlight::default());
        let config = Arc::new(config);
        // A lease outlasts an attempt, so that no other replica takes a delivery still under way.
        let lease = config.timeout + Duration::from_secs(5);
        // An attempt that ends frees a slot (and maybe its endpoint's share): look again at
        // once, not after the next poll. Without this an endpoint got at most its share every
        // poll (4 per replica every 200 ms), and a backlog drained at ~40 a second.
        let freed = Arc::new(tokio::sync::Notify::new());
        loop {
            let due = self.due.notified();
            let free = slots.available_permits();
            let taken = if free == 0 {
                Vec::new()
            } else {
                let full = in_flight.full();
                store::take_due(
                    &self.pool,
                    &full,
                    i64::try_from(PER_ENDPOINT).unwrap_or(4),
                    i64::try_from(free).unwrap_or(1),
                    lease,
                )
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not take webhook deliveries");
                    Vec::new()
                })
            };
            let more = !taken.is_empty();
            for d in taken {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Left leased: taken again when the lease ends.
                    break;
                };
                in_flight.add(d.endpoint_id);
                let (app, config, in_flight, freed) = (
                    self.clone(),
                    config.clone(),
                    in_flight.clone(),
                    freed.clone(),
                );
                tokio::spawn(async move {
                    let endpoint = d.endpoint_id;
                    app.attempt(&config, d).await;
                    in_flight.done(endpoint);
                    drop(permit);
                    freed.notify_one();
                });
            }
            if more && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = due => {}
                () = freed.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One attempt at a delivery, recorded.
    async fn attempt(&self, config: &WebhookConfig, d: Due) {
        let Ok(event) = sms_proto::v1::FeedEvent::decode(d.payload.as_slice()) else {
            tracing::error!(event_id = %d.event_id, "webhook payload does not decode; dropped");
            return;
        };
        let body = sms_proto::feed_json::webhook_body(&event)
            .to_string()
            .into_bytes();
        let started = Utc::now();
        let clock = std::time::Instant::now();
        let headers = headers(&d.secrets, &d.event_id, started.timestamp(), &body);
        let answer = self.fetcher.post(&d.url, &headers, body).await;
        let duration_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (http_status, error, response, ok) = match answer {
            Ok(p) => {
                let ok = (200..300).contains(&p.status);
                let error = if ok {
                    String::new()
                } else if (300..400).contains(&p.status) {
                    format!("HTTP {} (redirects are not followed)", p.status)
                } else {
                    format!("HTTP {}", p.status)
                };
                let response = String::from_utf8_lossy(&p.body_start).into_owned();
                (Some(i32::from(p.status)), error, response, ok)
            }
            Err(e @ FetchError::Timeout) => (
                None,
                format!("{e} ({} ms)", config.timeout.as_millis()),
                String::new(),
                false,
            ),
            Err(e) => (None, e.to_string(), String::new(), false),
        };
        let retry = if ok {
            None
        } else {
            Some(config.retry_after(d.attempt).map(|delay| {
                started + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
            }))
        };
        let attempted = Attempted {
            at: started,
            duration_ms,
            http_status,
            error: error.chars().take(500).collect(),
            response: response.chars().take(1024).collect(),
            retry,
        };
        metrics::counter!(sms_runtime::metrics::WEBHOOK_ATTEMPTS, "outcome" => attempted.outcome().as_str())
            .increment(1);
        let disable_before = Utc::now()
            - chrono::Duration::from_std(config.disable_after).unwrap_or(chrono::Duration::MAX);
        match store::record(&self.pool, &d, &attempted, disable_before).await {
            Ok(Some(reason)) => {
                tracing::warn!(endpoint = %d.endpoint_id, %reason, "webhook endpoint disabled");
            }
            Ok(None) => {}
            // The lease ends and the delivery is attempted again: at least once.
            Err(e) => tracing::warn!(error = %e, "could not record a webhook attempt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_32_random_bytes() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        let key = STANDARD.decode(a.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_then_stop() {
        let config = WebhookConfig {
            retries: DEFAULT_RETRIES.to_vec(),
            timeout: Duration::from_secs(10),
            disable_after: DEFAULT_DISABLE_AFTER,
            allow_http: false,
            allow_private: Vec::new(),
        };
        for (i, base) in DEFAULT_RETRIES.iter().enumerate() {
            let attempt = i32::try_from(i + 1).unwrap();
            for _ in 0..50 {
                let d = config.retry_after(attempt).unwrap();
                assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{d:?}");
            }
        }
        assert_eq!(config.retry_after(8), None);
        let total: Duration = DEFAULT_RETRIES.iter().sum();
        assert!(total > Duration::from_secs(24 * 3600), "{total:?}");
    }

    #[test]
    fn a_slow_endpoint_takes_only_its_own_slots() {
        let f = InFlight::default();
        let (slow, other) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..PER_ENDPOINT {
            f.add(slow);
        }
        f.add(other);
        assert_eq!(f.full(), vec![slow]);
        f.done(slow);
        assert!(f.full().is_empty());
    }
}
