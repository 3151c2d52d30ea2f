//! Statuses converge: an outbound message whose status stops short of a final one (`queued`,
//! `sending`, `sent`) for a while is asked about. The composer writes a `msg.check` event to
//! its outbox, with the record of the question, and the dispatcher answers with the carrier's
//! word as status events. So a lost callback, or a status event that never arrived, does not
//! leave a wrong status for good.
//!
//! Every replica sweeps; rows are skipped while another replica holds them. A message is asked
//! about again at a doubling interval, and at most a set number of times: some carriers never
//! report past `sent`.

use std::time::Duration;

use sms_proto::events::v1::StatusCheck;
use tokio_util::sync::CancellationToken;

use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::store;

/// How stalled messages are asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig {
    /// `SMS_STATUS_CHECK_AFTER_MS`: how long a status may stand still before the message is
    /// asked about (the first interval; each later one doubles). Default 15 minutes.
    pub after: Duration,
    /// `SMS_STATUS_CHECKS`: the most times one message is asked about. Default 8.
    pub max_checks: i32,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            after: Duration::from_secs(15 * 60),
            max_checks: 8,
        }
    }
}

/// Messages asked about per round.
const BATCH: i64 = 500;

/// Asks about stalled messages until `shutdown`.
pub async fn run(checks: StatusChecks, config: CheckConfig, shutdown: CancellationToken) {
    let period = (config.after / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        loop {
            match checks.ask_about_stalled(config).await {
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "status check round failed");
                    break;
                }
            }
        }
    }
}

/// Asking the dispatcher about messages whose status stopped moving.
#[derive(Clone)]
pub struct StatusChecks {
    pool: PgPool,
    outbox: Outbox,
}

impl StatusChecks {
    /// Stalled messages read from `pool`, their questions sent through `outbox`.
    pub fn new(pool: PgPool, outbox: Outbox) -> Self {
        StatusChecks { pool, outbox }
    }

    /// One round: records the questions and their `msg.check` events in one transaction;
    /// returns how many messages were asked about.
    pub async fn ask_about_stalled(&self, config: CheckConfig) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let stalled =
            store::messages::take_stalled(&mut tx, config.after, config.max_checks, BATCH).await?;
        if stalled.is_empty() {
            return Ok(0);
        }
        let events: Vec<_> = stalled
            .iter()
            .map(|m| {
                let id = m.id.to_string();
                let checks = m.checks.to_string();
                self.outbox.encode(&StatusCheck {
                    meta: Some(sms_bus::meta(
                        sms_bus::stable_event_id(&[&id, "check", &checks]),
                        &m.organization_id,
                        &id,
                    )),
                    status: sms_bus::status_to_proto(m.status) as i32,
                    carrier_sid: m.carrier_sid.clone().unwrap_or_default(),
                    attempt: u32::try_from(m.checks).unwrap_or(0),
                })
            })
            .collect();
        self.outbox.add(&mut tx, &events).await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(
            count = stalled.len(),
            "asked the dispatcher where stalled messages stand"
        );
        Ok(stalled.len())
    }
}
