//! Consuming: durable pull consumers shared by every replica, explicit acks, bounded
//! redelivery, batches, the dead-letter stream, and each message's span and count.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderValue;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use crate::client::{Bus, persist};
use crate::error::{BusError, HandleError};

use crate::event::Event;
use crate::subjects::{ConsumerKind, Subjects};
use crate::trace;
use crate::{
    DLQ_CONSUMER_HEADER, DLQ_REASON_HEADER, DLQ_SUBJECT_HEADER, EVENT_TYPE_HEADER, metrics,
};

/// One delivery of an event to a handler.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// 1 for the first delivery.
    pub attempt: i64,
    /// Whether a failure now sends the event to the dead-letter stream.
    pub last: bool,
}

impl Bus {
    /// Consumes events of type `E` from the durable consumer `kind` until `shutdown`, running
    /// up to `concurrency` handlers at once. On shutdown no new event is taken and the ones in
    /// hand are finished; events fetched but not started are redelivered after `ack_wait`.
    pub async fn consume<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        self.consume_concurrently(kind, self.config.concurrency, shutdown, handler)
            .await
    }

    /// Like [`Bus::consume`], with up to `concurrency` handlers at once: for handlers that
    /// mostly wait (a message held to its sender's rate), thousands.
    pub async fn consume_concurrently<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        concurrency: usize,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        let consumer = self.durable(kind, &shutdown).await?;
        while !shutdown.is_cancelled() {
            let Some(messages) = self.pull(&consumer, kind, &shutdown).await else {
                continue;
            };
            messages
                .take_until(shutdown.cancelled())
                .for_each_concurrent(concurrency, |message| async {
                    match message {
                        Ok(m) => self.handle(kind, m, &handler).await,
                        Err(e) => {
                            tracing::warn!(consumer = %kind.durable_name(), error = %e, "consumer stream error")
                        }
                    }
                })
                .await;
        }
        Ok(())
    }

    /// Like [`Bus::consume`], but hands `handler` every event that has arrived (up to `batch`)
    /// at once, so that it can apply them together, in one transaction say. It returns one
    /// outcome per event, in order; each is acknowledged, retried or dead-lettered on its own.
    /// Up to `batches_in_flight` batches are handled at once.
    pub async fn consume_batches<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), BusError>
    where
        E: Event,
        F: Fn(Vec<(E, Delivery)>) -> Fut + Send + Sync,
        Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
    {
        let consumer = self.durable(kind, &shutdown).await?;
        while !shutdown.is_cancelled() {
            let Some(messages) = self.pull(&consumer, kind, &shutdown).await else {
                continue;
            };
            messages
                .take_until(shutdown.cancelled())
                .filter_map(|message| async move {
                    message
                        .inspect_err(|e| {
                            tracing::warn!(consumer = %kind.durable_name(), error = %e, "consumer stream error");
                        })
                        .ok()
                })
                .ready_chunks(self.config.batch)
                .for_each_concurrent(self.config.batches_in_flight, |batch| {
                    self.handle_batch(kind, batch, &handler)
                })
                .await;
        }
        Ok(())
    }

    /// The durable consumer `kind`, set up however long JetStream takes to answer (a leader
    /// election), until `shutdown`.
    pub(crate) async fn durable(
        &self,
        kind: ConsumerKind,
        shutdown: &CancellationToken,
    ) -> Result<PullConsumer, BusError> {
        persist(
            "JetStream consumer set-up",
            // Until shutdown: a consumer is what the service is for.
            Duration::from_secs(365 * 24 * 3600),
            Some(shutdown),
            || self.consumer(kind),
        )
        .await
    }

    /// A pull stream on `consumer`; `None` (after a pause, or at shutdown) when the pull failed.
    pub(crate) async fn pull(
        &self,
        consumer: &PullConsumer,
        kind: ConsumerKind,
        shutdown: &CancellationToken,
    ) -> Option<pull::Stream> {
        match consumer
            .stream()
            .max_messages_per_batch(self.config.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(consumer = %kind.durable_name(), error = %e, "pull failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                None
            }
        }
    }

    pub(crate) fn delivery(&self, message: &jetstream::Message) -> Delivery {
        let attempt = message.info().map_or(1, |i| i.delivered);
        Delivery {
            attempt,
            last: attempt >= self.config.max_deliver,
        }
    }

    /// Acknowledges, retries or dead-letters `message` by the handler's `result`.
    pub(crate) async fn settle(
        &self,
        kind: ConsumerKind,
        message: &jetstream::Message,
        delivery: Delivery,
        result: Result<(), HandleError>,
    ) {
        let outcome = match result {
            Ok(()) => {
                count(kind, "ok");
                message.ack().await
            }
            Err(HandleError::Retry { reason, delay }) if !delivery.last => {
                tracing::warn!(attempt = delivery.attempt, %reason, "handler failed; will retry");
                count(kind, "retry");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandleError::Unavailable { reason, delay }) => {
                tracing::warn!(attempt = delivery.attempt, %reason, "a dependency is unavailable; will retry");
                count(kind, "unavailable");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandleError::Later { reason, delay }) => {
                tracing::debug!(attempt = delivery.attempt, %reason, "event not for now; back to the stream");
                count(kind, "later");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(e) => return self.dead_letter(kind, message, &e.to_string()).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "acknowledgement failed; the event will be redelivered");
        }
    }

    pub(crate) async fn handle_batch<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        messages: Vec<jetstream::Message>,
        handler: &F,
    ) where
        E: Event,
        F: Fn(Vec<(E, Delivery)>) -> Fut + Send + Sync,
        Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
    {
        let span = tracing::info_span!(
            "process batch",
            otel.name = %format_args!("process {}", kind.filter_subject(&self.subjects)),
            otel.kind = "consumer",
            "messaging.system" = "nats",
            "messaging.operation.type" = "process",
            "messaging.consumer.group.name" = %kind.durable_name(),
            "messaging.batch.message_count" = messages.len(),
        );
        async {
            let mut events = Vec::with_capacity(messages.len());
            let mut kept = Vec::with_capacity(messages.len());
            for message in messages {
                let delivery = self.delivery(&message);
                match decode::<E>(&message) {
                    Ok(event) => {
                        trace::link_from(&tracing::Span::current(), message.headers.as_ref());
                        // Each event's processing in its own trace too: a span that is the
                        // child of the event's creation and lasts as long as its batch.
                        let each = process_span(&self.subjects, kind, &message);
                        trace::set_parent_from(&each, message.headers.as_ref());
                        each.record("sms.message_id", event.message_id());
                        events.push((event, delivery));
                        kept.push((message, delivery, each));
                    }
                    Err(reason) => self.dead_letter(kind, &message, &reason).await,
                }
            }
            if events.is_empty() {
                return;
            }
            let started = std::time::Instant::now();
            let results = handler(events).await;
            ::metrics::histogram!(metrics::HANDLE_SECONDS, "consumer" => kind.durable_name())
                .record(started.elapsed());
            if results.len() != kept.len() {
                tracing::error!(
                    events = kept.len(),
                    outcomes = results.len(),
                    "batch handler returned the wrong number of outcomes; retrying the rest"
                );
            }
            let results = results
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat_with(|| None));
            for ((message, delivery, _each), result) in kept.iter().zip(results) {
                let result = result.unwrap_or_else(|| {
                    Err(HandleError::Retry {
                        reason: "no outcome from the batch handler".into(),
                        delay: Duration::from_secs(1),
                    })
                });
                self.settle(kind, message, *delivery, result).await;
            }
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn handle<E, F, Fut>(
        &self,
        kind: ConsumerKind,
        message: jetstream::Message,
        handler: &F,
    ) where
        E: Event,
        F: Fn(E, Delivery) -> Fut + Send + Sync,
        Fut: Future<Output = Result<(), HandleError>> + Send,
    {
        let span = process_span(&self.subjects, kind, &message);
        trace::set_parent_from(&span, message.headers.as_ref());
        async {
            let delivery = self.delivery(&message);
            let event = match decode::<E>(&message) {
                Ok(e) => e,
                Err(reason) => return self.dead_letter(kind, &message, &reason).await,
            };
            tracing::Span::current().record("sms.message_id", event.message_id());
            let started = std::time::Instant::now();
            // A handler that takes a while (a message waiting for its sender's rate) keeps the
            // event: JetStream is told it is in progress, so it is not redelivered meanwhile.
            let work = handler(event, delivery);
            tokio::pin!(work);
            let period = (self.config.ack_wait / 3).max(Duration::from_millis(100));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let result = loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = ticks.tick() => {
                        if let Err(e) = message.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "progress acknowledgement failed");
                        }
                    }
                }
            };
            ::metrics::histogram!(metrics::HANDLE_SECONDS, "consumer" => kind.durable_name())
                .record(started.elapsed());
            self.settle(kind, &message, delivery, result).await;
        }
        .instrument(span)
        .await
    }

    /// Copies an event to the dead-letter stream with the reason, then terminates it, so it
    /// never blocks the events behind it.
    pub(crate) async fn dead_letter(
        &self,
        kind: ConsumerKind,
        message: &jetstream::Message,
        reason: &str,
    ) {
        tracing::error!(%reason, "dead-lettering event");
        count(kind, "dead_lettered");
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(DLQ_REASON_HEADER, HeaderValue::from(reason));
        headers.insert(DLQ_SUBJECT_HEADER, message.subject.as_str());
        headers.insert(DLQ_CONSUMER_HEADER, kind.durable_name().as_str());
        let seq = message.info().map_or(0, |i| i.stream_sequence);
        headers.insert(
            "Nats-Msg-Id",
            format!("{}-{seq}", kind.durable_name()).as_str(),
        );
        let published = match self
            .js
            .publish_with_headers(
                self.subjects.dead_letter(&kind.durable_name()),
                headers,
                message.payload.clone(),
            )
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => {
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "could not terminate a dead-lettered event");
                }
            }
            // Not stored in the DLQ: leave it unacknowledged so it comes back, never lost.
            Err(e) => tracing::error!(error = %e, "dead-letter publish failed"),
        }
    }
}

