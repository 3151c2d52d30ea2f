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
    /// What the simulator's development webhook endpoint (`<sim>/_sim/hooks`, for
    /// `smsctl webhooks add`) received: one line per delivery, with whether its signature is
    /// the secret's when --secret is given.
    Hooks(HooksArgs),
}

/// Where the simulator is, and the account its control endpoints take.
#[derive(Debug, Args)]
pub struct SimAccess {
    /// The simulator.
    #[arg(long, env = "SMS_SIM_URL", default_value = "http://127.0.0.1:8090")]
    sim_url: String,
    /// One of the simulator's accounts (its control endpoints take the account's Basic auth).
    #[arg(long, env = "SMS_SIM_ACCOUNT_SID", default_value = sms_twilio::SIMULATOR_ACCOUNT_SID)]
    sim_account: String,
    /// That account's auth token.
    #[arg(long, env = "SMS_SIM_AUTH_TOKEN", default_value = sms_twilio::SIMULATOR_AUTH_TOKEN, hide_default_value = true)]
    sim_token: String,
}

impl SimAccess {
    /// A request to `path` on the simulator, with the account's credentials.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        // Fails only when a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.sim_url.trim_end_matches('/')))
            .context("the simulator's URL")?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(reqwest::Client::new()
            .request(method, url)
            .basic_auth(&self.sim_account, Some(&self.sim_token)))
    }
}

/// `smsctl sim hooks`.
#[derive(Debug, Args)]
pub struct HooksArgs {
    /// The endpoint's secret (whsec_…), to check each signature.
    #[arg(long, default_value = "")]
    secret: String,
    /// Print each delivery's body as it came.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sim: SimAccess,
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
    #[command(flatten)]
    sim: SimAccess,
}

/// Runs `sim`.
pub async fn sim(command: SimCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        SimCommand::Reply(args) => args,
        SimCommand::Hooks(args) => return hooks(args).await,
    };
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
    let response = args
        .sim
        .request(reqwest::Method::POST, "/_sim/reply", &[])?
        .json(&json!({"from": args.from, "to": args.to, "body": args.body, "media": media}))
        .send()
        .await
        .with_context(|| format!("cannot reach the simulator at {}", args.sim.sim_url))?;
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

async fn hooks(args: HooksArgs) -> anyhow::Result<ExitCode> {
    let query: &[(&str, &str)] = if args.secret.is_empty() {
        &[]
    } else {
        &[("secret", &args.secret)]
    };
    let hooks: Vec<serde_json::Value> = args
        .sim
        .request(reqwest::Method::GET, "/_sim/hooks", query)?
        .send()
        .await
        .with_context(|| format!("cannot reach the simulator at {}", args.sim.sim_url))?
        .error_for_status()?
        .json()
        .await?;
    let mut bad = false;
    for h in &hooks {
        let raw = h["body"].as_str().unwrap_or_default();
        if args.json {
            println!("{raw}");
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        let signed = match h["signature_valid"].as_bool() {
            Some(true) => "signature ok",
            Some(false) => {
                bad = true;
                "SIGNATURE BAD"
            }
            None => "signature not checked",
        };
        println!(
            "{}  {}  {signed}  {}",
            h["id"].as_str().unwrap_or_default(),
            body["type"].as_str().unwrap_or("?"),
            body["data"]
        );
    }
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
