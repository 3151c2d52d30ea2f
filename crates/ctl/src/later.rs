//! Commands for send-later, conversations, the inbox and opt-outs.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::{
    AddOptOutRequest, CancelMessageRequest, CheckOptOutRequest, GetConversationRequest,
    ListInboxRequest, ListOptOutsRequest, LocalDateTime, MarkInboxDoneRequest, OptOutStatus,
    RemoveOptOutRequest, RescheduleMessageRequest, SetRepliesRequest,
};

use crate::connection::{Connection, explain};
use crate::format::{message_json, message_line, parse_time, timestamp};

/// When to send: an instant or a local time in a zone.
#[derive(Debug, Args, Default)]
pub struct When {
    /// Send at this instant (RFC 3339, e.g. 2026-12-01T14:00:00Z).
    #[arg(long, conflicts_with_all = ["local", "tz"])]
    pub at: Option<String>,
    /// Send at this local time (e.g. 2026-12-01T09:00) in --tz.
    #[arg(long, requires = "tz")]
    pub local: Option<String>,
    /// IANA time zone of --local (e.g. America/New_York).
    #[arg(long, requires = "local")]
    pub tz: Option<String>,
}

impl When {
    /// The request fields.
    pub fn fields(
        &self,
    ) -> anyhow::Result<(Option<prost_types::Timestamp>, Option<LocalDateTime>)> {
        let at = self
            .at
            .as_deref()
            .map(|a| parse_time("--at", a))
            .transpose()?;
        let local = match (&self.local, &self.tz) {
            (Some(date_time), Some(time_zone)) => Some(LocalDateTime {
                date_time: date_time.clone(),
                time_zone: time_zone.clone(),
            }),
            _ => None,
        };
        Ok((at, local))
    }
}

/// `smsctl reschedule`.
#[derive(Debug, Args)]
pub struct RescheduleArgs {
    /// Message id.
    id: String,
    #[command(flatten)]
    when: When,
}

