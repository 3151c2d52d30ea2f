//! Sending one message: waiting for its partition's and sender's turn, the checks again, the
//! claim, the carrier call, and what is recorded of its outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sms_bus::{ConsumerKind, Delivery, Encoded, HandleError};
use sms_core::{Reason, Status};
use sms_proto::events::v1::{EventMeta, MessageAccepted, MessageDue, OutboundMessage};
use sms_runtime::batch::Batcher;
use sms_runtime::outbox::Outbox;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batches::{BatchError, db_retry};
use crate::carrier::{Carrier, CarrierError, CarrierMessage, CarrierRecord, Receipt};
use crate::config::Carriers;
use crate::rules::{carrier_retry_delay, invalid, valid_until, validity_left};

use crate::StatusSource;
use crate::{events, limiter, partitions, store};

pub(crate) struct Dispatcher {
    pub(crate) pool: PgPool,
    /// Claims, many per transaction: message → attempt number, or `None` when already taken.
    pub(crate) claims: Batcher<store::Claim, Result<Option<i32>, BatchError>>,
    /// Messages the carrier took, recorded many per transaction with their `sending` status.
    pub(crate) sent: Batcher<store::Taken, Result<(), BatchError>>,
    pub(crate) bus: sms_bus::Bus,
    pub(crate) outbox: Outbox,
    /// The carriers, by the name numbers are routed by.
    pub(crate) carriers: Carriers,
    /// Held numbers and their routes (a copy of the number state).
    pub(crate) holders: sms_bus::Holders,
    /// `{public_url}/webhooks/twilio/status`.
    pub(crate) callback_url: String,
    pub(crate) callback_overrides: String,
    pub(crate) send_attempts: i32,
    pub(crate) in_doubt_after: Duration,
    /// The longest one carrier call takes (its timeout).
    pub(crate) carrier_timeout: Duration,
    /// (organization, number) pairs released since the message was accepted or scheduled.
    pub(crate) released: sms_bus::StateSet,
    /// (organization, contact) pairs that opted out.
    pub(crate) opted_out: sms_bus::StateSet,
    /// Each sender held to its rate.
    pub(crate) limiter: limiter::Limiter,
    /// The dispatch partitions this replica holds.
    pub(crate) holdings: partitions::Holdings,
    /// How long after taking a partition its senders' buckets start empty.
    pub(crate) fresh: Duration,
    /// Carrier calls under way at once, whatever the partitions (the waiting is unbounded).
    pub(crate) calls: tokio::sync::Semaphore,
}

/// Carrier calls a replica makes at once.
pub(crate) const CALLS_AT_ONCE: usize = 128;

/// How long an event of a partition this replica no longer holds stays away before it is
/// delivered again (to the partition's new holder).
pub(crate) const PARTITION_MOVED_DELAY: Duration = Duration::from_millis(250);

/// Handlers per partition consumer at once: most of them wait for their sender's rate.
pub(crate) const WAITING_PER_PARTITION: usize = 4096;

pub(crate) fn callback_base(public_url: &str) -> String {
    format!(
        "{}/webhooks/twilio/status",
        public_url.trim_end_matches('/')
    )
}

impl Dispatcher {
    /// Pulls partition `p`'s messages (to send now, and due) until `stop`.
    pub(crate) async fn consume_partition(self: Arc<Self>, p: u16, stop: CancellationToken) {
        let d = self.clone();
        let accepted = self.bus.consume_concurrently(
            ConsumerKind::DispatcherAccepted(p),
            WAITING_PER_PARTITION,
            stop.clone(),
            move |e: MessageAccepted, delivery| {
                let d = d.clone();
                async move { d.send(p, e.meta, e.message, delivery, None, None).await }
            },
        );
        let d = self.clone();
        let due = self.bus.consume_concurrently(
            ConsumerKind::DispatcherDue(p),
            WAITING_PER_PARTITION,
            stop,
            move |e: MessageDue, delivery| {
                let d = d.clone();
                async move {
                    let due = e.send_at.map(|t| t.seconds);
                    let late = e.late.then(|| {
                        let now = Utc::now().timestamp();
                        format!("fired {} s late", now.saturating_sub(due.unwrap_or(now)))
                    });
                    d.send(p, e.meta, e.message, delivery, due, late).await
                }
            },
        );
        let (a, b) = tokio::join!(accepted, due);
        for (what, result) in [("accepted", a), ("due", b)] {
            if let Err(e) = result {
                tracing::error!(partition = p, consumer = what, error = %e, "partition consumer failed");
            }
        }
    }

