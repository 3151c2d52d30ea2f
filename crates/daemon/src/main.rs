//! `smsd`: every service of the platform, plus (by default) the carrier simulator, in one
//! process, on this machine's NATS and PostgreSQL. Same code paths, subjects and database as
//! the separate services.
//!
//! Defaults: gRPC on 127.0.0.1:50051, webhooks on 127.0.0.1:8080, the console on
//! 127.0.0.1:8082 (`SMS_CONSOLE_ADDR`), the simulator on 127.0.0.1:8090 (`SMS_SIM=false` to
//! use a real carrier with `SMS_TWILIO_*`), database
//! `postgres://postgres@127.0.0.1:5432/sms` (created if missing), NATS on 127.0.0.1:4222.
//!
//! `smsd --dev` (or `SMS_DEV_MODE=true`) is development mode: no API tokens needed, a media
//! signing key made for the run, and the simulator on by default, its loopback address (and
//! only it) allowed to the fetch policy. Without it, smsd needs what production needs
//! (`SMS_API_TOKENS`, `SMS_MEDIA_SECRET`, a carrier) and says which is missing.
//!
//! `SMS_CARRIER=smpp` sends over SMPP: to the SMSC at `SMS_SMPP_ADDR` (with
//! `SMS_SMPP_SYSTEM_ID` and `SMS_SMPP_PASSWORD`), or, when none is named and the simulator is
//! on, to the simulator's SMSC on `SMS_SIM_SMPP_ADDR` (default 127.0.0.1:2775).

use std::net::SocketAddr;

