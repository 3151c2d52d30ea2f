//! Sends in doubt, resolved by asking the carrier rather than guessing.
//!
//! A carrier call whose outcome is unknown (it timed out after the request left, the reply
//! was unreadable, or the dispatcher died during it) leaves its send `sending`. Once the call's
//! lease ends (`SMS_IN_DOUBT_AFTER_MS` after it began), any replica takes the send and lists the
//! carrier's messages from the same sender to the same recipient since the first call (a call
//! whose outcome was unknown holds the lease a whole `SMS_IN_DOUBT_AFTER_MS` from its end, so
//! that the carrier has that long to act on a request it got late):
//!
//! * **found** (same body, taken after the first call began, not bound to another of our
//!   messages): the message is bound to that carrier sid, with `sending` and whatever the
//!   carrier's records say since (`delivered`, …), as the callbacks would have said it;
//! * **provably absent**: it is sent now, once (the lease keeps other replicas off it, and the
//!   next resolution looks again before any further call). A resolver whose lookup outlasted
//!   its lease may find another resolver has taken the send meanwhile: each take counts
//!   `checks`, the lease's fencing token, and a resolver sends only if the count is still its
//!   own when it renews the lease for its call;
//! * **the carrier unreachable, or its answer unreadable**: asked again after a back-off with
//!   full jitter, until the message's validity ends; then it fails as `expired`. An unreadable
//!   answer is never taken to mean "absent".
//!
//! That is for a carrier whose records can be listed by sender and recipient
//! ([`Resolution::ListByPair`], Twilio). One that can be asked only under the id it gave
//! ([`Resolution::ById`], SMPP's `query_sm`) has nothing to look for when the answer never
//! came: its connection's policy decides, [`Unanswered::Resend`] (sent again at once: at least
//! once, the contact may get it twice) or [`Unanswered::Fail`] (failed as
//! `unknown_carrier_error`: at most once).
//!
//! Look-alike messages (same sender, recipient and body) whose calls are in doubt together
//! cannot be told apart by the carrier's records; they are bound in the order the carrier took
//! them, one carrier message each (binding is serialized per sender and recipient). Carrier
//! messages newer than half the lease are left alone: they may belong to a live call of a
//! look-alike message that has not recorded its sid yet. Nor are they taken to mean "absent":
//! the send is asked about again once they have settled (one may be its own call, which a
//! loaded machine let reach the carrier late).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use prost::Message as _;
use sms_core::{Reason, Status};
use sms_proto::events::v1::OutboundMessage;
use sms_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::carrier::CarrierError;
use crate::carrier::{Resolution, Unanswered};
use crate::events;
use crate::send::Dispatcher;
use crate::store::{self, InDoubt};

/// Sends taken per round.
const BATCH: i64 = 200;
/// Resolutions under way at once per replica.
const CONCURRENCY: usize = 16;
/// How much earlier than our clock the carrier's may date a message.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// Back-off between lookups that failed (the carrier unreachable or unreadable): from a
/// twelfth of the lease (5 s by default), doubling, at most 5 minutes.
fn lookup_backoff(in_doubt_after: Duration) -> Backoff {
    Backoff::new(in_doubt_after / 12, Duration::from_secs(300))
}

/// Resolves sends in doubt until `shutdown`.
pub(crate) async fn run(d: Arc<Dispatcher>, shutdown: CancellationToken) {
    let period = (d.in_doubt_after / 8).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        loop {
            let taken = match store::take_in_doubt(&d.pool, d.in_doubt_after, BATCH).await {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, "could not take sends in doubt");
                    break;
                }
            };
            let full = taken.len() as i64 >= BATCH;
            futures::stream::iter(taken)
                .for_each_concurrent(CONCURRENCY, |row| {
                    let d = d.clone();
                    async move {
                        let id = row.id;
                        if let Err(e) = d.resolve(row).await {
                            tracing::warn!(%id, error = %e, "resolving a send in doubt failed; it stays in doubt");
                        }
                    }
                })
                .await;
            if !full || shutdown.is_cancelled() {
                break;
            }
        }
    }
}

/// What a resolution found.
fn count(outcome: &'static str) {
    metrics::counter!(sms_runtime::metrics::IN_DOUBT_RESOLVED, "outcome" => outcome).increment(1);
}

