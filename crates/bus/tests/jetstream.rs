//! The bus on the real NATS JetStream: de-duplication, shared consumers, bounded redelivery and
//! the dead-letter stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sms_bus::{Bus, BusConfig, ConsumerKind, HandleError};
use sms_proto::events::v1::{MessageAccepted, OutboundMessage};
use tokio_util::sync::CancellationToken;

async fn bus() -> Bus {
    bus_with(|_| {}).await
}

async fn bus_with(adjust: impl FnOnce(&mut BusConfig)) -> Bus {
    let mut config = BusConfig::new(
        "nats://127.0.0.1:4222",
        format!("b{}", uuid::Uuid::new_v4().simple()),
    );
    config.ack_wait = Duration::from_secs(2);
    config.max_deliver = 3;
    adjust(&mut config);
    Bus::connect(config)
        .await
        .expect("NATS with JetStream must run on 127.0.0.1:4222")
}

/// The dispatch partition of the test events (organization `org`, no sender).
fn partition() -> u16 {
    sms_bus::dispatch_partition("org", "")
}

/// The consumer of the test events.
fn accepted_consumer() -> ConsumerKind {
    ConsumerKind::DispatcherAccepted(partition())
}

fn accepted(event_id: &str, message_id: &str) -> MessageAccepted {
    MessageAccepted {
        meta: Some(sms_bus::meta(event_id.to_owned(), "org", message_id)),
        message: Some(OutboundMessage {
            message_id: message_id.into(),
            ..Default::default()
        }),
    }
}

/// A subscription to the dispatcher-accepted consumer's dead letters.
async fn dead_letters(bus: &Bus) -> async_nats::Subscriber {
    let subject = bus
        .subjects()
        .dead_letter(&accepted_consumer().durable_name());
    let dlq = bus.client().subscribe(subject).await.unwrap();
    bus.client().flush().await.unwrap();
    dlq
}

