//! The outbox relay on the real PostgreSQL and NATS: committed events published once, rolled
//! back ones never; a failed publish leaves its row for the next round; an outbox whose
//! process stopped between the commit and the publish is relayed by another; a publish
//! repeated after a crash before the row was deleted is dropped by JetStream; replicas share
//! the rows without publishing any twice.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use sms_bus::{Bus, BusConfig};
use sms_proto::events::v1::{MessageAccepted, OutboundMessage};
use sms_runtime::outbox::{Outbox, OutboxConfig, Round};
use sms_testkit::{NATS_URL, fresh_database, fresh_namespace};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

async fn setup() -> (PgPool, Bus) {
    let url = fresh_database().await;
    let none = Migrator::with_migrations(Vec::new());
    let pool = sms_runtime::db::connect(&url, "relaytest", 8, &none)
        .await
        .unwrap();
    let bus = Bus::connect(BusConfig::new(NATS_URL, fresh_namespace()))
        .await
        .unwrap();
    (pool, bus)
}

fn outbox(pool: &PgPool, bus: &Bus) -> Outbox {
    Outbox::new(
        "test",
        pool.clone(),
        bus.clone(),
        OutboxConfig {
            batch: 100,
            poll: Duration::from_millis(50),
            ..OutboxConfig::default()
        },
    )
}

fn accepted(n: usize) -> MessageAccepted {
    let id = format!("m{n}");
    MessageAccepted {
        meta: Some(sms_bus::meta(
            sms_bus::stable_event_id(&[&id, "accepted"]),
            "org",
            &id,
        )),
        message: Some(OutboundMessage {
            message_id: id,
            ..Default::default()
        }),
    }
}

/// The message ids in the events stream, in order.
async fn published(bus: &Bus) -> Vec<String> {
    let stream = bus
        .jetstream()
        .get_stream(bus.subjects().events_stream())
        .await
        .unwrap();
    let count = stream.clone().info().await.unwrap().state.messages;
    if count == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            // No acks, so no limit of pending acks (1,000 by default) on what one fetch gets.
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(usize::try_from(count).unwrap())
        .messages()
        .await
        .unwrap();
    let mut ids = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let event: MessageAccepted = prost::Message::decode(m.payload.clone()).unwrap();
        ids.push(event.meta.unwrap().message_id);
    }
    ids
}

async fn add(outbox: &Outbox, pool: &PgPool, range: std::ops::Range<usize>, commit: bool) {
    let mut tx = pool.begin().await.unwrap();
    let events: Vec<_> = range.map(|n| outbox.encode(&accepted(n))).collect();
    outbox.add(&mut tx, &events).await.unwrap();
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn committed_events_are_published_once_in_order_and_rolled_back_ones_never() {
    let (pool, bus) = setup().await;
    let outbox = outbox(&pool, &bus);
    add(&outbox, &pool, 0..3, true).await;
    add(&outbox, &pool, 3..5, false).await;
    add(&outbox, &pool, 5..6, true).await;
    assert_eq!(outbox.pending().await.unwrap(), 4);
    let round = outbox.relay_once().await.unwrap();
    assert_eq!(
        round,
        Round {
            published: 4,
            failed: 0
        }
    );
    assert_eq!(outbox.pending().await.unwrap(), 0);
    assert_eq!(outbox.relay_once().await.unwrap(), Round::default());
    assert_eq!(published(&bus).await, ["m0", "m1", "m2", "m5"]);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn a_failed_publish_keeps_its_row_until_the_bus_takes_it() {
    let (pool, bus) = setup().await;
    let outbox = outbox(&pool, &bus);
    add(&outbox, &pool, 0..5, true).await;
    // No stream takes the subject: every publish is refused.
    bus.delete_streams().await.unwrap();
    let round = outbox.relay_once().await.unwrap();
    assert_eq!(
        round,
        Round {
            published: 0,
            failed: 5
        }
    );
    assert_eq!(outbox.pending().await.unwrap(), 5);
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT max(attempts), max(last_error) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some_and(|e| !e.is_empty()));
    // The bus is back: the relay, running, publishes them after its back-off.
    bus.ensure_streams().await.unwrap();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(outbox.clone().run(shutdown.clone()));
    sms_testkit::eventually(Duration::from_secs(10), "the outbox drained", || async {
        (outbox.pending().await.unwrap() == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    relay.await.unwrap();
    assert_eq!(published(&bus).await, ["m0", "m1", "m2", "m3", "m4"]);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn events_left_by_a_stopped_process_are_relayed_by_another_and_repeats_are_dropped() {
    let (pool, bus) = setup().await;
    // The first process committed ten events and stopped before relaying any.
    let first = outbox(&pool, &bus);
    add(&first, &pool, 0..10, true).await;
    // It had published two of them when it died, without deleting their rows.
    for n in 0..2 {
        bus.publish_encoded(first.encode(&accepted(n)))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    drop(first);
    // Another process's relay finds them by polling: nothing woke it.
    let second = outbox(&pool, &bus);
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(second.clone().run(shutdown.clone()));
    sms_testkit::eventually(Duration::from_secs(10), "the outbox drained", || async {
        (second.pending().await.unwrap() == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    relay.await.unwrap();
    let ids = published(&bus).await;
    assert_eq!(ids.len(), 10, "JetStream dropped the repeated two: {ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10);
    bus.delete_streams().await.unwrap();
}

#[tokio::test]
async fn relays_share_the_rows_and_publish_none_twice() {
    let (pool, bus) = setup().await;
    let writer = outbox(&pool, &bus);
    for chunk in 0..20 {
        add(&writer, &pool, chunk * 100..(chunk + 1) * 100, true).await;
    }
    // Three relays at once, each taking rows the others do not hold.
    let relays: Vec<Outbox> = (0..3).map(|_| outbox(&pool, &bus)).collect();
    let rounds = futures::future::join_all(relays.iter().map(|r| async move {
        let mut total = 0;
        loop {
            let round = r.relay_once().await.unwrap();
            assert_eq!(round.failed, 0);
            if round.published == 0 {
                return total;
            }
            total += round.published;
        }
    }))
    .await;
    assert_eq!(rounds.iter().sum::<usize>(), 2000, "{rounds:?}");
    assert_eq!(writer.pending().await.unwrap(), 0);
    let ids = published(&bus).await;
    assert_eq!(ids.len(), 2000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2000);
    bus.delete_streams().await.unwrap();
}
