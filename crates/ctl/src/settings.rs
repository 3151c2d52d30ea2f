//! `smsctl settings`: the organization's quiet hours and daily cap.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use sms_proto::v1::settings_service_client::SettingsServiceClient;
use sms_proto::v1::{GetSettingsRequest, QuietHours, Settings, UpdateSettingsRequest};

use crate::connection::{Connection, explain};

/// `smsctl settings`.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the settings.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the settings given; the others stay as they are.
    Set(SetArgs),
}

/// `smsctl settings set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Hold messages outside the sending window, in the recipient's local time (on or off).
    #[arg(long, value_parser = ["on", "off"])]
    quiet_hours: Option<String>,
    /// Start of the sending window, HH:MM (default 08:00).
    #[arg(long)]
    window_start: Option<String>,
    /// End of the sending window, HH:MM (default 21:00).
    #[arg(long)]
    window_end: Option<String>,
    /// Days the window is open, comma-separated (mon,tue,…); "all" for every day.
    #[arg(long)]
    window_days: Option<String>,
    /// Most segments a day (UTC); 0 for no cap.
    #[arg(long)]
    daily_cap: Option<i64>,
}

fn print(s: &Settings, json_out: bool) {
    let q = s.quiet_hours.clone().unwrap_or_default();
    if json_out {
        println!(
            "{}",
            json!({"quiet_hours": {"enabled": q.enabled, "start": q.start, "end": q.end,
                   "days": q.days}, "daily_segment_cap": s.daily_segment_cap})
        );
        return;
    }
    println!(
        "quiet hours: {} (sends {}–{} on {}, recipient's local time)",
        if q.enabled { "on" } else { "off" },
        q.start,
        q.end,
        q.days.join(",")
    );
    if s.daily_segment_cap == 0 {
        println!("daily cap:   none");
    } else {
        println!("daily cap:   {} segments (UTC day)", s.daily_segment_cap);
    }
}

/// Runs `settings`.
pub async fn settings(conn: &Connection, command: SettingsCommand) -> anyhow::Result<ExitCode> {
    let mut client = SettingsServiceClient::new(conn.channel().await?);
    let current = client
        .get_settings(conn.request(GetSettingsRequest {}, false)?)
        .await
        .map_err(explain)?
        .into_inner()
        .settings
        .unwrap_or_default();
    let args = match command {
        SettingsCommand::Show { json } => {
            print(&current, json);
            return Ok(ExitCode::SUCCESS);
        }
        SettingsCommand::Set(args) => args,
    };
    let mut quiet: QuietHours = current.quiet_hours.clone().unwrap_or_default();
    if let Some(on) = args.quiet_hours {
        quiet.enabled = on == "on";
    }
    if let Some(start) = args.window_start {
        quiet.start = start;
    }
    if let Some(end) = args.window_end {
        quiet.end = end;
    }
    if let Some(days) = args.window_days {
        quiet.days = match days.trim() {
            "all" | "" => Vec::new(),
            list => list.split(',').map(|d| d.trim().to_owned()).collect(),
        };
    }
    let wanted = Settings {
        quiet_hours: Some(quiet),
        daily_segment_cap: args.daily_cap.unwrap_or(current.daily_segment_cap),
    };
    let stored = client
        .update_settings(conn.request(
            UpdateSettingsRequest {
                settings: Some(wanted),
            },
            false,
        )?)
        .await
        .map_err(explain)?
        .into_inner()
        .settings
        .unwrap_or_default();
    print(&stored, false);
    Ok(ExitCode::SUCCESS)
}