async fn stream_messages(bus: &Bus) -> u64 {
    let mut stream = bus
        .jetstream()
        .get_stream(bus.subjects().events_stream())
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_republished_event_id_is_stored_once() {
    let bus = bus().await;
    let e = accepted("evt-1", "m-1");
    bus.publish_durably(&e).await.unwrap();
    bus.publish_durably(&e).await.unwrap();
    bus.publish_durably(&accepted("evt-2", "m-2"))
        .await
        .unwrap();
    assert_eq!(stream_messages(&bus).await, 2);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn consumers_of_one_durable_share_the_events() {
    // Small pulls, so that one replica cannot take every event in its first batch (which NATS
    // may rightly do when it is quicker to ask).
    let bus = bus_with(|c| {
        c.batch = 10;
        c.concurrency = 2;
        c.ack_wait = Duration::from_secs(30);
    })
    .await;
    for i in 0..200 {
        bus.publish_durably(&accepted(&format!("e{i}"), &format!("m{i}")))
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for replica in 0..2 {
        let (bus, shutdown, seen) = (bus.clone(), shutdown.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            bus.consume(
                accepted_consumer(),
                shutdown,
                move |e: MessageAccepted, _| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap()
                            .push((replica, e.meta.unwrap().message_id));
                        // Hold the first events until the other replica has one too: whichever
                        // replica asked first keeps at most one small batch, so the rest must go
                        // to the other. If the durable were not shared, both would see all 200.
                        let both = || {
                            let seen = seen.lock().unwrap();
                            seen.iter().any(|(r, _)| *r == 0) && seen.iter().any(|(r, _)| *r == 1)
                        };
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                        while !both() && tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Ok(())
                    }
                },
            )
            .await
        }));
    }
    sms_testkit_free_wait(|| seen.lock().unwrap().len() >= 200).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let mut ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (seen.len(), ids.len()),
        (200, 200),
        "each event handled exactly once"
    );
    assert!(seen.iter().any(|(r, _)| *r == 0) && seen.iter().any(|(r, _)| *r == 1));
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn failing_and_undecodable_events_are_dead_lettered_without_blocking_the_rest() {
    let bus = bus().await;
    let mut dlq = dead_letters(&bus).await;
    // An event whose bytes are not a MessageAccepted, on the consumer's subject.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "garbage");
    headers.insert(sms_bus::EVENT_TYPE_HEADER, "sms.events.v1.MessageAccepted");
    bus.jetstream()
        .publish_with_headers(
            bus.subjects().msg_accepted(partition()),
            headers,
            vec![0xff, 0xff, 0xff].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    bus.publish_durably(&accepted("poison", "m-poison"))
        .await
        .unwrap();
    bus.publish_durably(&accepted("fine", "m-fine"))
        .await
        .unwrap();

    let attempts = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (bus, shutdown, attempts, handled) = (
            bus.clone(),
            shutdown.clone(),
            attempts.clone(),
            handled.clone(),
        );
        tokio::spawn(async move {
            bus.consume(
                accepted_consumer(),
                shutdown,
                move |e: MessageAccepted, d| {
                    let (attempts, handled) = (attempts.clone(), handled.clone());
                    async move {
                        let id = e.meta.unwrap().message_id;
                        if id == "m-poison" {
                            attempts.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(d.last, d.attempt >= 3);
                            return Err(HandleError::Retry {
                                reason: "always failing".into(),
                                delay: Duration::from_millis(50),
                            });
                        }
                        handled.lock().unwrap().push(id);
                        Ok(())
                    }
                },
            )
            .await
        })
    };
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(15), dlq.next())
            .await
            .unwrap()
            .unwrap();
        let h = msg.headers.unwrap();
        reasons.push(
            h.get(sms_bus::DLQ_REASON_HEADER)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    reasons.sort();
    assert!(
        reasons[0].starts_with("cannot decode msg.accepted"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("always failing"), "{reasons:?}");
    assert_eq!(handled.lock().unwrap().as_slice(), ["m-fine"]);
    // Bounded: exactly max_deliver attempts, then no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    bus.delete_streams().await.unwrap();
}

/// Protobuf decodes one type's bytes as another without complaint: a `MessageDue` is a valid
/// `MessageAccepted`. The type header stops it (and an event without one) before the handler.
#[tokio::test]
async fn events_of_another_type_are_dead_lettered_unhandled() {
    use prost::Message as _;
    let bus = bus().await;
    let mut dlq = dead_letters(&bus).await;
    let due = sms_proto::events::v1::MessageDue {
        meta: Some(sms_bus::meta("due-1".into(), "org", "m-due")),
        message: Some(OutboundMessage {
            message_id: "m-due".into(),
            to: "+12015550123".into(),
            ..Default::default()
        }),
        late: true,
        send_at: None,
    };
    let bytes = due.encode_to_vec();
    assert!(
        MessageAccepted::decode(bytes.as_slice()).is_ok(),
        "without the header the handler would get it"
    );
    for (id, header) in [
        ("wrong-type", Some("sms.events.v1.MessageDue")),
        ("no-type", None),
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        if let Some(t) = header {
            headers.insert(sms_bus::EVENT_TYPE_HEADER, t);
        }
        bus.jetstream()
            .publish_with_headers(
                bus.subjects().msg_accepted(partition()),
                headers,
                bytes.clone().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    bus.publish_durably(&accepted("fine", "m-fine"))
        .await
        .unwrap();
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (bus, shutdown, handled) = (bus.clone(), shutdown.clone(), handled.clone());
        tokio::spawn(async move {
            bus.consume(
                accepted_consumer(),
                shutdown,
                move |e: MessageAccepted, _| {
                    let handled = handled.clone();
                    async move {
                        handled.lock().unwrap().push(e.meta.unwrap().message_id);
                        Ok(())
                    }
                },
            )
            .await
        })
    };
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(15), dlq.next())
            .await
            .unwrap()
            .unwrap();
        let h = msg.headers.unwrap();
        reasons.push(
            h.get(sms_bus::DLQ_REASON_HEADER)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "event type \"sms.events.v1.MessageDue\" where sms.events.v1.MessageAccepted was expected",
            "no Sms-Event-Type header where sms.events.v1.MessageAccepted was expected",
        ]
    );
    sms_testkit_free_wait(|| handled.lock().unwrap().len() == 1).await;
    assert_eq!(handled.lock().unwrap().as_slice(), ["m-fine"]);
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn batches_keep_the_stream_order_and_settle_each_event_on_its_own() {
    let bus = bus().await;
    // Published before the consumer starts, so they arrive together.
    for i in 0..50 {
        bus.publish_durably(&accepted(&format!("e{i}"), &format!("m{i}")))
            .await
            .unwrap();
    }
    let mut dlq = dead_letters(&bus).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<(String, i64)>>::new()));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (bus, shutdown, seen) = (bus.clone(), shutdown.clone(), seen.clone());
        tokio::spawn(async move {
            bus.consume_batches(
                accepted_consumer(),
                shutdown,
                move |batch: Vec<(MessageAccepted, sms_bus::Delivery)>| {
                    // Recorded as the batch is handed over, which is in stream order.
                    let ids: Vec<(String, i64)> = batch
                        .iter()
                        .map(|(e, d)| (e.meta.clone().unwrap().message_id, d.attempt))
                        .collect();
                    seen.lock().unwrap().push(ids.clone());
                    async move {
                        // Slow enough that the events behind pile up into the next batches.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        // m7 fails once, then succeeds; m9 is refused for good.
                        ids.iter()
                            .map(|(id, attempt)| match (id.as_str(), attempt) {
                                ("m7", 1) => Err(HandleError::Retry {
                                    reason: "not yet".into(),
                                    delay: Duration::from_millis(50),
                                }),
                                ("m9", _) => Err(HandleError::Permanent("refused".into())),
                                _ => Ok(()),
                            })
                            .collect()
                    }
                },
            )
            .await
        })
    };
    let dead = tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dead.headers
            .unwrap()
            .get(sms_bus::DLQ_REASON_HEADER)
            .unwrap()
            .as_str(),
        "permanent: refused"
    );
    sms_testkit_free_wait(|| {
        seen.lock()
            .unwrap()
            .iter()
            .flatten()
            .any(|(id, attempt)| id == "m7" && *attempt == 2)
    })
    .await;
    // Settled: nothing else comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    let batches = seen.lock().unwrap().clone();
    let first: Vec<&str> = batches
        .iter()
        .flatten()
        .filter(|(_, attempt)| *attempt == 1)
        .map(|(id, _)| id.as_str())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(
        first, expected,
        "first deliveries in stream order, each once"
    );
    let again: Vec<&str> = batches
        .iter()
        .flatten()
        .filter(|(_, attempt)| *attempt > 1)
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(again, ["m7"], "only the retried event came back");
    assert!(
        batches.iter().any(|b| b.len() > 1),
        "events that were waiting arrive together: {:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    bus.delete_streams().await.unwrap();
}

async fn sms_testkit_free_wait(mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out");
}
