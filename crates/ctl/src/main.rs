//! `smsctl`: the command-line client of the SMS platform.
//!
//! The offline commands (`segments`, `phone`) need no server; they apply the same `sms-core`
//! rules the services apply. The others call the platform over gRPC, as the organization and
//! user in `SMS_ORG` / `SMS_USER` (or `--org` / `--user`), at `SMS_ENDPOINT`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod connection;
mod events;
mod format;
mod input;
mod later;
mod numbers;
mod offline;
mod online;
mod renting;
mod settings;
mod sim;
mod templates;
mod webhooks;

/// The SMS platform's command-line client.
#[derive(Debug, Parser)]
#[command(name = "smsctl", version, about)]
struct Cli {
    #[command(flatten)]
    connection: connection::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count encoding and segments of a body as carriers bill it (offline).
    Segments(offline::SegmentsArgs),
    /// Parse and classify a phone number (offline).
    Phone(offline::PhoneArgs),
    /// Manage the organization's numbers.
    #[command(subcommand)]
    Numbers(numbers::NumbersCommand),
    /// Manage groups of users sharing numbers.
    #[command(subcommand)]
    Groups(numbers::GroupsCommand),
    /// Manage SMS templates and preview them.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// The organization's events (statuses, replies, opt-outs, numbers), each with a cursor to
    /// resume after.
    Events(events::EventsArgs),
    /// Drive the carrier simulator (development): a contact texts one of our numbers.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Webhook endpoints (Standard Webhooks): add, list, disable, enable, delete, rotate,
    /// attempts, replay.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Quiet hours and the daily cap on segments.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// Show usage (messages and segments handed to the carrier) by month and country, and
    /// today's segments against the daily cap.
    Usage(online::UsageArgs),
    /// Cancel a scheduled message that has not fired.
    Cancel {
        /// Message id.
        id: String,
    },
    /// Move a scheduled message that has not fired.
    Reschedule(later::RescheduleArgs),
    /// Show both directions between one of our numbers and a contact.
    Conversation(later::ConversationArgs),
    /// Show your inbox: replies on the numbers you own or share.
    Inbox(later::InboxArgs),
    /// Mark an inbox message done (or not, with --undo).
    Done {
        /// Message id.
        id: String,
        /// Mark it not done.
        #[arg(long)]
        undo: bool,
    },
    /// Download an attachment.
    Media {
        /// Attachment id (see `get`).
        id: String,
        /// Where to write it.
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
    /// Opt-outs: check, add or remove by hand, list, automatic replies.
    #[command(subcommand)]
    Optouts(later::OptOutsCommand),
    /// List the leads with at least one errored message.
    ErroredLeads {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a message now; prints its id.
    Send(online::SendArgs),
    /// Show a message: status, reason, encoding, segments, history.
    Get(online::GetArgs),
    /// List messages, newest first.
    List(online::ListArgs),
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`smsctl … | head -1`) panics; a
    // command-line tool used in scripts ends quietly instead, killed by the signal (status 141
    // in the shell) as `ls` and `git` are. Sockets are unaffected: their writes never raise it.
    sigpipe::reset();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Segments(args) => offline::segments(&args),
        Command::Phone(args) => offline::phone(&args),
        Command::Sim(command) => run_sim(command),
        online => run_online(&cli.connection, online),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_sim(command: sim::SimCommand) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(sim::sim(command))
}

fn run_online(conn: &connection::Connection, command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::Numbers(c) => numbers::numbers(conn, c).await,
            Command::Groups(c) => numbers::groups(conn, c).await,
            Command::Templates(c) => templates::templates(conn, c).await,
            Command::Usage(a) => online::usage(conn, a).await,
            Command::Settings(c) => settings::settings(conn, c).await,
            Command::Events(a) => events::events(conn, a).await,
            Command::Webhooks(c) => webhooks::webhooks(conn, c).await,
            Command::Cancel { id } => later::cancel(conn, id).await,
            Command::Media { id, output } => online::media(conn, id, &output).await,
            Command::Reschedule(a) => later::reschedule(conn, a).await,
            Command::Conversation(a) => later::conversation(conn, a).await,
            Command::Inbox(a) => later::inbox(conn, a).await,
            Command::Done { id, undo } => later::done(conn, id, undo).await,
            Command::Optouts(c) => later::opt_outs(conn, &conn.optout_endpoint, c).await,
            Command::ErroredLeads { json } => online::errored_leads(conn, json).await,
            Command::Send(a) => online::send(conn, a).await,
            Command::Get(a) => online::get(conn, a).await,
            Command::List(a) => online::list(conn, a).await,
            Command::Segments(_) | Command::Phone(_) | Command::Sim(_) => Ok(ExitCode::SUCCESS),
        }
    })
}
