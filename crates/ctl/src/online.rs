//! Sending and reading messages: `smsctl send`, `get`, `list`, `usage`, `errored-leads`,
//! `media`.

use std::process::ExitCode;

use crate::connection::{Connection, explain, messaging};
use crate::format::{message_json, parse_time, reason_suffix, status_name, timestamp};
use crate::templates::read_context;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::{
    Direction, GetMessageRequest, GetUsageRequest, ListErroredLeadsRequest, ListMessagesRequest,
    MessageStatus, SendMessageRequest,
};

/// `smsctl usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// First month, YYYY-MM (default: this month).
    #[arg(long)]
    from: Option<String>,
    /// Last month, YYYY-MM (default: the first).
    #[arg(long)]
    to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `smsctl send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipient, E.164.
    #[arg(long)]
    to: String,
    /// Sender (one of the organization's numbers); picked for the user when absent.
    #[arg(long)]
    from: Option<String>,
    /// Message body.
    #[arg(long, conflicts_with = "template")]
    body: Option<String>,
    /// Send this template instead of a body.
    #[arg(long)]
    template: Option<String>,
    /// Attach a file (MMS; repeat for several). Its type is read from its bytes.
    #[arg(long = "attach")]
    attachments: Vec<std::path::PathBuf>,
    /// A JSON file with the template's context (see `templates preview --help`).
    #[arg(long, requires = "template")]
    context: Option<std::path::PathBuf>,
    /// Idempotency key: a retried command with the same key sends nothing new.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Smart encoding: replace curly quotes, dashes and other look-alikes by GSM-7 characters
    /// when that costs fewer segments.
    #[arg(long)]
    smart: bool,
    /// Seconds the message may wait to be handed to the carrier (1 to 36000; default 36000);
    /// later, it fails as expired instead of arriving late.
    #[arg(long)]
    validity: Option<u32>,
    /// The CRM's lead (replies on the conversation are attached to it).
    #[arg(long)]
    lead: Option<String>,
    /// The CRM's contact.
    #[arg(long)]
    contact: Option<String>,
    /// Print the message as JSON.
    #[arg(long)]
    json: bool,
    /// Send later instead of now.
    #[command(flatten)]
    when: crate::later::When,
}

/// `smsctl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Message id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `smsctl list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status (accepted, queued, sent, delivered, failed, …), or `error` for every
    /// failed state.
    #[arg(long)]
    status: Option<String>,
    /// Only messages to or from this number.
    #[arg(long)]
    to: Option<String>,
    /// Only messages sent from or received on this number of ours.
    #[arg(long)]
    ours: Option<String>,
    /// Only this lead's messages.
    #[arg(long)]
    lead: Option<String>,
    /// Only `outbound` or `inbound` messages.
    #[arg(long)]
    direction: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON (one array).
    #[arg(long)]
    json: bool,
}

/// Runs `send`.
pub async fn send(conn: &Connection, args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.body.is_none() && args.template.is_none() && args.attachments.is_empty() {
        bail!("give --body, --template or --attach");
    }
    let mut client = messaging(conn.channel().await?);
    let context = args.context.as_deref().map(read_context).transpose()?;
    let (send_at, send_at_local) = args.when.fields()?;
    let mut attachments = Vec::new();
    for path in &args.attachments {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content_type = sms_core::mms::sniff(&file_name, &data)
            .with_context(|| format!("{}: not a media type an MMS can carry", path.display()))?;
        attachments.push(sms_proto::v1::NewAttachment {
            file_name,
            content_type,
            data,
            url: String::new(),
        });
    }
    let request = conn.request(
        SendMessageRequest {
            send_at,
            send_at_local,
            to: args.to,
            from: args.from.unwrap_or_default(),
            body: args.body.unwrap_or_default(),
            idempotency_key: args.idempotency_key.unwrap_or_default(),
            template_id: args.template.unwrap_or_default(),
            context,
            attachments,
            smart_encoding: args.smart,
            validity_seconds: args.validity,
            lead_id: args.lead.unwrap_or_default(),
            contact_id: args.contact.unwrap_or_default(),
        },
        true,
    )?;
    let reply = client
        .send_message(request)
        .await
        .map_err(explain)?
        .into_inner();
    let m = reply.message.context("the reply has no message")?;
    if args.json {
        println!("{}", message_json(&m));
    } else {
        println!("{}", m.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `get`.
pub async fn get(conn: &Connection, args: GetArgs) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let request = conn.request(GetMessageRequest { id: args.id }, false)?;
    let reply = client
        .get_message(request)
        .await
        .map_err(explain)?
        .into_inner();
    let m = reply.message.context("the reply has no message")?;
    if args.json {
        println!("{}", message_json(&m));
        return Ok(ExitCode::SUCCESS);
    }
    println!("Message:   {}", m.id);
    println!("From → To: {} → {}", m.from, m.to);
    println!(
        "Status:    {}{}",
        status_name(m.status),
        reason_suffix(&m.reason, m.carrier_error_code)
    );
    println!(
        "Encoding:  {}, {} segment(s), {} units",
        m.encoding, m.segments, m.characters
    );
    if !m.carrier_sid.is_empty() {
        println!("Carrier:   {}", m.carrier_sid);
    }
    println!("Body:      {}", m.body);
    for a in &m.attachments {
        let error = if a.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.error)
        };
        println!(
            "Attachment: {}  {}  {}  {} bytes  {}{error}",
            a.id, a.file_name, a.content_type, a.size, a.state
        );
    }
    for a in &m.attachments {
        println!(
            "Attachment: {}  {}  {}  {} bytes  {}{}",
            a.id,
            a.file_name,
            a.content_type,
            a.size,
            a.state,
            if a.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", a.error)
            }
        );
    }
    println!("History:");
    for h in &m.history {
        println!(
            "  {}  {}{}",
            timestamp(h.at.as_ref()),
            status_name(h.status),
            reason_suffix(&h.reason, h.carrier_error_code)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `list`.
pub async fn list(conn: &Connection, args: ListArgs) -> anyhow::Result<ExitCode> {
    let errors_only = args.status.as_deref() == Some("error");
    let status = match args.status.as_deref() {
        None | Some("error") => MessageStatus::Unspecified,
        Some(s) => {
            let parsed: sms_core::Status =
                s.parse().map_err(|e| anyhow::anyhow!("--status: {e}"))?;
            MessageStatus::from_str_name(&format!(
                "MESSAGE_STATUS_{}",
                parsed.as_str().to_uppercase()
            ))
            .unwrap_or(MessageStatus::Unspecified)
        }
    };
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let direction = match args.direction.as_deref() {
        None => Direction::Unspecified,
        Some("outbound") => Direction::Outbound,
        Some("inbound") => Direction::Inbound,
        Some(other) => bail!("--direction: expected outbound or inbound, not {other:?}"),
    };
    let request = conn.request(
        ListMessagesRequest {
            status: status as i32,
            contact_number: args.to.unwrap_or_default(),
            our_number: args.ours.unwrap_or_default(),
            page_size: args.limit.clamp(1, 500),
            page_token: String::new(),
            direction: direction as i32,
            lead_id: args.lead.unwrap_or_default(),
            errors_only,
            created_after: args
                .since
                .as_deref()
                .map(|s| parse_time("--since", s))
                .transpose()?,
            created_before: args
                .until
                .as_deref()
                .map(|s| parse_time("--until", s))
                .transpose()?,
        },
        false,
    )?;
    let reply = client
        .list_messages(request)
        .await
        .map_err(explain)?
        .into_inner();
    if args.json {
        let all: Vec<Value> = reply.messages.iter().map(message_json).collect();
        println!("{}", Value::Array(all));
    } else {
        for m in &reply.messages {
            println!(
                "{}  {}  {} → {}  {}{}  {:?}",
                m.id,
                timestamp(m.created_at.as_ref()),
                m.from,
                m.to,
                status_name(m.status),
                reason_suffix(&m.reason, m.carrier_error_code),
                m.body.chars().take(40).collect::<String>()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `usage`.
pub async fn usage(conn: &Connection, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(
        GetUsageRequest {
            from_month: args.from.unwrap_or_default(),
            to_month: args.to.unwrap_or_default(),
        },
        false,
    )?;
    let usage = client.get_usage(r).await.map_err(explain)?.into_inner();
    let rows = usage.rows;
    let today = usage.today.unwrap_or_default();
    if args.json {
        let all: Vec<Value> = rows
            .iter()
            .map(|u| {
                json!({"month": u.month, "country": u.country, "kind": u.kind,
                            "encoding": u.encoding, "messages": u.messages, "segments": u.segments})
            })
            .collect();
        println!(
            "{}",
            json!({"rows": all, "today": {"day": today.day, "segments": today.segments,
                                          "cap": today.cap}})
        );
    } else {
        match today.cap {
            0 => println!(
                "today ({}): {} segment(s), no daily cap",
                today.day, today.segments
            ),
            cap => println!(
                "today ({}): {} of {} segment(s) of the daily cap",
                today.day, today.segments, cap
            ),
        }
        for u in &rows {
            println!(
                "{}  {}  {}  {}  {} message(s), {} segment(s)",
                u.month, u.country, u.kind, u.encoding, u.messages, u.segments
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `errored-leads`.
pub async fn errored_leads(conn: &Connection, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(ListErroredLeadsRequest::default(), false)?;
    let leads = client
        .list_errored_leads(r)
        .await
        .map_err(explain)?
        .into_inner()
        .leads;
    if json_out {
        let all: Vec<Value> = leads
            .iter()
            .map(|l| {
                json!({"lead_id": l.lead_id, "errored_messages": l.errored_messages,
                            "last_error_at": timestamp(l.last_error_at.as_ref()),
                            "last_reason": l.last_reason})
            })
            .collect();
        println!("{}", Value::Array(all));
    } else {
        for l in &leads {
            println!(
                "{}  {} errored, last {} ({})",
                l.lead_id,
                l.errored_messages,
                timestamp(l.last_error_at.as_ref()),
                l.last_reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `media`: downloads an attachment.
pub async fn media(
    conn: &Connection,
    id: String,
    output: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut client = messaging(conn.channel().await?);
    let r = conn.request(sms_proto::v1::GetMediaRequest { id }, false)?;
    let reply = client.get_media(r).await.map_err(explain)?.into_inner();
    let a = reply.attachment.context("the reply has no attachment")?;
    if a.attachment_state != sms_proto::v1::AttachmentState::Stored as i32 {
        bail!("attachment {} was not stored: {}", a.id, a.error);
    }
    std::fs::write(output, &reply.data).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{} ({}, {} bytes) → {}",
        a.file_name,
        a.content_type,
        reply.data.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
