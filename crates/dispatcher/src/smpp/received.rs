//! What the SMSC sends on its binds: receipts, applied to the parts they quote (or kept until
//! those are recorded), and contacts' messages, put back together from their parts and
//! published as inbound messages exactly like the Twilio receiver's. Each is committed, with
//! the events it causes in the same transaction, before the SMSC is answered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sms_core::Reason;
use sms_proto::events::v1::InboundReceived;
use sms_runtime::outbox::Outbox;
use sms_smpp::pdu::Delivered;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{self, Applied, MoKey, ReceiptRow};
use crate::carrier::Deliveries;

/// How long a contact's message to a number the copy does not know waits for the copy.
const UNKNOWN_NUMBER_PATIENCE: Duration = Duration::from_secs(2);

/// Stores what comes on the binds.
pub(crate) struct Received {
    pub pool: PgPool,
    pub outbox: Outbox,
    /// Our numbers and who holds them (a copy of the number state).
    pub holders: sms_bus::Holders,
}

fn count(kind: &'static str, outcome: &'static str) {
    metrics::counter!(sms_runtime::metrics::SMPP_DELIVERIES, "kind" => kind, "outcome" => outcome)
        .increment(1);
}

#[async_trait]
impl Deliveries for Received {
    async fn delivered(
        &self,
        connection: &str,
        delivered: Delivered,
        reason: Option<Reason>,
    ) -> Result<(), String> {
        match delivered {
            Delivered::Receipt {
                contact,
                receipt,
                intermediate,
            } => {
                if intermediate || !store::is_final(receipt.state) {
                    // `sent` was reported when the SMSC took the parts.
                    count("receipt", "intermediate");
                    return Ok(());
                }
                let row = ReceiptRow {
                    state: receipt.state,
                    error: receipt.error.clone(),
                    reason,
                };
                let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
                let (applied, events) = store::receipt(
                    &mut tx,
                    &self.outbox,
                    connection,
                    &contact,
                    &receipt.id,
                    &row,
                )
                .await
                .map_err(|e| e.to_string())?;
                self.outbox
                    .add(&mut tx, &events)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
                if !events.is_empty() {
                    self.outbox.wake();
                }
                match applied {
                    Applied::Matched(_) => count("receipt", "matched"),
                    Applied::Waiting => {
                        tracing::debug!(connection, id = %receipt.id, "receipt for a part not recorded yet; kept");
                        count("receipt", "waiting");
                    }
                }
                Ok(())
            }
            Delivered::Message { from, to, part } => {
                self.message(connection, &from, &to, part).await
            }
        }
    }
}

impl Received {
    async fn message(
        &self,
        connection: &str,
        from: &str,
        to: &str,
        part: sms_smpp::mo::MoPart,
    ) -> Result<(), String> {
        if sms_core::phone::is_short_code(from) {
            count("message", "short_code");
            tracing::info!(
                connection,
                from,
                "a message from a short code: acknowledged, not delivered"
            );
            return Ok(());
        }
        let Some(org) = self.holders.holder(to, UNKNOWN_NUMBER_PATIENCE).await else {
            count("message", "unknown_number");
            tracing::warn!(
                connection,
                to,
                "a message to a number we do not hold: acknowledged, dropped"
            );
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        // The same deliver_sm again (the SMSC never got our answer): answered, not delivered
        // twice.
        let (reference, total, seq) =
            part.part
                .map_or((String::new(), String::new(), String::new()), |p| {
                    (
                        p.reference.to_string(),
                        p.total.to_string(),
                        p.seq.to_string(),
                    )
                });
        let key = sms_bus::stable_event_id(&[from, to, &reference, &total, &seq, &part.text]);
        if !store::mo_first_time(&mut tx, connection, &key)
            .await
            .map_err(|e| e.to_string())?
        {
            tx.commit().await.map_err(|e| e.to_string())?;
            count("message", "repeated");
            tracing::debug!(
                connection,
                from,
                to,
                "the SMSC sent a contact's message again; already taken"
            );
            return Ok(());
        }
        let (text, segments) = match part.part {
            None => (part.text, 1),
            Some(p) => {
                let key = MoKey {
                    connection,
                    contact: from,
                    ours: to,
                    reference: p.reference,
                    total: p.total,
                };
                match store::mo_part(&mut tx, &key, p.seq, &part.text)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(whole) => (whole, u32::from(p.total)),
                    None => {
                        tx.commit().await.map_err(|e| e.to_string())?;
                        count("message", "part_stored");
                        return Ok(());
                    }
                }
            }
        };
        let event = inbound(connection, &org, from, to, &text, segments);
        self.outbox
            .add(&mut tx, &[self.outbox.encode(&event)])
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        self.outbox.wake();
        count("message", "stored");
        Ok(())
    }

    /// Every minute: contacts' messages whose missing parts never came are delivered as they
    /// are (the gaps marked), and receipts that matched nothing for an hour are dropped, each
    /// logged by name.
    pub(crate) async fn sweep(
        self: Arc<Self>,
        part_timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let mut every = tokio::time::interval(Duration::from_secs(60).min(part_timeout));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.sweep_once(part_timeout).await {
                tracing::debug!(error = %e, "SMPP sweep failed; next time");
            }
        }
    }

    pub(crate) async fn sweep_once(&self, part_timeout: Duration) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        store::forget_seen(&mut tx).await?;
        let incomplete = store::incomplete(&mut tx, part_timeout).await?;
        let mut events = Vec::new();
        for m in &incomplete {
            let org = self.holders.get(&m.ours).map(|h| h.organization_id);
            tracing::warn!(connection = %m.connection, contact = %m.contact, ours = %m.ours, total = m.total, "a contact's message lacks parts after the timeout; delivered with the gaps marked");
            if let Some(org) = org {
                let event = inbound(
                    &m.connection,
                    &org,
                    &m.contact,
                    &m.ours,
                    &m.text,
                    u32::from(m.total),
                );
                events.push(self.outbox.encode(&event));
            }
        }
        self.outbox.add(&mut tx, &events).await?;
        for (connection, id, contact) in
            store::stale_receipts(&mut tx, Duration::from_secs(3600)).await?
        {
            tracing::warn!(%connection, %id, %contact, "a receipt for a message id we never sent (or never recorded); dropped after an hour");
        }
        tx.commit().await?;
        if !events.is_empty() {
            self.outbox.wake();
        }
        Ok(())
    }
}

/// A contact's message, as the Twilio receiver publishes one.
fn inbound(
    connection: &str,
    org: &str,
    from: &str,
    to: &str,
    text: &str,
    segments: u32,
) -> InboundReceived {
    let id = Uuid::new_v4();
    let (body, replaced) = sms_core::text::sanitize(text, sms_core::text::Lines::Multi);
    InboundReceived {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[connection, &id.to_string(), "inbound"]),
            org,
            "",
        )),
        from: from.to_owned(),
        to: to.to_owned(),
        body,
        carrier_sid: format!("smpp-{}", id.simple()),
        media: Vec::new(),
        num_segments: segments,
        account_sid: connection.to_owned(),
        replaced_characters: u32::try_from(replaced).unwrap_or(u32::MAX),
    }
}