/// A consumer's processing of one message (messaging semantic conventions: operation
/// `process`, span kind consumer).
pub(crate) fn process_span(
    subjects: &Subjects,
    kind: ConsumerKind,
    message: &jetstream::Message,
) -> tracing::Span {
    let event_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map_or("", |v| v.as_str());
    tracing::info_span!(
        "process",
        // Named after the consumer's filter (low cardinality: no numbers, no organizations).
        otel.name = %format_args!("process {}", kind.filter_subject(subjects)),
        otel.kind = "consumer",
        "messaging.system" = "nats",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = %message.subject,
        "messaging.consumer.group.name" = %kind.durable_name(),
        "messaging.message.id" = %event_id,
        "sms.message_id" = field::Empty,
    )
}

/// The event in `message`, if the message says it is an `E` (its type header) and decodes as
/// one; otherwise why not.
pub(crate) fn decode<E: Event>(message: &async_nats::Message) -> Result<E, String> {
    let declared = message
        .headers
        .as_ref()
        .and_then(|h| h.get(EVENT_TYPE_HEADER))
        .map(|v| v.as_str());
    match declared {
        Some(t) if t == E::TYPE => {}
        Some(t) => {
            return Err(format!(
                "event type {} where {} was expected",
                sms_core::text::quote(t),
                E::TYPE
            ));
        }
        None => {
            return Err(format!(
                "no {EVENT_TYPE_HEADER} header where {} was expected",
                E::TYPE
            ));
        }
    }
    E::decode(message.payload.clone()).map_err(|e| format!("cannot decode {}: {e}", E::NAME))
}

pub(crate) fn count(kind: ConsumerKind, outcome: &'static str) {
    ::metrics::counter!(metrics::EVENTS, "consumer" => kind.durable_name(), "outcome" => outcome)
        .increment(1);
}
