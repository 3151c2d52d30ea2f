//! Applying status events to the message store, a batch per transaction: the status machine
//! decides, a carrier's callback applies only to the message whose carrier sid (and account)
//! the dispatcher reported, and the customer is billed when the carrier takes a message.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sms_bus::HandleError;
use sms_core::{Failure, MessageId, Status, Transition};
use sms_proto::events::v1::{CarrierOptOut, StatusChanged, StatusSource};

use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::store::{self, messages::Current};
use sms_feed::Written;

/// Who said a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The dispatcher: it reports the carrier's sid and account a message went out with.
    Dispatcher,
    /// A carrier's callback: it applies only to the message with its sid.
    Carrier,
    /// The scheduler or the composer.
    Other,
}

/// A status event as the bus brought it, read once at the consumer's edge: what applying it
/// decides on.
#[derive(Debug, Clone)]
struct StatusEvent {
    organization_id: String,
    id: MessageId,
    to: Status,
    source: Source,
    /// The carrier's sid (the dispatcher's report, or the callback's claim); empty: none.
    carrier_sid: String,
    /// The carrier account; empty: none (a receiver older than accounts on events).
    carrier_account: String,
    /// Meant only for a message still at this status (the dispatcher's sweep).
    only_from: Option<Status>,
    /// The event's id (an event is recorded once in a message's history).
    event_id: String,
    /// The history entry it makes, when it makes one.
    fact: store::HistoryRow,
    /// The carrier's code, as the carrier-opt-out event carries it.
    carrier_error_code: u32,
}

impl StatusEvent {
    /// Reads a status event: the organization, message and status it is about, and what it
    /// says of them.
    fn read(e: &StatusChanged) -> Result<Self, HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("status event without meta".into()));
        };
        let Ok(id) = meta.message_id.parse::<MessageId>() else {
            return Err(HandleError::Permanent(format!(
                "status event for a bad message id {}",
                sms_core::text::quote(&meta.message_id)
            )));
        };
        let Some(to) = sms_bus::status_from_proto(e.status()) else {
            return Err(HandleError::Permanent(
                "status event without a status".into(),
            ));
        };
        Ok(StatusEvent {
            organization_id: meta.organization_id.clone(),
            id,
            to,
            source: match e.source() {
                StatusSource::Dispatcher => Source::Dispatcher,
                StatusSource::Carrier => Source::Carrier,
                _ => Source::Other,
            },
            carrier_sid: e.carrier_sid.clone(),
            carrier_account: e.carrier_account.clone(),
            only_from: sms_bus::status_from_proto(e.only_from()),
            event_id: meta.event_id.clone(),
            fact: fact(e, to),
            carrier_error_code: e.carrier_error_code,
        })
    }
}

/// A database failure while applying statuses: try the event again shortly.
fn database_retry(e: sqlx::Error) -> HandleError {
    sms_runtime::db::consumer_error(e, 3)
}

/// How long an event that came before the one it follows waits for it.
const OUT_OF_ORDER_PATIENCE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// An event that arrived before the one it follows (a callback before the dispatcher's
/// `sending`): tried again shortly, however many deliveries it has had (an outage of the
/// database or the bus can use them up while both wait), for as long as it is younger than
/// [`OUT_OF_ORDER_PATIENCE`]; after that it is about a message that never went out (or not
/// through the carrier that says so), and goes to the dead-letter stream. The wait grows with
/// the event's age: a quarter of its age, from 250 ms (the predecessor is usually a moment
/// behind) to a minute. A callback for a call in doubt waits for the dispatcher's resolution,
/// which may take minutes and reports the carrier's record itself: coming back every few
/// seconds meanwhile only loads the composer (the long chaos run, full of calls in doubt,
/// stopped converging with a 5 s ceiling).
fn out_of_order(occurred: DateTime<Utc>, reason: String) -> HandleError {
    let age = Utc::now() - occurred;
    if age < OUT_OF_ORDER_PATIENCE {
        let quarter = (age / 4).to_std().unwrap_or_default();
        HandleError::Later {
            reason,
            delay: quarter.clamp(Duration::from_millis(250), Duration::from_secs(60)),
        }
    } else {
        HandleError::Permanent(format!("{reason}, 10 minutes on"))
    }
}

