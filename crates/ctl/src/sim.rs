//! `smsctl sim`: drive the carrier simulator (development): make a contact text us.

use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::json;

/// `smsctl sim`.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// A contact texts one of our numbers (delivered to the platform's webhook, signed as the
    /// carrier signs it).
    Reply(ReplyArgs),
}

/// `smsctl sim reply`.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The contact, E.164.
    #[arg(long)]
    from: String,
    /// Our number, E.164.
    #[arg(long)]
    to: String,
    /// The text.
    #[arg(long, default_value = "")]
    body: String,
    /// Attach a file (repeat for several); its type is read from its bytes.
    #[arg(long = "media")]
    media: Vec<std::path::PathBuf>,
    /// The simulator.
    #[arg(long, env = "SMS_SIM_URL", default_value = "http://127.0.0.1:8090")]
    sim_url: String,
}

/// Runs `sim`.
pub async fn sim(command: SimCommand) -> anyhow::Result<ExitCode> {
    let SimCommand::Reply(args) = command;
    let mut media = Vec::new();
    for path in &args.media {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content_type = sms_core::mms::sniff(&name, &data)
            .with_context(|| format!("{}: not a media type an MMS can carry", path.display()))?;
        media.push(json!({
            "content_type": content_type,
            "data": base64::engine::general_purpose::STANDARD.encode(&data),
        }));
    }
    // Fails only when a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/_sim/reply", args.sim_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .json(&json!({"from": args.from, "to": args.to, "body": args.body, "media": media}))
        .send()
        .await
        .with_context(|| format!("cannot reach the simulator at {}", args.sim_url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the simulator refused: {status}: {text}");
    }
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let webhook = answer["webhook_status"].as_u64().unwrap_or(0);
    if webhook != 200 {
        bail!(
            "the platform answered the webhook with HTTP {webhook} (message {})",
            answer["sid"]
        );
    }
    println!("{}", answer["sid"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
