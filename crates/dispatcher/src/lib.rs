//! The dispatcher: takes accepted and due messages off the bus and sends each one exactly
//! once through a [`Carrier`], publishing what happened as status events.
//!
//! Exactly once: before calling the carrier, the dispatcher claims the message in its own
//! `sends` table ([`store`]). A redelivered event (a replica died, an ack was lost) finds the
//! claim and is dropped, so the carrier never sees a message twice. A failure that sent nothing
//! releases the claim (`retry`) and the event comes back after a back-off with full jitter,
//! chosen by what went wrong.
//!
//! A call whose outcome is unknown (it timed out after the request left, or the dispatcher died
//! during it) is not guessed at: [`resolve`] asks the carrier whether it has the message, binds
//! it if so, and sends it if the carrier provably does not. A message whose status stops moving
//! (a lost callback) is looked up at the composer's request ([`check`]).
//!
//! Every status the dispatcher reports is written to its outbox in the transaction that
//! changes the claim, so a status is published if and only if the change it reports was
//! committed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sms_bus::{ConsumerKind, StateKind};
use sms_proto::events::v1::{NumberChanged, StatusCheck};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod batches;
pub mod carrier;
mod check;
mod config;
mod events;
mod limiter;
mod partitions;
mod resolve;
mod rules;
mod send;
pub mod smpp;
mod store;

use crate::batches::{claims, sent};
use crate::send::{CALLS_AT_ONCE, Dispatcher, callback_base};
pub use carrier::{
    Carrier, CarrierContext, CarrierError, CarrierMessage, CarrierRecord, Deliveries, LookupError,
    Receipt, Resolution, Slots, StatusSource, Twilio, Unanswered,
};
pub use config::{Carriers, Config, DEFAULT_CALLBACK_OVERRIDES, TWILIO_CONNECTION};
pub use rules::carrier_retry_delay;

/// The dispatcher's schema.
pub const SCHEMA: &str = "dispatcher";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the dispatcher with the configured carriers (Twilio's API and/or an SMPP connection)
/// until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let smpp = config.smpp.clone().map(|c| {
        let name = c.session.name.clone();
        let carrier: Arc<dyn Carrier> = Arc::new(smpp::Smpp::new(c, config.carrier_timeout));
        (name, carrier)
    });
    let twilio: Option<Arc<dyn Carrier>> = if config.twilio_account_sid.is_empty() {
        None
    } else {
        let http = sms_runtime::http_client(config.carrier_timeout)?;
        Some(Arc::new(Twilio::new(
            http,
            &config.twilio_api_url,
            &config.twilio_account_sid,
            &config.twilio_auth_token,
        )))
    };
    let carriers = match (smpp, twilio) {
        (Some((name, smpp)), Some(twilio)) if config.smpp_default => {
            Carriers::new(&name, smpp).with(TWILIO_CONNECTION, twilio)
        }
        (Some((name, smpp)), Some(twilio)) => {
            Carriers::new(TWILIO_CONNECTION, twilio).with(&name, smpp)
        }
        (Some((name, smpp)), None) => Carriers::new(&name, smpp),
        (None, Some(twilio)) => Carriers::new(TWILIO_CONNECTION, twilio),
        (None, None) => anyhow::bail!("no carrier is configured (SMS_TWILIO_* or SMS_SMPP_*)"),
    };
    run_with_carriers(config, carriers, shutdown).await
}

/// Runs the dispatcher with one carrier (any, as the default and `twilio`) until `shutdown`.
pub async fn run_with_carrier(
    config: Config,
    carrier: Arc<dyn Carrier>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_carriers(config, Carriers::new(TWILIO_CONNECTION, carrier), shutdown).await
}