/// What a carrier's callback may do to a message as it stands.
#[derive(Debug)]
enum CarrierCheck {
    /// It is about this message (the sid and account the dispatcher reported): apply it.
    Apply,
    /// It is about another message (another sid, another account), or one that never went
    /// out: ignore it.
    Ignore(&'static str),
    /// The dispatcher has not reported the carrier's sid yet (its `sending` may still be on its
    /// way: events of one message can be applied out of order across batches). A callback is
    /// never taken at its word for which message it is: it waits for the dispatcher's.
    NotYet,
}

fn carrier_check(current: &Current, sid: &str, account: &str) -> CarrierCheck {
    if sid.is_empty() {
        return CarrierCheck::Ignore("a carrier callback without a message sid");
    }
    match &current.carrier_sid {
        Some(known) if known != sid => {
            CarrierCheck::Ignore("a carrier callback for another carrier sid")
        }
        // An event without an account comes from a receiver older than accounts on events.
        Some(_) => match &current.carrier_account {
            Some(ours) if !account.is_empty() && ours != account => {
                CarrierCheck::Ignore("a carrier callback signed by another carrier account")
            }
            _ => CarrierCheck::Apply,
        },
        // Only a message the dispatcher has in hand (or will have) can be the one.
        None => match current.status {
            Status::Accepted | Status::Scheduled | Status::Queued | Status::Sending => {
                CarrierCheck::NotYet
            }
            _ => CarrierCheck::Ignore("a carrier callback for a message that was not sent"),
        },
    }
}

/// Whether a failure is the carrier saying the recipient unsubscribed there (its own code,
/// mapped by the carrier crate to `opted_out`): our dispatcher refusing an opted-out contact
/// also fails with `opted_out`, but with no carrier code, and is nothing new.
fn carrier_opt_out(fact: &store::HistoryRow) -> bool {
    fact.carrier_error_code.is_some()
        && fact.reason.as_ref().and_then(Failure::reason) == Some(sms_core::Reason::OptedOut)
}

/// The history entry a status event makes.
fn fact(e: &StatusChanged, to: Status) -> store::HistoryRow {
    let text = |s: &str| {
        Some(s)
            .filter(|s| !s.is_empty())
            .map(|s| sms_core::text::sanitize(s, sms_core::text::Lines::Multi).0)
    };
    store::HistoryRow {
        status: to,
        // The catalogue's reason (the typed field, or an older producer's name); other text as
        // it came, sanitized.
        reason: sms_bus::event_reason(e)
            .map(Failure::Known)
            .or_else(|| text(&e.reason).map(Failure::Other)),
        carrier_error_code: (e.carrier_error_code != 0)
            .then(|| i32::try_from(e.carrier_error_code).unwrap_or(i32::MAX)),
        occurred_at: e
            .meta
            .as_ref()
            .and_then(|m| m.occurred_at.as_ref())
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .unwrap_or_else(Utc::now),
        detail: text(&e.detail),
    }
}

/// Statuses: status events applied to their messages, a batch per transaction, with the
/// feed's entries and carrier opt-outs in the same transaction.
#[derive(Clone)]
pub struct Statuses {
    pool: PgPool,
    outbox: Outbox,
    written: Written,
}

impl Statuses {
    /// Statuses stored in `pool`; what they cause goes out through `outbox` and the feed.
    pub fn new(pool: PgPool, outbox: Outbox, written: Written) -> Self {
        Statuses {
            pool,
            outbox,
            written,
        }
    }

    /// Applies a status event to its message (older and repeated statuses change nothing).
    pub async fn apply_status(&self, e: &StatusChanged) -> Result<(), HandleError> {
        match self.apply_batch(std::slice::from_ref(e)).await {
            Ok(mut outcomes) => outcomes.pop().unwrap_or(Ok(())),
            Err(e) => Err(database_retry(e)),
        }
    }

    /// Applies a batch of status events in one transaction, in the order given (the bus's);
    /// returns one outcome per event. Should the transaction fail, each event is applied on
    /// its own, so one bad event costs only itself.
    pub async fn apply_statuses(&self, events: &[StatusChanged]) -> Vec<Result<(), HandleError>> {
        match self.apply_batch(events).await {
            Ok(outcomes) => outcomes,
            Err(e) if events.len() > 1 => {
                tracing::warn!(events = events.len(), error = %e, "batch of statuses failed; applying one by one");
                let mut outcomes = Vec::with_capacity(events.len());
                for event in events {
                    outcomes.push(self.apply_status(event).await);
                }
                outcomes
            }
            Err(e) => vec![Err(database_retry(e))],
        }
    }

