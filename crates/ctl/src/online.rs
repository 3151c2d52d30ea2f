//! Commands that talk to the platform over gRPC.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use sms_proto::v1::{
    AddGroupMemberRequest, AddNumberRequest, CreateGroupRequest, CreateTemplateRequest,
    DeleteTemplateRequest, Direction, GetMessageRequest, GetNumberRequest, GetTemplateRequest,
    GetUsageRequest, Group, ListErroredLeadsRequest, ListGroupsRequest, ListMessagesRequest,
    ListNumbersRequest, ListTemplatesRequest, Message, MessageStatus, NumberKind, PhoneNumber,
    PreviewRequest, ReleaseNumberRequest, RemoveGroupMemberRequest, SendMessageRequest, Template,
    TemplateContext, UpdateTemplateRequest, add_number_request, preview_request,
};
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// Where and as whom to call: from `SMS_*` variables, overridden by flags.
#[derive(Debug, Args)]
pub struct Connection {
    /// gRPC endpoint of the opt-out registry.
    #[arg(
        long,
        env = "SMS_OPTOUT_ENDPOINT",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub optout_endpoint: String,
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
    /// The user's role in the organization: member (the default) or admin (needed to manage
    /// numbers, groups, settings, webhooks, opt-ins and replies).
    #[arg(long, env = "SMS_ROLE", global = true)]
    role: Option<String>,
}