/// Runs the dispatcher with these carriers until `shutdown`.
pub async fn run_with_carriers(
    config: Config,
    carriers: Carriers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let base = sms_runtime::service::start(
        &config.common,
        SCHEMA,
        &MIGRATOR,
        config.health_addr,
        &shutdown,
    )
    .await?;
    let (pool, bus, outbox) = (base.pool, base.bus, base.outbox);
    // Local copies, replayed and then followed by this replica: no lookup per message.
    let catch_up = Duration::from_secs(30);
    let released = bus
        .state_set(
            StateKind::Number,
            shutdown.clone(),
            catch_up,
            |e: NumberChanged| {
                let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
                (org, e.number, !e.active)
            },
        )
        .await?;
    let opted_out = bus
        .state_set(
            StateKind::OptOut,
            shutdown.clone(),
            catch_up,
            sms_bus::opted_out_entry,
        )
        .await?;
    // Rates set on numbers, and who holds each (for contacts' messages over SMPP): a copy of
    // the number state, like the released numbers above.
    let overrides = limiter::Overrides::default();
    let copy = overrides.clone();
    let holders = sms_bus::Holders::default();
    let holding = holders.clone();
    bus.follow_state(
        StateKind::Number,
        shutdown.clone(),
        move |e: NumberChanged| {
            holding.apply(&e);
            let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
            let rate = (e.send_rate > 0.0)
                .then(|| {
                    let burst = if e.send_burst > 0 {
                        f64::from(e.send_burst)
                    } else {
                        e.send_rate.max(1.0)
                    };
                    sms_core::rate::Rate::new(e.send_rate, burst).ok()
                })
                .flatten();
            copy.set(org, e.number, rate);
        },
    )
    .await?;
    let in_doubt_after = config.in_doubt_after;
    let me = Uuid::new_v4().to_string();
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let holdings = partitions::Holdings::default();
    let dispatcher = Arc::new(Dispatcher {
        claims: claims(pool.clone(), outbox.clone(), in_doubt_after),
        sent: sent(pool.clone(), outbox.clone()),
        pool: pool.clone(),
        bus: bus.clone(),
        outbox,
        carriers: carriers.clone(),
        holders: holders.clone(),
        callback_url: callback_base(&config.public_url),
        callback_overrides: config.callback_overrides.clone(),
        send_attempts: config.send_attempts,
        in_doubt_after,
        carrier_timeout: config.carrier_timeout,
        released,
        opted_out,
        limiter: limiter::Limiter::new(overrides, config.account_rate, live.clone()),
        holdings: holdings.clone(),
        fresh: config.partition_lease * 2,
        calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
    });
    // Which partitions this replica sends for, and their consumers while it holds them.
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let (stopped_tx, stopped) = tokio::sync::mpsc::unbounded_channel();
    let leases = partitions::run(
        partitions::Replica {
            pool: pool.clone(),
            me: me.clone(),
            config: partitions::LeaseConfig {
                lease: config.partition_lease,
            },
            holdings,
            live: live.clone(),
        },
        changes_tx,
        stopped,
        shutdown.clone(),
    );
    let d = dispatcher.clone();
    let partitions = async move {
        while let Some(partitions::Change::Took(p, stop)) = changes.recv().await {
            let (d, stopped) = (d.clone(), stopped_tx.clone());
            tokio::spawn(async move {
                d.clone().consume_partition(p, stop).await;
                let _ = stopped.send(p);
            });
        }
    };
    let d = dispatcher.clone();
    let checks = bus.consume(
        ConsumerKind::DispatcherCheck,
        shutdown.clone(),
        move |e: StatusCheck, delivery| {
            let d = d.clone();
            async move { d.check(e, delivery).await }
        },
    );
    let resolving = resolve::run(dispatcher.clone(), shutdown.clone());
    let d = dispatcher.clone();
    let stop = shutdown.clone();
    let pruning = async move {
        let shutdown = stop;
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => d.limiter.prune(),
            }
        }
    };
    // What the carrier sends on its own connection (SMPP's receipts and contacts' messages).
    let received = Arc::new(smpp::received::Received {
        pool: pool.clone(),
        outbox: dispatcher.outbox.clone(),
        holders,
    });
    let context = carrier::CarrierContext {
        deliveries: received.clone(),
        slots: Some(Arc::new(smpp::slots::LeasedSlots {
            pool: pool.clone(),
            me: me.clone(),
            live: live.clone(),
            lease: config.partition_lease,
        })),
        shutdown: shutdown.clone(),
    };
    let carriers_running: Vec<_> = carriers
        .each()
        .iter()
        .filter_map(|c| c.start(context.clone()))
        .collect();
    let sweeping = (!carriers_running.is_empty())
        .then(|| tokio::spawn(received.sweep(config.mo_part_timeout, shutdown.clone())));
    tracing::info!("dispatcher running");
    // The partition loop ends with the lease loop (which drops the changes' sender).
    let (c, (), (), (), ()) = tokio::join!(checks, resolving, leases, partitions, pruning);
    // The binds unbind once the sends have stopped.
    for running in carriers_running {
        let _ = running.await;
    }
    if let Some(sweeping) = sweeping {
        let _ = sweeping.await;
    }
    base.relay.finish().await;
    c.context("check consumer")?;
    tracing::info!("dispatcher stopped");
    Ok(())
}