/// `smsctl conversation`.
#[derive(Debug, Args)]
pub struct ConversationArgs {
    /// One of our numbers.
    #[arg(long)]
    ours: String,
    /// The contact.
    #[arg(long)]
    contact: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `smsctl inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Include messages marked done.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `smsctl optouts …` (the registry's endpoint: SMS_OPTOUT_ENDPOINT, default
/// http://127.0.0.1:50052).
#[derive(Debug, Subcommand)]
pub enum OptOutsCommand {
    /// Is this contact opted out?
    Check {
        /// The contact.
        number: String,
    },
    /// Opt a contact out by hand.
    Add {
        /// The contact.
        number: String,
        /// Why (recorded with your user id).
        #[arg(long)]
        reason: String,
    },
    /// Opt a contact back in by hand.
    Remove {
        /// The contact.
        number: String,
        /// Why (recorded with your user id).
        #[arg(long)]
        reason: String,
    },
    /// List opted-out contacts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the automatic replies (empty: the default).
    Replies {
        /// Reply to HELP / INFO.
        #[arg(long, default_value = "")]
        help_text: String,
        /// One-time reply to an opt-out.
        #[arg(long, default_value = "")]
        confirmation: String,
    },
}

/// Runs `cancel`.
pub async fn cancel(conn: &Connection, id: String) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(CancelMessageRequest { id }, false)?;
    let m = client
        .cancel_message(r)
        .await
        .map_err(explain)?
        .into_inner()
        .message;
    println!("{}", message_line(&m.context("the reply has no message")?));
    Ok(ExitCode::SUCCESS)
}

/// Runs `reschedule`.
pub async fn reschedule(conn: &Connection, args: RescheduleArgs) -> anyhow::Result<ExitCode> {
    let (send_at, send_at_local) = args.when.fields()?;
    if send_at.is_none() && send_at_local.is_none() {
        bail!("give --at, or --local with --tz");
    }
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(
        RescheduleMessageRequest {
            id: args.id,
            send_at,
            send_at_local,
        },
        false,
    )?;
    let reply = client
        .reschedule_message(r)
        .await
        .map_err(explain)?
        .into_inner();
    for note in &reply.notes {
        eprintln!("note: {note}");
    }
    println!(
        "{}",
        message_line(&reply.message.context("the reply has no message")?)
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `conversation`.
pub async fn conversation(conn: &Connection, args: ConversationArgs) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(
        GetConversationRequest {
            our_number: args.ours,
            contact_number: args.contact,
            page_size: 500,
            page_token: String::new(),
        },
        false,
    )?;
    let messages = client
        .get_conversation(r)
        .await
        .map_err(explain)?
        .into_inner()
        .messages;
    if args.json {
        println!(
            "{}",
            Value::Array(messages.iter().map(message_json).collect())
        );
    } else {
        for m in &messages {
            println!("{}", message_line(m));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `inbox`.
pub async fn inbox(conn: &Connection, args: InboxArgs) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(
        ListInboxRequest {
            include_done: args.all,
            ..Default::default()
        },
        true,
    )?;
    let messages = client
        .list_inbox(r)
        .await
        .map_err(explain)?
        .into_inner()
        .messages;
    if args.json {
        println!(
            "{}",
            Value::Array(messages.iter().map(message_json).collect())
        );
    } else {
        for m in &messages {
            println!(
                "{}{}",
                message_line(m),
                if m.done { "  [done]" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `done`.
pub async fn done(conn: &Connection, id: String, undo: bool) -> anyhow::Result<ExitCode> {
    let mut client = MessagingServiceClient::new(conn.channel().await?);
    let r = conn.request(MarkInboxDoneRequest { id, done: !undo }, false)?;
    let m = client
        .mark_inbox_done(r)
        .await
        .map_err(explain)?
        .into_inner()
        .message;
    println!("{}", message_line(&m.context("the reply has no message")?));
    Ok(ExitCode::SUCCESS)
}

fn opt_out_line(o: &OptOutStatus) -> String {
    let state = if o.opted_out {
        "opted out"
    } else {
        "may be texted"
    };
    let mut line = format!("{}  {state}", o.contact_number);
    if !o.source.is_empty() {
        line.push_str(&format!(
            "  ({} at {}",
            o.source,
            timestamp(o.changed_at.as_ref())
        ));
        if !o.changed_by.is_empty() {
            line.push_str(&format!(" by {}", o.changed_by));
        }
        if !o.reason.is_empty() {
            line.push_str(&format!(": {}", o.reason));
        }
        line.push(')');
    }
    line
}

/// Runs `optouts`.
pub async fn opt_outs(
    conn: &Connection,
    endpoint: &str,
    command: OptOutsCommand,
) -> anyhow::Result<ExitCode> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("SMS_OPTOUT_ENDPOINT {endpoint:?} is not a valid URL"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the opt-out registry at {endpoint}"))?;
    let mut client = OptOutsServiceClient::new(channel);
    let status = |s: Option<OptOutStatus>| s.unwrap_or_default();
    match command {
        OptOutsCommand::Check { number } => {
            let r = conn.request(
                CheckOptOutRequest {
                    contact_number: number,
                },
                false,
            )?;
            println!(
                "{}",
                opt_out_line(&status(
                    client
                        .check_opt_out(r)
                        .await
                        .map_err(explain)?
                        .into_inner()
                        .status
                ))
            );
        }
        OptOutsCommand::Add { number, reason } => {
            let r = conn.request(
                AddOptOutRequest {
                    contact_number: number,
                    reason,
                },
                true,
            )?;
            println!(
                "{}",
                opt_out_line(&status(
                    client
                        .add_opt_out(r)
                        .await
                        .map_err(explain)?
                        .into_inner()
                        .status
                ))
            );
        }
        OptOutsCommand::Remove { number, reason } => {
            let r = conn.request(
                RemoveOptOutRequest {
                    contact_number: number,
                    reason,
                },
                true,
            )?;
            println!(
                "{}",
                opt_out_line(&status(
                    client
                        .remove_opt_out(r)
                        .await
                        .map_err(explain)?
                        .into_inner()
                        .status
                ))
            );
        }
        OptOutsCommand::List { json: as_json } => {
            let r = conn.request(ListOptOutsRequest::default(), false)?;
            let all = client
                .list_opt_outs(r)
                .await
                .map_err(explain)?
                .into_inner()
                .opt_outs;
            if as_json {
                let rows: Vec<Value> = all
                    .iter()
                    .map(|o| {
                        json!({"contact_number": o.contact_number, "opted_out": o.opted_out,
                                    "source": o.source, "our_number": o.our_number,
                                    "changed_at": timestamp(o.changed_at.as_ref()),
                                    "changed_by": o.changed_by, "reason": o.reason})
                    })
                    .collect();
                println!("{}", Value::Array(rows));
            } else {
                for o in &all {
                    println!("{}", opt_out_line(o));
                }
            }
        }
        OptOutsCommand::Replies {
            help_text,
            confirmation,
        } => {
            let r = conn.request(
                SetRepliesRequest {
                    help_text,
                    opt_out_confirmation: confirmation,
                },
                false,
            )?;
            let reply = client.set_replies(r).await.map_err(explain)?.into_inner();
            println!(
                "help: {}\nopt-out confirmation: {}",
                reply.help_text, reply.opt_out_confirmation
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
