//! `smsctl webhooks`: the organization's webhook endpoints, their attempts, replays.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use sms_proto::v1::webhooks_service_client::WebhooksServiceClient;
use sms_proto::v1::{
    CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, ListWebhookAttemptsRequest,
    ListWebhookEndpointsRequest, ReplayWebhookEventsRequest, RotateWebhookSecretRequest,
    SetWebhookEndpointEnabledRequest, WebhookEndpoint,
};

use crate::connection::{Connection, explain};
use crate::format::timestamp;

/// `smsctl webhooks`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint; prints its signing secret (whsec_…) this once.
    Add(AddArgs),
    /// List the endpoints.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop sending to an endpoint (its events are kept for it).
    Disable {
        /// Endpoint id.
        id: String,
    },
    /// Send to an endpoint again, from where it stopped.
    Enable {
        /// Endpoint id.
        id: String,
    },
    /// Delete an endpoint, with its deliveries and attempts.
    Delete {
        /// Endpoint id.
        id: String,
    },
    /// A new signing secret, printed this once; the old one also signs for a day.
    Rotate {
        /// Endpoint id.
        id: String,
    },
    /// An endpoint's delivery attempts, newest first.
    Attempts(AttemptsArgs),
    /// Deliver an event to an endpoint again, or every delivery that failed.
    Replay(ReplayArgs),
}

/// `smsctl webhooks add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where events are POSTed (https).
    url: String,
    /// Event types, comma-separated (message.status, message.inbound, optout.changed,
    /// number.changed); all when not given.
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// A note for people.
    #[arg(long, default_value = "")]
    description: String,
}

/// `smsctl webhooks attempts`.
#[derive(Debug, Args)]
pub struct AttemptsArgs {
    /// Endpoint id.
    id: String,
    /// Only this event's attempts.
    #[arg(long, default_value = "")]
    event: String,
    /// How many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

/// `smsctl webhooks replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Endpoint id.
    id: String,
    /// The event to deliver again.
    #[arg(long, required_unless_present = "failed", conflicts_with = "failed")]
    event: Option<String>,
    /// Every delivery of the endpoint that failed.
    #[arg(long)]
    failed: bool,
}

fn line(e: &WebhookEndpoint) -> String {
    let types = if e.event_types.is_empty() {
        "all events".to_owned()
    } else {
        e.event_types.join(",")
    };
    let state = if e.enabled {
        match &e.failing_since {
            Some(t) => format!("enabled, failing since {}", timestamp(Some(t))),
            None => "enabled".to_owned(),
        }
    } else {
        format!("disabled ({})", e.disabled_reason)
    };
    format!("{}  {}  [{types}]  {state}", e.id, e.url)
}

/// Runs `webhooks`.
pub async fn webhooks(conn: &Connection, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let mut client = WebhooksServiceClient::new(conn.channel().await?);
    match command {
        WebhooksCommand::Add(a) => {
            let r = client
                .create_webhook_endpoint(conn.request(
                    CreateWebhookEndpointRequest {
                        url: a.url,
                        event_types: a.events,
                        description: a.description,
                    },
                    false,
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(e) = &r.endpoint {
                println!("{}", line(e));
            }
            println!(
                "secret: {}  (shown this once: keep it to check signatures)",
                r.secret
            );
        }
        WebhooksCommand::List { json } => {
            let r = client
                .list_webhook_endpoints(conn.request(ListWebhookEndpointsRequest {}, false)?)
                .await
                .map_err(explain)?
                .into_inner();
            for e in &r.endpoints {
                if json {
                    println!(
                        "{}",
                        json!({"id": e.id, "url": e.url, "event_types": e.event_types,
                               "description": e.description, "enabled": e.enabled,
                               "disabled_reason": e.disabled_reason,
                               "failing_since": e.failing_since.as_ref().map(|t| timestamp(Some(t))),
                               "created_at": timestamp(e.created_at.as_ref())})
                    );
                } else {
                    println!("{}", line(e));
                }
            }
        }
        WebhooksCommand::Disable { id } => {
            return set_enabled(conn, &mut client, id, false).await;
        }
        WebhooksCommand::Enable { id } => {
            return set_enabled(conn, &mut client, id, true).await;
        }
        WebhooksCommand::Delete { id } => {
            client
                .delete_webhook_endpoint(
                    conn.request(DeleteWebhookEndpointRequest { endpoint_id: id }, false)?,
                )
                .await
                .map_err(explain)?;
            println!("deleted");
        }
        WebhooksCommand::Rotate { id } => {
            let r = client
                .rotate_webhook_secret(
                    conn.request(RotateWebhookSecretRequest { endpoint_id: id }, false)?,
                )
                .await
                .map_err(explain)?
                .into_inner();
            println!(
                "secret: {}  (shown this once; the old secret also signs for a day)",
                r.secret
            );
        }
        WebhooksCommand::Attempts(a) => {
            let r = client
                .list_webhook_attempts(conn.request(
                    ListWebhookAttemptsRequest {
                        endpoint_id: a.id,
                        event_id: a.event,
                        page_size: a.limit,
                        page_token: String::new(),
                    },
                    false,
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            for t in &r.attempts {
                let next = t
                    .next_attempt_at
                    .as_ref()
                    .map(|n| timestamp(Some(n)))
                    .unwrap_or_default();
                if a.json {
                    println!(
                        "{}",
                        json!({"event_id": t.event_id, "event_type": t.event_type,
                               "attempt": t.attempt,
                               "attempted_at": timestamp(t.attempted_at.as_ref()),
                               "duration_ms": t.duration_ms, "http_status": t.http_status,
                               "error": t.error, "response": t.response, "outcome": t.outcome,
                               "next_attempt_at": next})
                    );
                } else {
                    let status = if t.http_status == 0 {
                        "no answer".to_owned()
                    } else {
                        format!("HTTP {}", t.http_status)
                    };
                    let mut l = format!(
                        "{}  {} #{} {}  {status} in {} ms  {}",
                        timestamp(t.attempted_at.as_ref()),
                        t.event_id,
                        t.attempt,
                        t.event_type,
                        t.duration_ms,
                        t.outcome
                    );
                    if !t.error.is_empty() {
                        l.push_str(&format!(" ({})", t.error));
                    }
                    if !next.is_empty() {
                        l.push_str(&format!(", next at {next}"));
                    }
                    println!("{l}");
                }
            }
        }
        WebhooksCommand::Replay(a) => {
            let r = client
                .replay_webhook_events(conn.request(
                    ReplayWebhookEventsRequest {
                        endpoint_id: a.id,
                        event_id: a.event.unwrap_or_default(),
                        all_failed: a.failed,
                    },
                    false,
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            println!("{} deliveries scheduled", r.scheduled);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    conn: &Connection,
    client: &mut WebhooksServiceClient<tonic::transport::Channel>,
    id: String,
    enabled: bool,
) -> anyhow::Result<ExitCode> {
    let r = client
        .set_webhook_endpoint_enabled(conn.request(
            SetWebhookEndpointEnabledRequest {
                endpoint_id: id,
                enabled,
            },
            false,
        )?)
        .await
        .map_err(explain)?
        .into_inner();
    if let Some(e) = &r.endpoint {
        println!("{}", line(e));
    }
    Ok(ExitCode::SUCCESS)
}