    async fn apply_batch(
        &self,
        events: &[StatusChanged],
    ) -> Result<Vec<Result<(), HandleError>>, sqlx::Error> {
        let mut outcomes: Vec<Result<(), HandleError>> = Vec::with_capacity(events.len());
        let mut valid = Vec::with_capacity(events.len());
        for (index, e) in events.iter().enumerate() {
            match StatusEvent::read(e) {
                Ok(event) => {
                    valid.push((index, event));
                    outcomes.push(Ok(()));
                }
                Err(why) => outcomes.push(Err(why)),
            }
        }
        if valid.is_empty() {
            return Ok(outcomes);
        }
        let mut ids: Vec<MessageId> = valid.iter().map(|(_, e)| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        let mut current: HashMap<MessageId, Current> =
            store::messages::lock_statuses(&mut tx, &ids)
                .await?
                .into_iter()
                .collect();
        let mut updates: HashMap<MessageId, store::messages::StatusUpdate> = HashMap::new();
        let mut history = Vec::new();
        let mut billable = Vec::new();
        let mut advanced = Vec::new();
        let mut canceled = Vec::new();
        let mut feed = Vec::new();
        let mut opt_outs = Vec::new();
        for (index, e) in valid {
            let (org, id, to) = (e.organization_id.as_str(), e.id, e.to);
            let Some(now) = current.get_mut(&id).filter(|c| c.organization_id == org) else {
                tracing::warn!(%id, "status for a message we do not have; ignored");
                continue;
            };
            if e.source == Source::Carrier {
                match carrier_check(now, &e.carrier_sid, &e.carrier_account) {
                    CarrierCheck::Apply => {}
                    CarrierCheck::Ignore(why) => {
                        tracing::warn!(%id, status = %to, sid = %sms_core::text::quote(&e.carrier_sid), why, "carrier callback ignored");
                        metrics::counter!(sms_runtime::metrics::STATUSES_IGNORED, "why" => why)
                            .increment(1);
                        continue;
                    }
                    CarrierCheck::NotYet => {
                        outcomes[index] = Err(out_of_order(
                            e.fact.occurred_at,
                            format!(
                                "{to} from the carrier (sid {}) for a message still {} whose sid \
                                 the dispatcher has not reported",
                                sms_core::text::quote(&e.carrier_sid),
                                now.status
                            ),
                        ));
                        continue;
                    }
                }
            }
            // An event meant only for a message still at `only_from` (the dispatcher's sweep
            // failing a call without an outcome) is not a fact about a message past it.
            if let Some(only_from) = e.only_from
                && only_from != now.status
            {
                continue;
            }
            let transition = now.status.transition(to);
            // Nothing reaches the carrier before the dispatcher's `queued`, which may still be
            // on its way: events of one message can be applied out of order across batches.
            // Try again shortly (for a while: a callback for a message that never went out ends
            // in the dead-letter stream).
            if transition == Transition::Illegal
                && matches!(now.status, Status::Accepted | Status::Scheduled)
                && matches!(
                    to,
                    Status::Sending | Status::Sent | Status::Delivered | Status::Undelivered
                )
            {
                outcomes[index] = Err(out_of_order(
                    e.fact.occurred_at,
                    format!("{to} for a message still {}", now.status),
                ));
                continue;
            }
            let update = updates.entry(id).or_default();
            let StatusEvent {
                event_id,
                fact,
                carrier_sid,
                carrier_account,
                source,
                carrier_error_code,
                ..
            } = e;
            match transition {
                Transition::Advance => {
                    if to == Status::Failed && carrier_opt_out(&fact) {
                        opt_outs.push(CarrierOptOut {
                            meta: Some(sms_bus::meta(
                                sms_bus::stable_event_id(&[&id.to_string(), "carrier-opt-out"]),
                                org,
                                &id.to_string(),
                            )),
                            contact_number: now.about.to.clone(),
                            our_number: now.about.from.clone(),
                            carrier_error_code,
                        });
                    }
                    feed.push(crate::feed::status_entry(
                        org, id, &event_id, &fact, &now.about,
                    ));
                    update.status = Some(to);
                    if fact.reason.is_some() {
                        update.reason.clone_from(&fact.reason);
                    }
                    if fact.carrier_error_code.is_some() {
                        update.carrier_error_code = fact.carrier_error_code;
                    }
                    history.push(store::NewHistory {
                        message_id: id,
                        entry: fact,
                        event_id,
                    });
                    // The carrier took it: this is what the customer is billed for.
                    if matches!(to, Status::Sent | Status::Delivered | Status::Undelivered) {
                        billable.push(id);
                    }
                    advanced.push(to);
                    if to == Status::Canceled {
                        canceled.push(id);
                    }
                    now.status = to;
                }
                // Older than what is known (`sent` applied after `delivered`): still a fact of
                // the message's life, recorded once in its history at its own time.
                Transition::Stale if to != now.status => {
                    history.push(store::NewHistory {
                        message_id: id,
                        entry: fact,
                        event_id,
                    });
                }
                Transition::Stale => {}
                Transition::Illegal => {
                    tracing::warn!(%id, from = %now.status, to = %to, "illegal status change ignored");
                }
            }
            // The dispatcher reports the sid the carrier answered with, and the account it
            // went through: those are the message's. Callbacks carrying another are refused.
            if !carrier_sid.is_empty() && source == Source::Dispatcher {
                now.carrier_sid = Some(carrier_sid.clone());
                update.carrier_sid = Some(carrier_sid);
                if !carrier_account.is_empty() {
                    now.carrier_account = Some(carrier_account.clone());
                    update.carrier_account = Some(carrier_account);
                }
            }
        }
        let updates: Vec<(MessageId, store::messages::StatusUpdate)> =
            updates.into_iter().collect();
        store::messages::set_statuses(&mut tx, &updates).await?;
        store::history::insert(&mut tx, &history).await?;
        billable.sort_unstable();
        billable.dedup();
        let billed = store::usage::record(&mut tx, &billable).await?;
        // A canceled message gives its segments back to its day's cap.
        store::settings::refund(&mut tx, &canceled).await?;
        sms_feed::store::feed::append(&mut tx, &feed).await?;
        // The registry records what the carrier said of this message's recipient.
        for opt_out in &opt_outs {
            self.outbox.add_event(&mut tx, opt_out).await?;
        }
        tx.commit().await?;
        if !opt_outs.is_empty() {
            self.outbox.wake();
        }
        if !feed.is_empty() {
            self.written.wake();
        }
        for to in advanced {
            metrics::counter!(sms_runtime::metrics::MESSAGE_STATUSES, "status" => to.as_str())
                .increment(1);
        }
        for (encoding, segments) in billed {
            metrics::counter!(sms_runtime::metrics::SEGMENTS_BILLED, "encoding" => encoding.as_str())
                .increment(u64::try_from(segments).unwrap_or(0));
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: Status, sid: Option<&str>) -> Current {
        Current {
            organization_id: "o".into(),
            status,
            carrier_sid: sid.map(str::to_owned),
            carrier_account: sid.map(|_| "AC1".to_owned()),
            about: Default::default(),
        }
    }

    #[test]
    fn an_early_event_waits_for_its_predecessor_for_a_while_whatever_its_deliveries() {
        let event = |age: chrono::TimeDelta| Utc::now() - age;
        assert!(matches!(
            out_of_order(event(chrono::TimeDelta::seconds(30)), "x".into()),
            HandleError::Later { delay, .. }
                if delay >= Duration::from_millis(7500) && delay < Duration::from_secs(8)
        ));
        assert!(matches!(
            out_of_order(event(chrono::TimeDelta::zero()), "x".into()),
            HandleError::Later { delay, .. } if delay == Duration::from_millis(250)
        ));
        assert!(matches!(
            out_of_order(event(chrono::TimeDelta::minutes(9)), "x".into()),
            HandleError::Later { delay, .. } if delay == Duration::from_secs(60)
        ));
        assert!(matches!(
            out_of_order(event(chrono::TimeDelta::minutes(11)), "x".into()),
            HandleError::Permanent(_)
        ));
    }

    #[test]
    fn callbacks_apply_only_to_their_message() {
        let sm = "SM0123456789abcdef0123456789abcdef";
        let other = "SMffffffffffffffffffffffffffffffff";
        let check = |status, sid, callback_sid, account| {
            format!(
                "{:?}",
                carrier_check(&at(status, sid), callback_sid, account)
            )
        };
        assert_eq!(check(Status::Sent, Some(sm), sm, "AC1"), "Apply");
        assert_eq!(check(Status::Sending, Some(sm), sm, "AC1"), "Apply");
        // A receiver that does not say the account yet: the sid decides.
        assert_eq!(check(Status::Sent, Some(sm), sm, ""), "Apply");
        assert!(check(Status::Sent, Some(sm), other, "AC1").starts_with("Ignore"));
        assert!(check(Status::Sent, Some(sm), sm, "AC2").contains("another carrier account"));
        // Before the dispatcher reported the sid, no callback is taken at its word: a message
        // queued behind its sender's rate is not the carrier's yet.
        for status in [
            Status::Accepted,
            Status::Scheduled,
            Status::Queued,
            Status::Sending,
        ] {
            assert_eq!(check(status, None, sm, "AC1"), "NotYet", "{status}");
        }
        assert!(check(Status::Canceled, None, sm, "AC1").starts_with("Ignore"));
        assert!(check(Status::Failed, None, sm, "AC1").starts_with("Ignore"));
        assert!(check(Status::Queued, None, "", "AC1").starts_with("Ignore"));
    }
}
