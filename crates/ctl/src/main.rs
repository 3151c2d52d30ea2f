//! `smsctl`: the command-line client of the SMS platform.
//!
//! The offline commands (`segments`, `phone`) need no server; they apply the same `sms-core`
//! rules the services apply.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod input;
mod offline;

/// The SMS platform's command-line client.
#[derive(Debug, Parser)]
#[command(name = "smsctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count encoding and segments of a body as carriers bill it (offline).
    Segments(offline::SegmentsArgs),
    /// Parse and classify a phone number (offline).
    Phone(offline::PhoneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Segments(args) => offline::segments(&args),
        Command::Phone(args) => offline::phone(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
