//! Commands that talk to the platform over gRPC.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sms_proto::v1::messaging_client::MessagingClient;
use sms_proto::v1::numbers_client::NumbersClient;
use sms_proto::v1::{
    AddNumberRequest, GetMessageRequest, ListMessagesRequest, ListNumbersRequest, Message,
    MessageStatus, NumberKind, PhoneNumber, SendMessageRequest, add_number_request,
};
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// Where and as whom to call: from `SMS_*` variables, overridden by flags.
#[derive(Debug, Args)]
pub struct Connection {
    /// gRPC endpoint of the platform.
    #[arg(
        long,
        env = "SMS_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,
    /// Bearer token.
    #[arg(long, env = "SMS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Organization id.
    #[arg(long, env = "SMS_ORG", global = true)]
    org: Option<String>,
    /// User id.
    #[arg(long, env = "SMS_USER", global = true)]
    user: Option<String>,
}

/// `smsctl numbers …`.
#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Add (rent) a number for the organization.
    Add {
        /// The number, E.164.
        number: String,
        /// Owning user (default: the calling user).
        #[arg(long, conflicts_with = "owner_group")]
        owner_user: Option<String>,
        /// Owning group.
        #[arg(long)]
        owner_group: Option<String>,
        /// An external number (never used to send).
        #[arg(long)]
        external: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the organization's numbers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
    #[arg(long)]
    body: String,
    /// Idempotency key: a retried command with the same key sends nothing new.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the message as JSON.
    #[arg(long)]
    json: bool,
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
    /// Only this status (accepted, queued, sent, delivered, failed, …).
    #[arg(long)]
    status: Option<String>,
    /// Only messages to or from this number.
    #[arg(long)]
    to: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON (one array).
    #[arg(long)]
    json: bool,
}

impl Connection {
    async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("SMS_ENDPOINT {:?} is not a valid URL", self.endpoint))?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the platform at {}", self.endpoint))
    }

    fn request<T>(&self, message: T, need_user: bool) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let md = request.metadata_mut();
        let Some(org) = &self.org else {
            bail!("no organization: set SMS_ORG or pass --org");
        };
        md.insert(
            "x-organization-id",
            org.parse().context("--org is not valid metadata")?,
        );
        match &self.user {
            Some(user) => {
                md.insert(
                    "x-user-id",
                    user.parse().context("--user is not valid metadata")?,
                );
            }
            None if need_user => bail!("no user: set SMS_USER or pass --user"),
            None => {}
        }
        if let Some(token) = &self.token {
            md.insert(
                "authorization",
                format!("Bearer {token}")
                    .parse()
                    .context("the token is not valid metadata")?,
            );
        }
        Ok(request)
    }
}

/// A gRPC error, printed plainly with its machine-readable reason.
fn explain(status: tonic::Status) -> anyhow::Error {
    let reason = status
        .get_details_error_info()
        .map(|info| format!(" [{}]", info.reason))
        .unwrap_or_default();
    anyhow::anyhow!("{}{reason}", status.message())
}

