//! The state stream's local copies: opted-out contacts and held numbers, replayed at start-up
//! and kept current.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::client::{Bus, START_PATIENCE, persist};
use crate::consume::decode;
use crate::error::BusError;
use crate::event::Event;
use crate::subjects::StateKind;

/// A running state follower.
#[derive(Debug, Clone)]
pub struct StateFollower {
    ready: tokio::sync::watch::Receiver<bool>,
}

impl StateFollower {
    /// Waits until the replay has caught up, at most `timeout`; returns whether it has.
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.ready.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Bus {
    /// A local copy of the state `kind` as a set: `entry` turns each change into
    /// (organization, key, whether the key is in the set). Waits for the replay to catch up,
    /// at most `catch_up` (then starts anyway, with a warning).
    pub async fn state_set<E: Event>(
        &self,
        kind: StateKind,
        shutdown: CancellationToken,
        catch_up: Duration,
        entry: fn(E) -> (String, String, bool),
    ) -> Result<StateSet, BusError> {
        let set = StateSet::default();
        let copy = set.clone();
        let mut follower = self
            .follow_state(kind, shutdown, move |e: E| {
                let (organization_id, key, present) = entry(e);
                copy.set(organization_id, key, present);
            })
            .await?;
        if !follower.wait_ready(catch_up).await {
            tracing::warn!(
                kind = kind.as_str(),
                "local copy not caught up after {catch_up:?}; starting anyway"
            );
        }
        Ok(set)
    }

    /// Follows the compacted state of `kind`: replays the current value of every key, then
    /// every change, calling `apply` for each (in order, per replica, never acknowledged: each
    /// replica sees everything). The returned handle tells when the replay has caught up.
    pub async fn follow_state<E, F>(
        &self,
        kind: StateKind,
        shutdown: CancellationToken,
        apply: F,
    ) -> Result<StateFollower, BusError>
    where
        E: Event,
        F: Fn(E) + Send + Sync + 'static,
    {
        let (consumer, pending) = persist(
            "state consumer set-up",
            START_PATIENCE,
            Some(&shutdown),
            || self.state_consumer(kind),
        )
        .await?;
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(pending == 0);
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| BusError::js("state consumer", e))?;
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        match decode::<E>(&message) {
                            Ok(event) => apply(event),
                            Err(reason) => {
                                tracing::error!(subject = %message.subject, %reason, "state entry refused")
                            }
                        }
                        if message.info().is_ok_and(|i| i.pending == 0) {
                            let _ = ready_tx.send(true);
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "state consumer error"),
                    None => {
                        tracing::error!(kind = kind.as_str(), "state consumer ended");
                        return;
                    }
                }
            }
        });
        Ok(StateFollower { ready: ready_rx })
    }

    /// An ordered consumer replaying the state of `kind`, and how many entries it has to replay.
    async fn state_consumer(
        &self,
        kind: StateKind,
    ) -> Result<
        (
            async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>,
            u64,
        ),
        BusError,
    > {
        let stream = self
            .js
            .get_stream(self.subjects.state_stream())
            .await
            .map_err(|e| BusError::js("state stream lookup", e))?;
        let mut consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.subjects.state_all(kind),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::js("state consumer set-up", e))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| BusError::js("state consumer info", e))?
            .num_pending;
        Ok((consumer, pending))
    }
}

/// A replica's local set of (organization, key) pairs — opted-out contacts, released numbers —
/// kept current from the state stream by [`Bus::follow_state`]. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct StateSet(std::sync::Arc<std::sync::RwLock<std::collections::HashSet<(String, String)>>>);

impl StateSet {
    /// Records whether `key` of `organization_id` is in the set.
    pub fn set(&self, organization_id: String, key: String, present: bool) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        if present {
            set.insert((organization_id, key));
        } else {
            set.remove(&(organization_id, key));
        }
    }

    /// Whether `key` of `organization_id` is in the set.
    pub fn contains(&self, organization_id: &str, key: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(organization_id.to_owned(), key.to_owned()))
    }
}

/// Held numbers, a replica's copy of the number state kept by [`Holders::apply`] from
/// [`Bus::follow_state`]: each number's organization and the carrier connection its messages
/// go through. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct Holders(std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Held>>>);

/// Who holds a number, and how it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The organization holding it.
    pub organization_id: String,
    /// Its carrier connection; empty for the default.
    pub carrier_connection: String,
}

impl Holders {
    /// Applies a number's state: held (again, perhaps with another route), or released by the
    /// organization that held it.
    pub fn apply(&self, e: &sms_proto::events::v1::NumberChanged) {
        let org = e
            .meta
            .as_ref()
            .map(|m| m.organization_id.clone())
            .unwrap_or_default();
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if e.active {
            map.insert(
                e.number.clone(),
                Held {
                    organization_id: org,
                    carrier_connection: e.carrier_connection.clone(),
                },
            );
        } else if map.get(&e.number).is_some_and(|h| h.organization_id == org) {
            map.remove(&e.number);
        }
    }

    /// Who holds `number`, as the copy says now.
    pub fn get(&self, number: &str) -> Option<Held> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(number)
            .cloned()
    }

    /// The organization holding `number`. A number the copy does not know is looked up again
    /// for up to `patience`: the carrier only delivers for numbers we hold, so it may have been
    /// added just now and its state still be on its way.
    pub async fn holder(&self, number: &str, patience: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let org = self.get(number).map(|h| h.organization_id);
            if org.is_some() || std::time::Instant::now() >= deadline {
                return org;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The carrier connection `organization_id`'s `number` sends through; empty for the
    /// default (or a number it does not hold).
    pub fn route(&self, organization_id: &str, number: &str) -> String {
        self.get(number)
            .filter(|h| h.organization_id == organization_id)
            .map(|h| h.carrier_connection)
            .unwrap_or_default()
    }
}

/// The opted-out set's entry for an opt-out change, for [`Bus::state_set`].
pub fn opted_out_entry(e: sms_proto::events::v1::OptOutChanged) -> (String, String, bool) {
    let org = e.meta.map(|m| m.organization_id).unwrap_or_default();
    (org, e.contact_number, e.opted_out)
}

#[cfg(test)]
mod tests {
    use crate::{meta, new_event_id};
    use sms_proto::events::v1::NumberChanged;

    use super::*;

    fn changed(org: &str, number: &str, active: bool, route: &str) -> NumberChanged {
        NumberChanged {
            meta: Some(meta(new_event_id(), org, "")),
            number: number.into(),
            active,
            carrier_connection: route.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_held_copy_follows_holds_routes_and_releases_by_their_holder() {
        let h = Holders::default();
        h.apply(&changed("a", "+1", true, "smpp"));
        assert_eq!(h.route("a", "+1"), "smpp");
        assert_eq!(
            h.route("b", "+1"),
            "",
            "another organization's number has no route"
        );
        // A release by another organization (an old one) leaves the holder's.
        h.apply(&changed("b", "+1", false, ""));
        assert_eq!(h.get("+1").map(|x| x.organization_id), Some("a".into()));
        h.apply(&changed("a", "+1", true, ""));
        assert_eq!(h.route("a", "+1"), "", "back to the default");
        h.apply(&changed("a", "+1", false, ""));
        assert_eq!(h.get("+1"), None);
    }
}