impl Dispatcher {
    /// Resolves one send in doubt (leased to this replica by [`store::take_in_doubt`]).
    async fn resolve(&self, row: InDoubt) -> Result<(), sqlx::Error> {
        let id = row.id;
        let message = row
            .message
            .as_deref()
            .map(OutboundMessage::decode)
            .and_then(Result::ok);
        let Some(m) = message else {
            // Taken on before messages were kept with their sends: nothing to look for or send.
            count("unreadable");
            let event = self.encode(&events::failed(
                &row.organization_id,
                &id.to_string(),
                "",
                Reason::UnknownCarrierError,
                "the carrier call had no outcome and the message is not at hand to look for",
            ));
            store::fail(
                &self.pool,
                &self.outbox,
                id,
                Reason::UnknownCarrierError,
                "no outcome; message not kept",
                &event,
            )
            .await?;
            self.outbox.wake();
            return Ok(());
        };
        let valid_until = row.valid_until.unwrap_or_else(|| {
            Utc::now() + chrono::Duration::seconds(sms_core::DEFAULT_VALIDITY_SECS)
        });
        match self.carrier_or_default(&m).resolution() {
            Resolution::ListByPair => {}
            // Its last call provably sent nothing (its retry was lost): sending it cannot
            // send it twice, whatever the policy.
            Resolution::ById { .. } if row.unsent => {
                count("unsent_resent");
                tracing::info!(%id, "send in doubt whose last call sent nothing; sending again");
                return self.send_again(&row, &m, valid_until).await;
            }
            // Nothing to look for: the connection's policy decides.
            Resolution::ById {
                unanswered: Unanswered::Resend,
            } => {
                count("unanswered_resent");
                tracing::info!(%id, "send in doubt on a carrier that cannot be asked without an id; sending again (at least once)");
                return self.send_again(&row, &m, valid_until).await;
            }
            Resolution::ById {
                unanswered: Unanswered::Fail,
            } => {
                count("unanswered_failed");
                tracing::info!(%id, "send in doubt on a carrier that cannot be asked without an id; failed (at most once)");
                let detail = "the carrier's answer never came and it cannot be asked without one; \
                              this connection sends at most once";
                return self
                    .give_up(id, &m, Reason::UnknownCarrierError, None, detail)
                    .await;
            }
        }
        let since = row.first_call_at.unwrap_or_else(Utc::now) - CLOCK_SKEW;
        let records = match self
            .carrier_or_default(&m)
            .find(&m.from, &m.to, since)
            .await
        {
            Ok(records) => records,
            Err(e) => {
                count("lookup_failed");
                if Utc::now() > valid_until {
                    let detail = format!(
                        "could not learn from the carrier whether it took the message before its \
                         validity ended ({e})"
                    );
                    return self.give_up(id, &m, Reason::Expired, None, &detail).await;
                }
                let delay = lookup_backoff(self.in_doubt_after)
                    .delay(u32::try_from(row.checks).unwrap_or(u32::MAX));
                tracing::warn!(%id, error = %e, retry_in = ?delay, "carrier lookup failed; asking again later");
                return store::recheck_at(
                    &self.pool,
                    id,
                    row.checks,
                    delay,
                    row.attempts,
                    &e.to_string(),
                    false,
                )
                .await;
            }
        };
        // Newer carrier messages may belong to a live call of a look-alike message.
        let settled =
            Utc::now() - chrono::Duration::from_std(self.in_doubt_after / 2).unwrap_or_default();
        let (mut candidates, fresh): (Vec<_>, Vec<_>) = records
            .into_iter()
            .filter(|r| r.body == m.body && r.created_at >= since)
            .partition(|r| r.created_at <= settled);
        candidates.sort_by_key(|r| r.created_at);
        if !candidates.is_empty() {
            let sids: Vec<String> = candidates.iter().map(|r| r.sid.clone()).collect();
            let pair = format!("{}>{}", m.from, m.to);
            let bound = store::bind(
                &self.pool,
                &self.outbox,
                id,
                row.checks,
                &pair,
                &sids,
                |sid| {
                    let mut out = vec![self.encode(&events::sending(
                        &m.organization_id,
                        &m.message_id,
                        sid,
                        self.carrier_or_default(&m).account(),
                    ))];
                    if let Some(status) = candidates.iter().find(|r| r.sid == sid).and_then(|r| {
                        events::from_record(
                            &m.organization_id,
                            &m.message_id,
                            self.carrier_or_default(&m).account(),
                            r,
                        )
                    }) {
                        out.push(self.encode(&status));
                    }
                    out
                },
            )
            .await?;
            if bound.as_deref() == Some("") {
                count("settled_elsewhere");
                tracing::info!(%id, "send in doubt: its outcome was recorded meanwhile");
                return Ok(());
            }
            if let Some(sid) = bound {
                count("found");
                self.outbox.wake();
                tracing::info!(%id, %sid, "send in doubt: the carrier has it");
                return Ok(());
            }
        }
        // A matching carrier message too new to bind (it may be this message's own call, landed
        // late on a loaded machine, or a look-alike's live call) proves nothing absent: asked
        // again once it has settled, never sent on its account.
        if !fresh.is_empty() {
            count("unsettled");
            let delay = self.in_doubt_after / 2;
            tracing::info!(%id, retry_in = ?delay, "send in doubt: the carrier has a matching message too new to bind; asking again");
            return store::recheck_at(
                &self.pool,
                id,
                row.checks,
                delay,
                row.attempts,
                "the carrier has a matching message too new to bind",
                false,
            )
            .await;
        }
        // Provably absent: the carrier took no such message since the first call. The call
        // never reached it (a connection lost before the request did, a dispatcher that died):
        // no failure of the message, which is sent again for as long as its validity lasts
        // (`blocked` fails it as `expired` after that), whatever the number of calls.
        count("absent");
        self.send_again(&row, &m, valid_until).await
    }