/// `smsctl numbers …`.
#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Search the numbers the carrier has for rent in a country (warns when only voice-only
    /// numbers are available).
    Search(crate::renting::SearchArgs),
    /// Rent a number from the carrier (as a search listed it): it sends and receives at once.
    Rent {
        /// The number, E.164.
        number: String,
        #[command(flatten)]
        owner: crate::renting::OwnerArgs,
        /// Rent it even though it cannot send SMS.
        #[arg(long)]
        allow_voice_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take on a number the carrier account already holds (ported in, bought elsewhere).
    Import {
        /// The number, E.164.
        number: String,
        #[command(flatten)]
        owner: crate::renting::OwnerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a number without the carrier: an external number (--external), or one the
    /// carrier is set up for by other means.
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
        /// Its own send rate, in segments a second (default: the carriers' usual limit for
        /// its kind: long code 1, toll-free 3, short code 100).
        #[arg(long)]
        rate: Option<f64>,
        /// Its burst, in segments (default: the rate rounded up).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
        /// The carrier connection its messages go through (`twilio`, or an SMPP
        /// connection's name; default: the platform's default).
        #[arg(long)]
        carrier: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set which carrier connection a number's messages go through (`default` for the
    /// platform's default).
    Carrier {
        /// E.164 or id.
        number: String,
        /// `twilio`, an SMPP connection's name, or `default`.
        connection: String,
    },
    /// Set how fast a number may send (`--rate 0` puts it back to its kind's default).
    Rate {
        /// E.164 or id.
        number: String,
        /// Segments a second.
        #[arg(long)]
        rate: f64,
        /// Segments at once (default: the rate rounded up).
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List the organization's numbers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one number.
    Get {
        /// E.164 or id.
        number: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a number: it stops sending at once, and a rented or imported number is given
    /// back to the carrier.
    Release {
        /// E.164 or id.
        number: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `smsctl groups …`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Create a group; prints its id.
    Create {
        /// Name.
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        /// Group id.
        group: String,
        /// User id.
        user: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        /// Group id.
        group: String,
        /// User id.
        user: String,
    },
    /// List groups and their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `smsctl templates …`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Save a template; prints its id.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Body with CRM tags, e.g. "Hi {{ contact.first_name }}".
        #[arg(long)]
        body: String,
        /// Visible to the whole organization.
        #[arg(long)]
        shared: bool,
    },
    /// Change a template (only its creator may).
    Update {
        /// Template id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New body.
        #[arg(long)]
        body: Option<String>,
        /// Share with the organization (true) or keep private (false).
        #[arg(long)]
        shared: Option<bool>,
    },
    /// Show a template.
    Get {
        /// Template id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the templates you can see.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template (only its creator may).
    Delete {
        /// Template id.
        id: String,
    },
    /// Render a template or a raw body and show what it costs.
    Preview {
        /// Template id.
        #[arg(long, conflicts_with = "body", required_unless_present = "body")]
        id: Option<String>,
        /// A raw body with tags.
        #[arg(long)]
        body: Option<String>,
        /// A JSON file with the context: {"lead": {...}, "contact": {...}, "user": {...},
        /// "organization": {...}}.
        #[arg(long)]
        context: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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

impl Connection {
    /// The calling user, if set.
    pub(crate) fn user(&self) -> Option<String> {
        self.user.clone()
    }

    pub(crate) async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("SMS_ENDPOINT {:?} is not a valid URL", self.endpoint))?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the platform at {}", self.endpoint))
    }

    pub(crate) fn request<T>(
        &self,
        message: T,
        need_user: bool,
    ) -> anyhow::Result<tonic::Request<T>> {
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
        if let Some(role) = &self.role {
            md.insert(
                "x-user-role",
                role.parse().context("--role is not valid metadata")?,
            );
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
pub(crate) fn explain(status: tonic::Status) -> anyhow::Error {
    let reason = status
        .get_details_error_info()
        .map(|info| format!(" [{}]", info.reason))
        .unwrap_or_default();
    anyhow::anyhow!("{}{reason}", status.message())
}

/// Runs `numbers`.
pub async fn numbers(conn: &Connection, command: NumbersCommand) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    match command {
        NumbersCommand::Add {
            number,
            owner_user,
            owner_group,
            external,
            rate,
            burst,
            carrier,
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
                    send_rate: rate,
                    send_burst: burst,
                    carrier_connection: carrier.unwrap_or_default(),
                    ..Default::default()
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
        NumbersCommand::Get { number, json } => {
            let request = conn.request(GetNumberRequest { number }, false)?;
            let reply = client
                .get_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!("{}", number_json(&n));
            } else {
                println!("{}", number_line(&n));
            }
        }
        NumbersCommand::Rate {
            number,
            rate,
            burst,
        } => {
            let request = conn.request(
                sms_proto::v1::SetNumberRateRequest {
                    number,
                    send_rate: rate,
                    send_burst: burst.unwrap_or(0),
                },
                false,
            )?;
            let reply = client
                .set_number_rate(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            println!("{}", number_line(&n));
        }
        NumbersCommand::Carrier { number, connection } => {
            let connection = if connection == "default" {
                String::new()
            } else {
                connection
            };
            let request = conn.request(
                sms_proto::v1::SetNumberCarrierRequest {
                    number,
                    carrier_connection: connection,
                },
                false,
            )?;
            let reply = client
                .set_number_carrier(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            println!("{}", number_line(&n));
        }
        NumbersCommand::Search(args) => return crate::renting::search(conn, args).await,
        NumbersCommand::Rent {
            number,
            owner,
            allow_voice_only,
            json,
        } => {
            return crate::renting::take_on(conn, number, owner, Some(allow_voice_only), json)
                .await;
        }
        NumbersCommand::Import {
            number,
            owner,
            json,
        } => return crate::renting::take_on(conn, number, owner, None, json).await,
        NumbersCommand::Release { number, json } => {
            let request = conn.request(ReleaseNumberRequest { number }, false)?;
            let reply = client
                .release_number(request)
                .await
                .map_err(explain)?
                .into_inner();
            let n = reply.number.context("the reply has no number")?;
            if json {
                println!("{}", number_json(&n));
            } else {
                println!("released {}", n.number);
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

/// A Messaging client that carries attachments.
pub(crate) fn messaging(channel: Channel) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Largest gRPC message (attachments).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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

/// Runs `groups`.
pub async fn groups(conn: &Connection, command: GroupsCommand) -> anyhow::Result<ExitCode> {
    let mut client = NumbersServiceClient::new(conn.channel().await?);
    match command {
        GroupsCommand::Create { name } => {
            let r = conn.request(CreateGroupRequest { name }, false)?;
            let g = client
                .create_group(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", g.context("the reply has no group")?.id);
        }
        GroupsCommand::AddMember { group, user } => {
            let r = conn.request(
                AddGroupMemberRequest {
                    group_id: group,
                    user_id: user,
                },
                false,
            )?;
            let g = client
                .add_group_member(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", group_line(&g.context("the reply has no group")?));
        }
        GroupsCommand::RemoveMember { group, user } => {
            let r = conn.request(
                RemoveGroupMemberRequest {
                    group_id: group,
                    user_id: user,
                },
                false,
            )?;
            let g = client
                .remove_group_member(r)
                .await
                .map_err(explain)?
                .into_inner()
                .group;
            println!("{}", group_line(&g.context("the reply has no group")?));
        }
        GroupsCommand::List { json } => {
            let r = conn.request(ListGroupsRequest {}, false)?;
            let groups = client
                .list_groups(r)
                .await
                .map_err(explain)?
                .into_inner()
                .groups;
            if json {
                let all: Vec<Value> = groups
                    .iter()
                    .map(|g| json!({"id": g.id, "name": g.name, "members": g.member_user_ids}))
                    .collect();
                println!("{}", Value::Array(all));
            } else {
                for g in &groups {
                    println!("{}", group_line(g));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn group_line(g: &Group) -> String {
    format!(
        "{}  {}  members: {}",
        g.id,
        g.name,
        g.member_user_ids.join(", ")
    )
}

/// Runs `templates`.
pub async fn templates(conn: &Connection, command: TemplatesCommand) -> anyhow::Result<ExitCode> {
    let mut client = TemplatesServiceClient::new(conn.channel().await?);
    match command {
        TemplatesCommand::Create { name, body, shared } => {
            let r = conn.request(CreateTemplateRequest { name, body, shared }, true)?;
            let t = client
                .create_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            println!("{}", t.context("the reply has no template")?.id);
        }
        TemplatesCommand::Update {
            id,
            name,
            body,
            shared,
        } => {
            let r = conn.request(
                UpdateTemplateRequest {
                    id,
                    name,
                    body,
                    shared,
                },
                true,
            )?;
            let t = client
                .update_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            println!(
                "{}",
                template_line(&t.context("the reply has no template")?)
            );
        }
        TemplatesCommand::Get { id, json } => {
            let r = conn.request(GetTemplateRequest { id }, true)?;
            let t = client
                .get_template(r)
                .await
                .map_err(explain)?
                .into_inner()
                .template;
            let t = t.context("the reply has no template")?;
            if json {
                println!("{}", template_json(&t));
            } else {
                println!("{}\n{}", template_line(&t), t.body);
            }
        }
        TemplatesCommand::List { json } => {
            let r = conn.request(ListTemplatesRequest {}, true)?;
            let all = client
                .list_templates(r)
                .await
                .map_err(explain)?
                .into_inner()
                .templates;
            if json {
                println!("{}", Value::Array(all.iter().map(template_json).collect()));
            } else {
                for t in &all {
                    println!("{}", template_line(t));
                }
            }
        }
        TemplatesCommand::Delete { id } => {
            let r = conn.request(DeleteTemplateRequest { id: id.clone() }, true)?;
            client.delete_template(r).await.map_err(explain)?;
            println!("deleted {id}");
        }
        TemplatesCommand::Preview {
            id,
            body,
            context,
            json,
        } => {
            let source = match (id, body) {
                (Some(id), _) => preview_request::Source::TemplateId(id),
                (None, Some(body)) => preview_request::Source::Body(body),
                (None, None) => bail!("give --id or --body"),
            };
            let context = context.as_deref().map(read_context).transpose()?;
            let r = conn.request(
                PreviewRequest {
                    source: Some(source),
                    context,
                },
                true,
            )?;
            let p = client.preview(r).await.map_err(explain)?.into_inner();
            if json {
                println!(
                    "{}",
                    json!({
                        "body": p.body, "encoding": p.encoding, "segments": p.segments,
                        "characters": p.characters, "non_gsm": p.non_gsm, "length": p.length,
                        "too_long": p.too_long, "smart_body": p.smart_body,
                        "smart_encoding": p.smart_encoding, "smart_segments": p.smart_segments,
                        "segments_saved": p.segments_saved,
                    })
                );
            } else {
                println!("{}", p.body);
                println!("---");
                println!(
                    "{} characters{}; {}, {} segment(s), {} units",
                    p.length,
                    if p.too_long {
                        " (over the 1000-character limit)"
                    } else {
                        ""
                    },
                    p.encoding,
                    p.segments,
                    p.characters
                );
                if !p.non_gsm.is_empty() {
                    println!("UCS-2 forced by: {}", p.non_gsm.join(" "));
                }
                if p.segments_saved > 0 {
                    println!(
                        "Smart encoding would send {} in {} segment(s), saving {}",
                        p.smart_encoding, p.smart_segments, p.segments_saved
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn template_line(t: &Template) -> String {
    let visibility = if t.shared { "shared" } else { "private" };
    format!(
        "{}  {}  ({visibility}, by {})",
        t.id, t.name, t.owner_user_id
    )
}

fn template_json(t: &Template) -> Value {
    json!({
        "id": t.id, "name": t.name, "body": t.body, "shared": t.shared,
        "owner_user_id": t.owner_user_id,
        "created_at": timestamp(t.created_at.as_ref()),
        "updated_at": timestamp(t.updated_at.as_ref()),
    })
}

/// Reads a JSON context file into the protobuf context.
fn read_context(path: &std::path::Path) -> anyhow::Result<TemplateContext> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the context file {}", path.display()))?;
    let c: sms_core::template::Context = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid context (JSON)", path.display()))?;
    let map = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let a = &c.lead.primary_address;
    Ok(TemplateContext {
        lead: Some(sms_proto::v1::Lead {
            display_name: c.lead.display_name.clone(),
            name: c.lead.name.clone(),
            primary_contact_name: c.lead.primary_contact_name.clone(),
            description: c.lead.description.clone(),
            url: c.lead.url.clone(),
            status_label: c.lead.status_label.clone(),
            custom: map(&c.lead.custom),
            primary_address: Some(sms_proto::v1::Address {
                address_1: a.address_1.clone(),
                address_2: a.address_2.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                zipcode: a.zipcode.clone(),
                country: a.country.clone(),
                country_name: a.country_name.clone(),
            }),
            primary_opportunity_custom: map(&c.lead.primary_opportunity_custom),
        }),
        contact: Some(sms_proto::v1::Contact {
            name: c.contact.name.clone(),
            first_name: c.contact.first_name.clone(),
            last_name: c.contact.last_name.clone(),
            title: c.contact.title.clone(),
            phone: c.contact.phone.clone(),
            email: c.contact.email.clone(),
            url: c.contact.url.clone(),
            custom: map(&c.contact.custom),
        }),
        user: Some(sms_proto::v1::User {
            from_name: c.user.from_name.clone(),
            from_email: c.user.from_email.clone(),
            phone: c.user.phone.clone(),
            email: c.user.email.clone(),
            full_name: c.user.full_name.clone(),
            first_name: c.user.first_name.clone(),
            last_name: c.user.last_name.clone(),
        }),
        organization: Some(sms_proto::v1::Organization {
            name: c.organization.name.clone(),
        }),
    })
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

pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("{flag}: {s:?} is not an RFC 3339 time (2026-11-29T10:00:00Z)"))?;
    Ok(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

pub(crate) fn status_name(status: i32) -> String {
    MessageStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MESSAGE_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn reason_suffix(reason: &str, code: u32) -> String {
    match (reason.is_empty(), code) {
        (true, 0) => String::new(),
        (false, 0) => format!(" ({reason})"),
        (_, code) => format!(" ({reason}, carrier code {code})"),
    }
}

pub(crate) fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn message_json(m: &Message) -> Value {
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

pub(crate) fn number_json(n: &PhoneNumber) -> Value {
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
        "send_rate": n.send_rate,
        "send_burst": n.send_burst,
        "source": source_name(n.source),
        "carrier_sid": n.carrier_sid,
        "carrier_connection": n.carrier_connection,
    })
}

fn source_name(source: i32) -> &'static str {
    match sms_proto::v1::NumberSource::try_from(source) {
        Ok(sms_proto::v1::NumberSource::Rented) => "rented",
        Ok(sms_proto::v1::NumberSource::Imported) => "imported",
        _ => "recorded",
    }
}

/// What a number can do, as `sms,mms,voice`.
pub(crate) fn capabilities(sms: bool, mms: bool, voice: bool) -> String {
    [(sms, "sms"), (mms, "mms"), (voice, "voice")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn number_line(n: &PhoneNumber) -> String {
    let owner = if n.owner_group_id.is_empty() {
        format!("user {}", n.owner_user_id)
    } else {
        format!("group {}", n.owner_group_id)
    };
    let kind = if n.kind == NumberKind::External as i32 {
        "external"
    } else {
        "internal"
    };
    let rate = if n.send_rate > 0.0 {
        format!("  {}/s burst {}", n.send_rate, n.send_burst)
    } else {
        "  default rate".to_owned()
    };
    let via = if n.carrier_connection.is_empty() {
        "default carrier"
    } else {
        n.carrier_connection.as_str()
    };
    format!(
        "{}  {}  {}  {}  [{}]  {owner}{rate}  {}  via {via}",
        n.number,
        n.region,
        n.number_type,
        kind,
        capabilities(n.sms_capable, n.mms_capable, n.voice_capable),
        source_name(n.source)
    )
}

/// One message on one line, for people.
pub(crate) fn message_line(m: &Message) -> String {
    let when = if m.status == MessageStatus::Scheduled as i32 {
        format!("  due {}", timestamp(m.send_at.as_ref()))
    } else {
        String::new()
    };
    format!(
        "{}  {}  {} → {}  {}{}{when}  {:?}",
        m.id,
        timestamp(m.created_at.as_ref()),
        m.from,
        m.to,
        status_name(m.status),
        reason_suffix(&m.reason, m.carrier_error_code),
        m.body.chars().take(60).collect::<String>()
    )
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
    if a.state != "stored" {
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