    /// Waits for `m`'s turn at its sender's rate, while this replica holds `partition`;
    /// `Err` (the event goes back to the bus, for the partition's next holder) when it stops
    /// holding it meanwhile.
    pub(crate) async fn wait_turn(
        &self,
        partition: u16,
        m: &OutboundMessage,
        queued: &Encoded,
    ) -> Result<CancellationToken, HandleError> {
        // Another replica's to send now: back to the stream for whoever holds the partition.
        // Not at once: while a partition changes hands, an event bounced with no delay comes
        // straight back to a pull still open here, again and again (tens of thousands of
        // redeliveries a minute in the long chaos run, starving the machine).
        let gone = || HandleError::Later {
            reason: format!("dispatch partition {partition} is not held here"),
            delay: PARTITION_MOVED_DELAY,
        };
        let held = self.holdings.holding(partition).ok_or_else(gone)?;
        let at = self.limiter.reserve(m, held.since.elapsed() < self.fresh);
        let wait = at.saturating_duration_since(std::time::Instant::now());
        if wait.is_zero() {
            return Ok(held.stop);
        }
        if wait > Duration::from_secs(1) {
            // Waiting for its sender: `queued`, as the claim will say again (same event).
            let _ = self.bus.publish_encoded(queued.clone()).await;
        }
        let waiting = metrics::gauge!(sms_runtime::metrics::DISPATCH_WAITING);
        waiting.increment(1.0);
        let stopped = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = held.stop.cancelled() => true,
        };
        waiting.decrement(1.0);
        metrics::histogram!(
            sms_runtime::metrics::DISPATCH_WAIT_SECONDS,
            "sender_kind" => sms_core::rate::SenderKind::of(&m.from).to_string()
        )
        .record(wait);
        if stopped || self.holdings.holding(partition).is_none() {
            return Err(gone());
        }
        Ok(held.stop)
    }

    pub(crate) async fn send(
        &self,
        partition: u16,
        meta: Option<EventMeta>,
        message: Option<OutboundMessage>,
        delivery: Delivery,
        due: Option<i64>,
        note: Option<String>,
    ) -> Result<(), HandleError> {
        let (Some(_meta), Some(m)) = (meta, message) else {
            return Err(HandleError::Permanent(
                "event without meta or message".into(),
            ));
        };
        let id = Uuid::parse_str(&m.message_id).map_err(|e| {
            HandleError::Permanent(format!("bad message id {:?}: {e}", m.message_id))
        })?;
        let detail = note.as_deref().unwrap_or("");
        let queued = self.encode(&events::status(&m, Status::Queued, None, None, detail));
        // Its sender's turn first: only this replica sends for the sender now.
        let stop = self.wait_turn(partition, &m, &queued).await?;
        // Then a free carrier call; a message still waiting when the partition is given back
        // (or the replica stops) goes back to the bus untouched.
        let given_back = || HandleError::Later {
            reason: format!("dispatch partition {partition} given back"),
            delay: PARTITION_MOVED_DELAY,
        };
        let _call = tokio::select! {
            permit = self.calls.acquire() => permit.map_err(|_| given_back())?,
            () = stop.cancelled() => return Err(given_back()),
        };
        // And room at its carrier, when it bounds its calls (SMPP's windows).
        let carrier = self.carrier_for(&m).ok().cloned();
        let _admitted = match carrier.as_ref().and_then(|c| c.admission()) {
            Some(room) => Some(tokio::select! {
                permit = room.acquire() => permit.map_err(|_| given_back())?,
                () = stop.cancelled() => return Err(given_back()),
            }),
            None => None,
        };
        let valid_until = valid_until(&m, due);
        let claim = store::Claim {
            id,
            organization_id: m.organization_id.clone(),
            message: m.encode_to_vec(),
            valid_until,
            queued: queued.clone(),
        };
        // The claim's lease runs from (at the latest) now: a call that could not end within
        // it is left to in-doubt resolution, which another replica may already be running.
        let claiming = std::time::Instant::now();
        let Some(attempt) = self
            .claims
            .call(claim)
            .await
            .unwrap_or_else(|| Err(BatchError::stopping()))
            .map_err(|e| e.handle(delivery))?
        else {
            tracing::debug!(%id, "already taken on; dropping the redelivery");
            return Ok(());
        };
        // The claim committed `queued` to the outbox, which will publish it. An early copy goes
        // out now, before the carrier call, so that it is on the bus ahead of the carrier's
        // callbacks (the composer holds back callbacks for a message not yet seen queued);
        // JetStream drops whichever copy comes second (same event id).
        let early = if attempt == 1 {
            self.bus.publish_encoded(queued).await.ok()
        } else {
            None
        };
        if let Some((reason, detail)) = self.blocked(&m, valid_until) {
            return self.fail(id, &m, reason, None, &detail, delivery).await;
        }
        // A loaded machine (a slow commit, a stalled publish) can eat the lease before the
        // call starts; once a resolver may have taken the send, calling as well could send it
        // twice. Left `sending`: the resolver asks the carrier, and sends it once if absent.
        if claiming.elapsed() + self.carrier_timeout >= self.in_doubt_after {
            tracing::warn!(%id, waited = ?claiming.elapsed(), "the claim's lease ran out before the carrier call; leaving it to in-doubt resolution");
            metrics::counter!(sms_runtime::metrics::IN_DOUBT_RESOLVED, "outcome" => "lease_lapsed")
                .increment(1);
            return Ok(());
        }
        let outcome = self.call(&m, valid_until).await;
        if let Some(ack) = early
            && let Err(e) = ack.await
        {
            tracing::debug!(%id, error = %e, "early queued copy not stored; the outbox publishes it");
        }
        match outcome {
            Ok(receipt) => self.taken(id, &m, &receipt, delivery).await,
            // The carrier throttling us (429, 20429, 30001) slows the message down, never fails
            // it: it is tried again after a back-off for as long as its validity lasts.
            Err(CarrierError::Retryable {
                reason: reason @ (Reason::RateLimited | Reason::QueueOverflow),
                code,
                detail,
                retry_after,
            }) => {
                tracing::info!(%id, attempt, %reason, ?code, "the carrier is throttling; will retry");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                let delay = carrier_retry_delay(reason, attempt + 1, retry_after);
                // The sender (and the account) slows down, not just this message.
                self.limiter.hold(&m, delay);
                Err(HandleError::Unavailable {
                    reason: detail,
                    delay,
                })
            }
            // The carrier out of reach (no connection, 502/503/504) is no failure of the
            // message: it waits, backing off, for as long as its validity lasts, like
            // throttling, and then fails as `expired` (not after a number of calls).
            Err(CarrierError::Unreachable {
                detail,
                retry_after,
            }) => {
                tracing::info!(%id, attempt, %detail, "the carrier cannot be reached; will retry within the message's validity");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                Err(HandleError::Unavailable {
                    reason: detail,
                    delay: carrier_retry_delay(
                        Reason::CarrierUnavailable,
                        attempt + 1,
                        retry_after,
                    ),
                })
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                retry_after,
            }) if attempt < self.send_attempts && !delivery.last => {
                tracing::warn!(%id, attempt, %reason, ?code, %detail, "carrier call failed; will retry");
                store::to_retry(&self.pool, id, &detail)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                Err(HandleError::Retry {
                    reason: detail,
                    delay: carrier_retry_delay(reason, attempt + 1, retry_after),
                })
            }
            Err(CarrierError::Retryable {
                reason,
                code,
                detail,
                ..
            })
            | Err(CarrierError::Permanent {
                reason,
                code,
                detail,
            }) => {
                tracing::info!(%id, %reason, ?code, %detail, "message failed at the carrier");
                self.fail(id, &m, reason, code, &detail, delivery).await
            }
            Err(CarrierError::Ambiguous(detail)) => {
                // Left `sending`: once in doubt, the carrier is asked whether it has it.
                tracing::warn!(%id, %detail, "carrier call outcome unknown; will ask the carrier");
                self.hold_in_doubt(id).await;
                Ok(())
            }
        }
    }

    /// After a call whose outcome is unknown: a whole lease from now before anyone asks the
    /// carrier (see [`store::hold_in_doubt`]). Should this fail, the lease taken before the call
    /// still holds.
    pub(crate) async fn hold_in_doubt(&self, id: Uuid) {
        if let Err(e) = store::hold_in_doubt(&self.pool, id, self.in_doubt_after).await {
            tracing::warn!(%id, error = %e, "could not extend the lease of a send in doubt");
        }
    }

    /// Why `m` must not be handed to the carrier now, if it must not: a rule broken on the way,
    /// an opt-out or release since it was accepted, or its validity over.
    pub(crate) fn blocked(
        &self,
        m: &OutboundMessage,
        valid_until: DateTime<Utc>,
    ) -> Option<(Reason, String)> {
        // What can change between accepting and sending is checked again here, and so is what
        // the composer checked: the event came over the bus.
        let blocked = invalid(m)
            .inspect(|(reason, detail)| {
                tracing::error!(message_id = %m.message_id, %reason, %detail, "message breaks a rule; not sent");
            })
            .or_else(|| self.refusal(m).map(|r| (r, String::new())))
            .or_else(|| {
                (Utc::now() > valid_until).then(|| {
                    (
                        Reason::Expired,
                        format!(
                            "not handed to the carrier before its validity ended at {}",
                            valid_until.to_rfc3339()
                        ),
                    )
                })
            })?;
        metrics::counter!(sms_runtime::metrics::SENDS_BLOCKED, "reason" => blocked.0.as_str())
            .increment(1);
        Some(blocked)
    }

    /// One carrier call, measured.
    pub(crate) async fn call(
        &self,
        m: &OutboundMessage,
        valid_until: DateTime<Utc>,
    ) -> Result<Receipt, CarrierError> {
        let started = std::time::Instant::now();
        // The carrier call as a client span: the carrier gets its context (`traceparent`), and
        // so does the status callback URL, so the webhooks it causes join this trace under it.
        let span = tracing::info_span!(
            "carrier send",
            otel.name = "POST Messages",
            otel.kind = "client",
            "http.request.method" = "POST",
            "sms.carrier" = "twilio",
            "sms.message_id" = %m.message_id,
            otel.status_code = tracing::field::Empty,
        );
        let carrier = match self.carrier_for(m) {
            Ok(c) => c,
            Err(detail) => {
                tracing::warn!(message_id = %m.message_id, %detail, "no carrier for the message's route");
                return Err(CarrierError::Permanent {
                    reason: Reason::AccountProblem,
                    code: None,
                    detail,
                });
            }
        };
        let message = span.in_scope(|| self.carrier_message(m, validity_left(valid_until)));
        let outcome = tracing::Instrument::instrument(carrier.send(&message), span.clone()).await;
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        metrics::histogram!(sms_runtime::metrics::CARRIER_REQUEST_SECONDS)
            .record(started.elapsed());
        metrics::counter!(
            sms_runtime::metrics::CARRIER_REQUESTS,
            "outcome" => match &outcome {
                Ok(_) => "accepted",
                Err(CarrierError::Retryable { .. }) => "retryable_error",
                Err(CarrierError::Permanent { .. }) => "refused",
                Err(CarrierError::Unreachable { .. }) => "unreachable",
                Err(CarrierError::Ambiguous(_)) => "unknown",
            }
        )
        .increment(1);
        outcome
    }

    /// Records that the carrier took `m` under `carrier_sid`, with the `sending` status that
    /// binds the message to it.
    pub(crate) async fn taken(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        receipt: &Receipt,
        delivery: Delivery,
    ) -> Result<(), HandleError> {
        let taken = self.taken_row(id, m, receipt);
        // The carrier's callbacks apply only once the composer knows the sid from us: an early
        // copy goes out now, ahead of them, while the claim's change commits (a fact whatever
        // becomes of the commit: the carrier has the message). JetStream drops whichever copy
        // comes second (same event id); the outbox's is the one that cannot be lost.
        let early = self.bus.publish_encoded(taken.events[0].clone()).await.ok();
        let recorded = self
            .sent
            .call(taken)
            .await
            .unwrap_or_else(|| Err(BatchError::stopping()))
            .map_err(|e| e.handle(delivery));
        if let Some(ack) = early
            && let Err(e) = ack.await
        {
            tracing::debug!(%id, error = %e, "early sending copy not stored; the outbox publishes it");
        }
        recorded
    }

    /// The carrier `m` goes through: its sender's route, or the default.
    pub(crate) fn carrier_for(&self, m: &OutboundMessage) -> Result<&Arc<dyn Carrier>, String> {
        let route = self.holders.route(&m.organization_id, &m.from);
        self.carriers.get(&route).ok_or_else(|| {
            format!(
                "{} is routed to the carrier connection {}, which this dispatcher does not have \
                 (it has {})",
                m.from,
                sms_core::text::quote(&route),
                self.carriers.names().join(", ")
            )
        })
    }

    /// The carrier `m` goes through, or the default when its route names none (for what is
    /// asked of the carrier about a message already sent).
    pub(crate) fn carrier_or_default(&self, m: &OutboundMessage) -> &Arc<dyn Carrier> {
        self.carrier_for(m).unwrap_or(&self.carriers.default)
    }

    /// The row recording that the carrier took `m`: its sid, the `sending` status binding the
    /// message to it and, over SMPP, its parts' ids and `sent` (the SMSC took every part; the
    /// rest comes in receipts).
    pub(crate) fn taken_row(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        receipt: &Receipt,
    ) -> store::Taken {
        let account = self.carrier_or_default(m).account();
        let mut events = vec![self.encode(&events::sending(
            &m.organization_id,
            &m.message_id,
            &receipt.carrier_sid,
            account,
        ))];
        if !receipt.parts.is_empty() {
            let record = CarrierRecord {
                sid: receipt.carrier_sid.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                body: String::new(),
                status: Some(Status::Sent),
                error_code: None,
                reason: None,
                created_at: Utc::now(),
            };
            if let Some(sent) =
                events::from_record(&m.organization_id, &m.message_id, account, &record)
            {
                events.push(self.encode(&sent));
            }
        }
        store::Taken {
            id,
            organization_id: m.organization_id.clone(),
            carrier_sid: receipt.carrier_sid.clone(),
            events,
            connection: account.to_owned(),
            parts: receipt.parts.clone(),
        }
    }

    /// Fails a claimed message: the claim's state and the `failed` status, in one transaction.
    pub(crate) async fn fail(
        &self,
        id: Uuid,
        m: &OutboundMessage,
        reason: Reason,
        code: Option<u32>,
        detail: &str,
        delivery: Delivery,
    ) -> Result<(), HandleError> {
        let event = self.encode(&events::status(
            m,
            Status::Failed,
            Some(reason),
            code,
            detail,
        ));
        store::fail(&self.pool, &self.outbox, id, reason, detail, &event)
            .await
            .map_err(|e| db_retry(e, delivery))?;
        self.outbox.wake();
        Ok(())
    }

    pub(crate) fn encode<E: sms_bus::Event>(&self, event: &E) -> Encoded {
        self.outbox.encode(event)
    }

    /// Why the message must not go out any more, if it must not.
    pub(crate) fn refusal(&self, m: &OutboundMessage) -> Option<Reason> {
        if !m.allow_opted_out && self.opted_out.contains(&m.organization_id, &m.to) {
            return Some(Reason::OptedOut);
        }
        self.released
            .contains(&m.organization_id, &m.from)
            .then_some(Reason::SenderUnavailable)
    }

    pub(crate) fn carrier_message(
        &self,
        m: &OutboundMessage,
        validity_seconds: u32,
    ) -> CarrierMessage {
        let traceparent = sms_bus::trace::current_traceparent();
        let status_callback = match self.carrier_or_default(m).statuses() {
            StatusSource::Callbacks => Some(self.status_callback(m, traceparent.as_deref())),
            StatusSource::Receipts => None,
        };
        CarrierMessage {
            from: m.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            status_callback,
            media_urls: m.media_urls.clone(),
            validity_seconds,
            traceparent,
        }
    }

    /// The URL the carrier calls back with a message's statuses: the message and its
    /// organization in the query, with the trace context and the carrier's retry overrides.
    pub(crate) fn status_callback(&self, m: &OutboundMessage, traceparent: Option<&str>) -> String {
        let mut params = vec![
            ("org", m.organization_id.as_str()),
            ("mid", m.message_id.as_str()),
        ];
        if let Some(tp) = traceparent {
            // The callback URL is signed by the carrier, so the trace context in it is trusted
            // and the status events of this message continue its trace.
            params.push(("tp", tp));
        }
        let mut callback = reqwest::Url::parse_with_params(&self.callback_url, &params)
            .map(String::from)
            .unwrap_or_default();
        if !self.callback_overrides.is_empty() && !callback.is_empty() {
            // How the carrier calls us back: retries while our receiver is briefly unavailable.
            callback = format!("{callback}#{}", self.callback_overrides);
        }
        callback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CALLBACK_OVERRIDES;

    #[test]
    fn callbacks_ask_for_retries_in_the_fragment() {
        let url = format!(
            "{}?mid=1#{DEFAULT_CALLBACK_OVERRIDES}",
            callback_base("https://x/")
        );
        let (base, o) = sms_twilio::overrides::ConnectionOverrides::split(&url);
        assert_eq!(base, "https://x/webhooks/twilio/status?mid=1");
        assert_eq!(o.retries, 5);
        assert!(o.retries_after(sms_twilio::overrides::Attempt::Status(503)));
    }
}