    /// Sends a message in doubt again, once: the carrier does not have it, or cannot be asked
    /// and the connection's policy is to resend.
    async fn send_again(
        &self,
        row: &InDoubt,
        m: &OutboundMessage,
        valid_until: chrono::DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let id = row.id;
        if let Some((reason, detail)) = self.blocked(m, valid_until) {
            return self.give_up(id, m, reason, None, &detail).await;
        }
        tracing::info!(%id, attempt = row.attempts + 1, "send in doubt: the carrier does not have it; sending");
        if !store::renew(&self.pool, id, row.checks, self.in_doubt_after).await? {
            count("settled_elsewhere");
            tracing::info!(%id, "send in doubt: settled, or taken by another resolver, meanwhile; not sending");
            return Ok(());
        }
        match self.call(m, valid_until).await {
            Ok(receipt) => {
                store::sent(&self.pool, &self.outbox, &[self.taken_row(id, m, &receipt)]).await?;
                self.outbox.wake();
                Ok(())
            }
            Err(CarrierError::Retryable {
                reason,
                detail,
                retry_after,
                ..
            }) => {
                // Throttling never fails a message (its validity bounds it), nor counts as an
                // attempt; other failures that sent nothing do.
                let throttled = matches!(reason, Reason::RateLimited | Reason::QueueOverflow);
                let attempts = if throttled {
                    row.attempts
                } else {
                    row.attempts + 1
                };
                if attempts >= self.send_attempts && !throttled {
                    return self.give_up(id, m, reason, None, &detail).await;
                }
                // Not sooner than a lease: should the carrier have taken it after all, its record
                // must be old enough for the next lookup to consider it.
                let delay = crate::rules::carrier_retry_delay(reason, attempts + 1, retry_after)
                    .max(self.in_doubt_after);
                store::recheck_at(&self.pool, id, row.checks, delay, attempts, &detail, true).await
            }
            // The carrier out of reach: asked about again, never counted (its validity bounds
            // it, through `blocked` on the next round).
            Err(CarrierError::Unreachable {
                detail,
                retry_after,
            }) => {
                let delay = crate::rules::carrier_retry_delay(
                    Reason::CarrierUnavailable,
                    row.attempts + 1,
                    retry_after,
                )
                .max(self.in_doubt_after);
                store::recheck_at(
                    &self.pool,
                    id,
                    row.checks,
                    delay,
                    row.attempts,
                    &detail,
                    true,
                )
                .await
            }
            Err(CarrierError::Permanent {
                reason,
                code,
                detail,
            }) => self.give_up(id, m, reason, code, &detail).await,
            // Looked for again a whole lease from now.
            Err(CarrierError::Ambiguous(detail)) => {
                tracing::warn!(%id, %detail, "carrier call outcome unknown again");
                self.hold_in_doubt(id).await;
                Ok(())
            }
        }
    }

    async fn give_up(
        &self,
        id: uuid::Uuid,
        m: &OutboundMessage,
        reason: Reason,
        code: Option<u32>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        let event = self.encode(&events::status(
            m,
            Status::Failed,
            Some(reason),
            code,
            detail,
        ));
        store::fail(&self.pool, &self.outbox, id, reason, detail, &event).await?;
        self.outbox.wake();
        Ok(())
    }
}