use anyhow::Context;
use sms_runtime::{Env, Telemetry, TelemetryConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dev_flag = std::env::args().skip(1).any(|a| a == "--dev");
    if let Some(other) = std::env::args().skip(1).find(|a| a != "--dev") {
        anyhow::bail!("unknown argument {other:?}; smsd takes only --dev (and SMS_* variables)");
    }
    let base = Env::from_process();
    let telemetry = Telemetry::init("smsd", &TelemetryConfig::from_env(&base)?);
    let dev = dev_flag || base.bool_or("SMS_DEV_MODE", false)?;
    let sim = base.bool_or("SMS_SIM", dev)?;
    let sim_addr: SocketAddr =
        base.parse_or("SMS_SIM_ADDR", SocketAddr::from(([127, 0, 0, 1], 8090)))?;
    let inbound_addr: SocketAddr =
        base.parse_or("SMS_INBOUND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
    let grpc_addr: SocketAddr =
        base.parse_or("SMS_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?;
    let optout_addr: SocketAddr = base.parse_or(
        "SMS_OPTOUT_GRPC_ADDR",
        SocketAddr::from(([127, 0, 0, 1], 50052)),
    )?;
    let mut defaults = vec![
        (
            "SMS_PUBLIC_URL".to_owned(),
            format!("http://{inbound_addr}"),
        ),
        ("SMS_DEV_MODE".to_owned(), dev.to_string()),
        // The console calls this process's own APIs.
        (
            "SMS_CONSOLE_API_URL".to_owned(),
            format!("http://{grpc_addr}"),
        ),
        (
            "SMS_CONSOLE_OPTOUT_URL".to_owned(),
            format!("http://{optout_addr}"),
        ),
    ];
    if dev {
        // Development is plain http: cookies marked Secure would not come back.
        defaults.push(("SMS_CONSOLE_SECURE_COOKIES".to_owned(), "false".to_owned()));
    }
    if sim && dev {
        // The simulator hosts inbound media on its own loopback address: that address alone
        // is fetched over http and exempt from the address rules.
        defaults.extend([
            ("SMS_FETCH_ALLOW_HTTP".to_owned(), "true".to_owned()),
            ("SMS_FETCH_ALLOW_PRIVATE".to_owned(), sim_addr.to_string()),
            ("SMS_TWILIO_MEDIA_HOSTS".to_owned(), sim_addr.to_string()),
        ]);
    }
    if sim {
        defaults.extend([
            (
                "SMS_TWILIO_API_URL".to_owned(),
                format!("http://{sim_addr}"),
            ),
            (
                "SMS_TWILIO_ACCOUNT_SID".to_owned(),
                sms_carrier_sim::DEFAULT_ACCOUNT_SID.to_owned(),
            ),
            (
                "SMS_TWILIO_AUTH_TOKEN".to_owned(),
                sms_carrier_sim::DEFAULT_AUTH_TOKEN.to_owned(),
            ),
            (
                "SMS_SIM_ACCOUNT_SID".to_owned(),
                sms_carrier_sim::DEFAULT_ACCOUNT_SID.to_owned(),
            ),
            (
                "SMS_SIM_AUTH_TOKEN".to_owned(),
                sms_carrier_sim::DEFAULT_AUTH_TOKEN.to_owned(),
            ),
            // Contacts' messages (`smsctl sim reply`, SMS_SIM_AUTO_REPLY) come to our webhook.
            (
                "SMS_SIM_INCOMING_URL".to_owned(),
                format!("http://{inbound_addr}/webhooks/twilio/incoming"),
            ),
        ]);
    }
    // SMPP: `SMS_CARRIER=smpp` sends through the SMSC at `SMS_SMPP_ADDR`; without one, through
    // the simulator's (on `SMS_SIM_SMPP_ADDR`, default 127.0.0.1:2775), whose contacts' messages
    // then come over SMPP too.
    let smpp = base.string_or("SMS_CARRIER", "twilio") == "smpp";
    let sim_smpp_addr: Option<SocketAddr> = match base.raw("SMS_SIM_SMPP_ADDR") {
        Some(_) => Some(base.parse_or(
            "SMS_SIM_SMPP_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 2775)),
        )?),
        None if sim && smpp && base.raw("SMS_SMPP_ADDR").is_none() => {
            Some(SocketAddr::from(([127, 0, 0, 1], 2775)))
        }
        None => None,
    };
    // The simulator's SMSC serves as the SMPP connection when none is named: the default
    // carrier with SMS_CARRIER=smpp, or (SMS_SIM_SMPP_ADDR set) a connection numbers may be
    // routed to beside Twilio.
    if let Some(addr) = sim_smpp_addr.filter(|_| sim && base.raw("SMS_SMPP_ADDR").is_none()) {
        defaults.extend([
            ("SMS_SMPP_ADDR".to_owned(), addr.to_string()),
            (
                "SMS_SMPP_SYSTEM_ID".to_owned(),
                sms_carrier_sim::DEFAULT_SMPP_SYSTEM_ID.to_owned(),
            ),
            (
                "SMS_SMPP_PASSWORD".to_owned(),
                sms_carrier_sim::DEFAULT_SMPP_PASSWORD.to_owned(),
            ),
            ("SMS_SMPP_NAME".to_owned(), "smpp-sim".to_owned()),
            // The simulator's own code for spam.
            (
                "SMS_SMPP_ERRORS".to_owned(),
                "69=filtered_as_spam".to_owned(),
            ),
        ]);
        if smpp {
            defaults.push(("SMS_SIM_SMPP_MO".to_owned(), "all".to_owned()));
        }
    }
    let env = base.with_defaults(defaults);

    // Read every configuration first, so a wrong variable stops us before anything starts.
    // One process, one health endpoint: `/healthz` and `/readyz` on the webhook listener.
    let mut composer = sms_composer::Config::from_env(&env)?;
    let mut dispatcher = sms_dispatcher::Config::from_env(&env)?;
    let inbound = sms_inbound::Config::from_env(&env)?;
    let mut scheduler = sms_scheduler::Config::from_env(&env)?;
    let mut optout = sms_optout::Config::from_env(&env)?;
    let mut feed = sms_feed::Config::from_env(&env)?;
    composer.health_addr = None;
    feed.health_addr = None;
    dispatcher.health_addr = None;
    scheduler.health_addr = None;
    optout.health_addr = None;
    let console = sms_console::Config::from_env(&env)?;
    let sim_config = sim
        .then(|| sms_carrier_sim::config_from_env(&env))
        .transpose()?;

    let shutdown = CancellationToken::new();
    sms_runtime::shutdown_on_signals(shutdown.clone());
    let grpc = sms_runtime::health::bind(grpc_addr).await?;
    let optout_grpc = sms_runtime::health::bind(optout_addr).await?;
    let console_addr: SocketAddr = env.parse_or("SMS_CONSOLE_ADDR", sms_console::DEFAULT_ADDR)?;
    let console_listener = sms_runtime::health::bind(console_addr).await?;
    let media_addr: SocketAddr =
        env.parse_or("SMS_MEDIA_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?;
    let media = sms_runtime::health::bind(media_addr).await?;
    let webhooks = sms_runtime::health::bind(inbound_addr).await?;
    let mut tasks = JoinSet::new();
    if let Some(config) = sim_config {
        let listener = sms_runtime::health::bind(sim_addr).await?;
        let sim = sms_carrier_sim::Sim::new(config)?;
        tracing::info!(addr = %sim_addr, "carrier simulator listening");
        if let Some(addr) = sim_smpp_addr {
            let smsc = sms_runtime::health::bind(addr).await?;
            tracing::info!(%addr, "the simulator's SMSC listening");
            tasks.spawn(named(
                "carrier-sim SMSC",
                sim.clone().serve_smpp(smsc, shutdown.clone()),
            ));
        }
        tasks.spawn(named("carrier-sim", sim.serve(listener, shutdown.clone())));
    }
    tasks.spawn(named(
        "composer",
        sms_composer::run(composer, grpc, media, shutdown.clone()),
    ));
    // Webhook delivery, opt-out entries and pruning; the feed's gRPC calls are answered by
    // the composer on its address.
    tasks.spawn(named("feed", sms_feed::run(feed, None, shutdown.clone())));
    tasks.spawn(named(
        "dispatcher",
        sms_dispatcher::run(dispatcher, shutdown.clone()),
    ));
    tasks.spawn(named(
        "inbound",
        sms_inbound::run(inbound, webhooks, shutdown.clone()),
    ));
    tasks.spawn(named(
        "scheduler",
        sms_scheduler::run(scheduler, shutdown.clone()),
    ));
    tasks.spawn(named(
        "optout",
        sms_optout::run(optout, optout_grpc, shutdown.clone()),
    ));
    tasks.spawn(named(
        "console",
        sms_console::run(console, console_listener, shutdown.clone()),
    ));
    tracing::info!(grpc = %grpc_addr, webhooks = %inbound_addr, console = %console_addr, "smsd started");

    // The first service to stop (by error or shutdown) stops the rest.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("a service panicked").and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = format!("{e:#}"), "service failed; stopping smsd");
            if result.is_ok() {
                result = Err(e);
            }
        }
        shutdown.cancel();
    }
    telemetry.shutdown().await;
    result
}

async fn named(
    name: &'static str,
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    service.await.with_context(|| format!("{name} service"))
}
