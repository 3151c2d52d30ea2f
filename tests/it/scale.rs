//! Shared consumers across replicas, and restarts: nothing is sent twice, nothing is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sms_proto::v1::SendMessageRequest;
use sms_testkit::{Options, Stack, eventually, send_ok};

const FROM: &str = "+12015550100";

/// Sends `n` messages with bodies `prefix-<i>`, 32 calls in flight; returns their ids.
async fn send_many_with(
    client: sms_proto::v1::messaging_service_client::MessagingServiceClient<
        tonic::transport::Channel,
    >,
    n: usize,
    prefix: &str,
) -> Vec<String> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut client = client.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        let body = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let request = SendMessageRequest {
                to: format!("+1201555{:04}", 1000 + i % 8000),
                from: FROM.into(),
                body,
                ..Default::default()
            };
            send_ok(&mut client, request).await.id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids
}

fn assert_each_sent_once(stack: &Stack, n: usize, prefix: &str) {
    let bodies: Vec<String> = stack
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.http_status == 201)
        .map(|r| r.body)
        .collect();
    let distinct: HashSet<&String> = bodies.iter().collect();
    assert_eq!(distinct.len(), n, "every message reached the carrier");
    assert_eq!(bodies.len(), n, "no message reached the carrier twice");
    assert!(distinct.iter().all(|b| b.starts_with(prefix)));
}

/// One sender for each dispatch partition, so that every replica has senders to send for.
fn one_sender_per_partition() -> Vec<String> {
    let mut by_partition = std::collections::BTreeMap::new();
    for k in 0.. {
        let number = format!("+1201555{:04}", 100 + k);
        by_partition
            .entry(sms_bus::dispatch_partition(sms_testkit::ORG, &number))
            .or_insert(number);
        if by_partition.len() == usize::from(sms_bus::DISPATCH_PARTITIONS) {
            break;
        }
    }
    by_partition.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_a_thousand_messages_and_send_none_twice() {
    let mut stack = Stack::start_with(Options {
        dispatchers: 2,
        // The production lease: the tests' 2 s made leases lapse under the whole suite's load
        // (a round's queries slower than the lease), so that the two replicas traded
        // partitions for the whole 30 s CI once waited for them to settle.
        partition_lease: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    // Each replica sends for the senders of its partitions: senders on every partition.
    let senders = one_sender_per_partition();
    for number in &senders {
        stack.add_number(number).await;
    }
    stack.wait_partitions_shared().await;
    let client = stack.messaging().await;
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut client = client.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        let from = senders[i % senders.len()].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let request = SendMessageRequest {
                to: format!("+1201556{:04}", i),
                from,
                body: format!("shared-{i}"),
                ..Default::default()
            };
            send_ok(&mut client, request).await.id
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stack.wait_delivered(1000).await;
    assert_each_sent_once(&stack, 1000, "shared");
    let b = stack.stop_dispatcher(1).await;
    let a = stack.stop_dispatcher(0).await;
    assert_eq!(a + b, 1000);
    assert!(a > 0 && b > 0, "both replicas took a share: {a} and {b}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_stopped_mid_stream_and_started_again_loses_and_repeats_nothing() {
    let mut options = Options::default();
    // Slow carrier calls, so a backlog builds up behind the dispatcher.
    options.sim.behaviour.api_latency = Duration::from_millis(500);
    let mut stack = Stack::start_with(options).await;
    stack.add_number(FROM).await;
    let sending = tokio::spawn(send_many_with(stack.messaging().await, 300, "restart"));
    // Stop while it is busy: some sent, most not.
    eventually(Duration::from_secs(30), "the first sends", || {
        let n = stack.sim.requests().len();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    let before = stack.stop_dispatcher(0).await;
    assert!(before < 300, "stopped mid-stream ({before} sent)");
    stack.start_dispatcher();
    assert_eq!(sending.await.unwrap().len(), 300);
    stack.wait_delivered(300).await;
    assert_each_sent_once(&stack, 300, "restart");
    let after = stack.stop_dispatcher(0).await;
    assert_eq!(
        before + after,
        300,
        "the new instance sent exactly the rest"
    );
    stack.shutdown().await;
}