/// Runs `numbers`.
pub async fn numbers(conn: &Connection, command: NumbersCommand) -> anyhow::Result<ExitCode> {
    let mut client = NumbersClient::new(conn.channel().await?);
    match command {
        NumbersCommand::Add {
            number,
            owner_user,
            owner_group,
            external,
            json,
        } => {
            let owner = match (owner_group, owner_user.or_else(|| conn.user.clone())) {
                (Some(g), _) => add_number_request::Owner::OwnerGroupId(g),
                (None, Some(u)) => add_number_request::Owner::OwnerUserId(u),
                (None, None) => {
                    bail!("no owner: pass --owner-user or --owner-group, or set SMS_USER")
                }
            };
            let kind = if external {
                NumberKind::External
            } else {
                NumberKind::Internal
            };
            let request = conn.request(
                AddNumberRequest {
                    number,
                    kind: kind as i32,
                    owner: Some(owner),
                },
                false,
            )?;
            let reply = client
                .add_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!(
                    "{}",
                    json!({ "number": number_json(&n), "warnings": reply.warnings })
                );
            } else {
                println!("{}", number_line(&n));
                for w in &reply.warnings {
                    eprintln!("warning: {w}");
                }
            }
        }
        NumbersCommand::List { json } => {
            let request = conn.request(ListNumbersRequest {}, false)?;
            let reply = client
                .list_numbers(request)
                .await
                .map_err(explain)?
                .into_inner();
            if json {
                let all: Vec<Value> = reply.numbers.iter().map(number_json).collect();
                println!("{}", Value::Array(all));
            } else {
                for n in &reply.numbers {
                    println!("{}", number_line(n));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `send`.
pub async fn send(conn: &Connection, args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut client = MessagingClient::new(conn.channel().await?);
    let request = conn.request(
        SendMessageRequest {
            to: args.to,
            from: args.from.unwrap_or_default(),
            body: args.body,
            idempotency_key: args.idempotency_key.unwrap_or_default(),
            ..Default::default()
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
    let mut client = MessagingClient::new(conn.channel().await?);
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
    let status = match args.status.as_deref() {
        None => MessageStatus::Unspecified,
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
    let mut client = MessagingClient::new(conn.channel().await?);
    let request = conn.request(
        ListMessagesRequest {
            status: status as i32,
            contact_number: args.to.unwrap_or_default(),
            page_size: args.limit.clamp(1, 500),
            page_token: String::new(),
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

fn status_name(status: i32) -> String {
    MessageStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MESSAGE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn reason_suffix(reason: &str, code: u32) -> String {
    match (reason.is_empty(), code) {
        (true, 0) => String::new(),
        (false, 0) => format!(" ({reason})"),
        (_, code) => format!(" ({reason}, carrier code {code})"),
    }
}

fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "organization_id": m.organization_id,
        "direction": if m.direction == 2 { "inbound" } else { "outbound" },
        "from": m.from,
        "to": m.to,
        "body": m.body,
        "status": status_name(m.status),
        "reason": m.reason,
        "carrier_error_code": m.carrier_error_code,
        "encoding": m.encoding,
        "segments": m.segments,
        "characters": m.characters,
        "user_id": m.user_id,
        "carrier_sid": m.carrier_sid,
        "created_at": timestamp(m.created_at.as_ref()),
        "updated_at": timestamp(m.updated_at.as_ref()),
        "history": m.history.iter().map(|h| json!({
            "status": status_name(h.status),
            "at": timestamp(h.at.as_ref()),
            "reason": h.reason,
            "carrier_error_code": h.carrier_error_code,
        })).collect::<Vec<_>>(),
    })
}

fn number_json(n: &PhoneNumber) -> Value {
    json!({
        "id": n.id,
        "number": n.number,
        "region": n.region,
        "number_type": n.number_type,
        "sms_capable": n.sms_capable,
        "mms_capable": n.mms_capable,
        "voice_capable": n.voice_capable,
        "kind": if n.kind == NumberKind::External as i32 { "external" } else { "internal" },
        "owner_user_id": n.owner_user_id,
        "owner_group_id": n.owner_group_id,
    })
}

fn number_line(n: &PhoneNumber) -> String {
    let owner = if n.owner_group_id.is_empty() {
        format!("user {}", n.owner_user_id)
    } else {
        format!("group {}", n.owner_group_id)
    };
    let caps: Vec<&str> = [
        (n.sms_capable, "sms"),
        (n.mms_capable, "mms"),
        (n.voice_capable, "voice"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    let kind = if n.kind == NumberKind::External as i32 {
        "external"
    } else {
        "internal"
    };
    format!(
        "{}  {}  {}  {}  [{}]  {owner}",
        n.number,
        n.region,
        n.number_type,
        kind,
        caps.join(",")
    )
}
