//! `smsctl events`: the organization's event feed.

use std::process::ExitCode;

use clap::Args;
use sms_proto::feed_json::{self, status_name};
use sms_proto::v1::events_service_client::EventsServiceClient;
use sms_proto::v1::{FeedEvent, SubscribeRequest, feed_event};

use crate::connection::{Connection, explain};

/// `smsctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep following new events (otherwise stop once the feed has been read).
    #[arg(long)]
    follow: bool,
    /// Resume after this cursor (printed with each event); without it, from the oldest event
    /// kept (or, with --follow, from now).
    #[arg(long)]
    from: Option<String>,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

fn line_of(e: &FeedEvent) -> String {
    let what = match &e.event {
        Some(feed_event::Event::MessageStatus(s)) => {
            let mut l = format!(
                "message {} {} ({} → {})",
                s.message_id,
                status_name(s.status),
                s.from,
                s.to
            );
            if !s.reason.is_empty() {
                l.push_str(&format!(" reason {}", s.reason));
            }
            if !s.lead_id.is_empty() {
                l.push_str(&format!(" lead {}", s.lead_id));
            }
            l
        }
        Some(feed_event::Event::InboundMessage(m)) => format!(
            "inbound {} from {} to {}{}: {}",
            m.message_id,
            m.from,
            m.to,
            if m.lead_id.is_empty() {
                String::new()
            } else {
                format!(" lead {}", m.lead_id)
            },
            m.body
        ),
        Some(feed_event::Event::OptOut(o)) => format!(
            "{} {} ({})",
            o.contact_number,
            if o.opted_out { "opted out" } else { "opted in" },
            o.source
        ),
        Some(feed_event::Event::Number(n)) => format!(
            "number {} {}",
            n.number,
            if n.active { "active" } else { "released" }
        ),
        None => e.r#type.clone(),
    };
    format!("{}  {what}", e.cursor)
}

/// Runs `events`.
pub async fn events(conn: &Connection, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut client = EventsServiceClient::new(conn.channel().await?);
    let request = SubscribeRequest {
        cursor: args.from.clone().unwrap_or_default(),
        from_start: args.from.is_none() && !args.follow,
    };
    let mut stream = client
        .subscribe(conn.request(request, false)?)
        .await
        .map_err(explain)?
        .into_inner();
    loop {
        // Without --follow: stop once nothing more comes for a moment (the feed is read).
        let next = if args.follow {
            stream.message().await.map_err(explain)?
        } else {
            match tokio::time::timeout(std::time::Duration::from_secs(1), stream.message()).await {
                Ok(next) => next.map_err(explain)?,
                Err(_) => None,
            }
        };
        let Some(response) = next else {
            return Ok(ExitCode::SUCCESS);
        };
        let Some(event) = response.event else {
            continue;
        };
        if args.json {
            println!("{}", feed_json::event(&event));
        } else {
            println!("{}", line_of(&event));
        }
    }
}
