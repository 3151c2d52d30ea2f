//! Shared consumers across replicas, and restarts: nothing is sent twice, nothing is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sms_proto::v1::SendMessageRequest;
use sms_testkit::{Options, Stack, as_user, eventually, send_ok};

const FROM: &str = "+12015550100";

/// Sends `n` messages with bodies `prefix-<i>`, 32 calls in flight; returns their ids.
async fn send_many(stack: &Stack, n: usize, prefix: &str) -> Vec<String> {
    send_many_with(stack.messaging().await, n, prefix).await
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_a_thousand_messages_and_send_none_twice() {
    let mut stack = Stack::start_with(Options {
        dispatchers: 2,
        ..Options::default()
    })
    .await;
    stack.add_number(FROM).await;
    send_many(&stack, 1000, "shared").await;
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

/// A carrier call with no outcome (the carrier never answers; a dispatcher dying mid-call
/// leaves the same trace) is failed by the sweep as `unknown_carrier_error`, and never sent
/// again; a failure meant only for queued messages leaves one the carrier has moved on alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_call_without_an_outcome_fails_its_message_once_and_is_not_resent() {
    let mut options = Options {
        carrier_timeout: Duration::from_millis(500),
        unknown_outcome_after: Duration::from_secs(1),
        ..Options::default()
    };
    // Slower than the timeout: the request goes out, no answer comes back.
    options.sim.behaviour.api_latency = Duration::from_secs(30);
    let mut stack = Stack::start_with(options).await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let send = |to: &str| SendMessageRequest {
        to: to.into(),
        from: FROM.into(),
        body: "anyone there?".into(),
        ..Default::default()
    };
    let id = send_ok(&mut client, send("+12015550123")).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(
        sms_proto::v1::MessageStatus::try_from(m.status).unwrap(),
        sms_proto::v1::MessageStatus::Failed
    );
    assert_eq!(m.reason, "unknown_carrier_error");
    let last = m.history.last().unwrap();
    assert!(last.detail.contains("no outcome"), "{last:?}");
    // Well past the sweep and the ack wait: no second carrier call.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        stack.stop_dispatcher(0).await,
        1,
        "one carrier call, never repeated"
    );

    // The sweep's failure applies only to a message still queued. Here the carrier takes a
    // message and reports it sent (by hand: its own callbacks are off); then a late
    // unknown-outcome failure comes, then the carrier's `delivered`.
    stack.sim.update(|b| {
        b.api_latency = Duration::ZERO;
        b.callbacks = false;
    });
    stack.start_dispatcher();
    let id = send_ok(&mut client, send("+12015550124")).await.id;
    let status_of = |id: String| {
        let mut client = client.clone();
        async move {
            let m = client
                .get_message(as_user(sms_proto::v1::GetMessageRequest { id }))
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap();
            sms_proto::v1::MessageStatus::try_from(m.status).unwrap()
        }
    };
    let event = |name: &str, status: sms_proto::v1::MessageStatus, only_from| {
        sms_proto::events::v1::StatusChanged {
            meta: Some(sms_bus::meta(name.into(), sms_testkit::ORG, &id)),
            status: status as i32,
            only_from: only_from as i32,
            ..Default::default()
        }
    };
    use sms_proto::v1::MessageStatus::{Delivered, Failed, Queued, Sending, Sent, Unspecified};
    eventually(Duration::from_secs(10), "handed to the carrier", || async {
        matches!(status_of(id.clone()).await, Queued | Sending).then_some(())
    })
    .await;
    let sent = event("by-hand-sent", Sent, Unspecified);
    stack.bus.publish_durably(&sent).await.unwrap();
    eventually(Duration::from_secs(10), "sent", || async {
        (status_of(id.clone()).await == Sent).then_some(())
    })
    .await;
    let mut late = event("late-unknown-outcome", Failed, Queued);
    late.reason = "unknown_carrier_error".into();
    stack.bus.publish_durably(&late).await.unwrap();
    let delivered = event("by-hand-delivered", Delivered, Unspecified);
    stack.bus.publish_durably(&delivered).await.unwrap();
    eventually(Duration::from_secs(10), "a final status", || async {
        let s = status_of(id.clone()).await;
        matches!(s, Delivered | Failed).then_some(())
    })
    .await;
    assert_eq!(
        status_of(id.clone()).await,
        Delivered,
        "a message the carrier moved on is not failed by a late sweep"
    );
    stack.shutdown().await;
}
