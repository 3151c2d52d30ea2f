//! Send later: local times across DST, cancel and reschedule, replicas, restarts.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use prost::Message as _;
use sms_proto::events::v1::MessageDue;
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::{
    CancelMessageRequest, LocalDateTime, MessageStatus, RescheduleMessageRequest,
    SendMessageRequest,
};
use sms_testkit::{Options, Stack, as_user, eventually, send_ok};
use tonic::transport::Channel;
use tonic_types::StatusExt;

const FROM: &str = "+12015550100";
const TO: &str = "+12015550123";

fn at(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn later(body: &str, send_at: Timestamp) -> SendMessageRequest {
    SendMessageRequest {
        to: TO.into(),
        from: FROM.into(),
        body: body.into(),
        send_at: Some(at(send_at)),
        ..Default::default()
    }
}

fn local(date_time: &str, zone: &str) -> SendMessageRequest {
    SendMessageRequest {
        to: TO.into(),
        from: FROM.into(),
        body: "local".into(),
        send_at_local: Some(LocalDateTime {
            date_time: date_time.into(),
            time_zone: zone.into(),
        }),
        ..Default::default()
    }
}

fn reason(status: tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// The next spring-forward and fall-back of `zone`: (a skipped local time, an ambiguous local
/// time and the earlier instant it means).
fn next_dst(zone: &str) -> (String, String, Timestamp) {
    let tz = TimeZone::get(zone).unwrap();
    let mut gap = None;
    let mut fold = None;
    let mut before = tz.to_offset(Timestamp::now());
    for t in tz.following(Timestamp::now()).take(4) {
        let after = t.offset();
        if after > before && gap.is_none() {
            // Local times from the transition (read with the old offset) are skipped.
            let skipped = before.to_datetime(t.timestamp()) + SignedDuration::from_mins(30);
            gap = Some(skipped.to_string());
        } else if after < before && fold.is_none() {
            // Local times just after the transition (new offset) happened once already.
            let local = after.to_datetime(t.timestamp()) + SignedDuration::from_mins(30);
            let earlier = before.to_timestamp(local).unwrap();
            fold = Some((local.to_string(), earlier));
        }
        before = after;
    }
    let (fold_local, earlier) = fold.unwrap();
    (gap.unwrap(), fold_local, earlier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_times_across_dst_in_new_york_and_berlin() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    for zone in ["America/New_York", "Europe/Berlin"] {
        let (gap, fold, earlier) = next_dst(zone);
        let status = client
            .send_message(as_user(local(&gap, zone)))
            .await
            .unwrap_err();
        assert_eq!(
            reason(status),
            "LOCAL_TIME_DOES_NOT_EXIST",
            "{gap} in {zone}"
        );
        let reply = client
            .send_message(as_user(local(&fold, zone)))
            .await
            .unwrap()
            .into_inner();
        let m = reply.message.unwrap();
        assert_eq!(
            MessageStatus::try_from(m.status).unwrap(),
            MessageStatus::Scheduled
        );
        assert_eq!(
            m.send_at.unwrap().seconds,
            earlier.as_second(),
            "{fold} in {zone}"
        );
        assert!(
            reply.notes[0].contains("happens twice"),
            "{:?}",
            reply.notes
        );
    }
    let now = Timestamp::now();
    let status = client
        .send_message(as_user(later("past", now - SignedDuration::from_secs(60))))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "SEND_AT_IN_PAST");
    let status = client
        .send_message(as_user(later(
            "far",
            now + SignedDuration::from_hours(24 * 366),
        )))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "SEND_AT_TOO_FAR");
    let status = client
        .send_message(as_user(local("2030-01-01T09:00", "Mars/Olympus")))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "UNKNOWN_TIME_ZONE");
    let mut both = later("both", now + SignedDuration::from_secs(60));
    both.send_at_local = local("2030-01-01T09:00", "Europe/Berlin").send_at_local;
    assert_eq!(
        reason(client.send_message(as_user(both)).await.unwrap_err()),
        "TWO_SEND_TIMES"
    );
    stack.shutdown().await;
}

async fn status_of(client: &mut MessagingServiceClient<Channel>, id: &str) -> MessageStatus {
    let m = client
        .get_message(as_user(sms_proto::v1::GetMessageRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    MessageStatus::try_from(m.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_fire_on_time_and_cancel_or_move_only_before() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let now = Timestamp::now();
    let soon = send_ok(
        &mut client,
        later("soon", now + SignedDuration::from_secs(2)),
    )
    .await;
    let canceled = send_ok(
        &mut client,
        later("never", now + SignedDuration::from_secs(60)),
    )
    .await;
    let moved = send_ok(
        &mut client,
        later("moved", now + SignedDuration::from_secs(600)),
    )
    .await;
    assert_eq!(
        status_of(&mut client, &soon.id).await,
        MessageStatus::Scheduled
    );

    let reply = client
        .cancel_message(as_user(CancelMessageRequest {
            id: canceled.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        MessageStatus::try_from(reply.message.unwrap().status).unwrap(),
        MessageStatus::Canceled
    );
    client
        .reschedule_message(as_user(RescheduleMessageRequest {
            id: moved.id.clone(),
            send_at: Some(at(Timestamp::now() + SignedDuration::from_secs(1))),
            ..Default::default()
        }))
        .await
        .unwrap();

    stack.wait_final(&mut client, &soon.id).await;
    // Without `sending`: the dispatcher's report of the carrier's answer races the carrier's
    // `sent` callback. A `sent` callback that came before the dispatcher reported the sid waits
    // on the bus and is recorded after `delivered`, as a stale fact at its own time: the
    // history converges (as in pipeline.rs).
    let lifecycle = [
        MessageStatus::Scheduled,
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Delivered,
    ];
    let history = |m: &sms_proto::v1::Message| -> Vec<MessageStatus> {
        m.history
            .iter()
            .map(|h| MessageStatus::try_from(h.status).unwrap())
            .filter(|s| *s != MessageStatus::Sending)
            .collect()
    };
    let m = eventually(Duration::from_secs(10), "the whole history", || {
        let stack = &stack;
        let id = soon.id.clone();
        async move {
            let m = stack.message(&id).await;
            (history(&m) == lifecycle).then_some(m)
        }
    })
    .await;
    let fired_at = m.history[1].at.unwrap().seconds;
    assert!(
        fired_at >= soon.send_at.unwrap().seconds,
        "not before its time"
    );
    let m = stack.wait_final(&mut client, &moved.id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );

    // Too late to cancel or move now.
    let status = client
        .cancel_message(as_user(CancelMessageRequest {
            id: soon.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(status)),
        (tonic::Code::FailedPrecondition, "NOT_SCHEDULED".into())
    );
    let status = client
        .reschedule_message(as_user(RescheduleMessageRequest {
            id: soon.id.clone(),
            send_at: Some(at(Timestamp::now() + SignedDuration::from_secs(60))),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "NOT_SCHEDULED");
    // The canceled one never reached the carrier, even after its time would have come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = stack.sim.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.iter().filter(|b| *b == "never").count(), 0);
    assert_eq!(
        status_of(&mut client, &canceled.id).await,
        MessageStatus::Canceled
    );
    stack.shutdown().await;
}

/// Counts every publish on `msg.due` per message (a core subscription sees repeats that
/// JetStream would de-duplicate, so a double firing cannot hide).
struct DueCounter {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<HashMap<String, (usize, bool)>>,
}

impl DueCounter {
    async fn start(stack: &Stack) -> DueCounter {
        let client = stack.bus.client().clone();
        let mut sub = client
            .subscribe(stack.bus.subjects().msg_due_all())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, (usize, bool)> = HashMap::new();
            loop {
                let msg = tokio::select! {
                    // After the stop, take what is still in flight for a moment, then finish.
                    () = until.cancelled() => {
                        match tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
                            Ok(Some(m)) => m,
                            _ => return seen,
                        }
                    }
                    m = sub.next() => match m { Some(m) => m, None => return seen },
                };
                let due = MessageDue::decode(msg.payload).unwrap();
                let entry = seen.entry(due.meta.unwrap().message_id).or_default();
                entry.0 += 1;
                entry.1 |= due.late;
            }
        });
        DueCounter { stop, task }
    }

    async fn finish(self) -> HashMap<String, (usize, bool)> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_fire_a_thousand_messages_due_in_the_same_second_once_each() {
    let stack = Stack::start_with(Options {
        schedulers: 2,
        ..Options::default()
    })
    .await;
    stack.add_number(FROM).await;
    let due = DueCounter::start(&stack).await;
    let client = stack.messaging().await;
    let when = Timestamp::now() + SignedDuration::from_secs(12);
    let mut tasks = Vec::new();
    for chunk in 0..20 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let req = later(&format!("same-second-{chunk}-{i}"), when);
                ids.push(send_ok(&mut client, req).await.id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert!(
        Timestamp::now() < when,
        "all 1,000 were scheduled before they fell due"
    );
    stack.wait_delivered(ids.len()).await;
    let seen = due.finish().await;
    assert_eq!(seen.len(), 1000, "every message fired");
    assert!(
        seen.values().all(|(n, _)| *n == 1),
        "no message fired twice"
    );
    let requests = stack.sim.requests();
    assert_eq!(
        requests.len(),
        1000,
        "every message reached the carrier once"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_due_while_the_scheduler_was_down_fire_late_once_when_it_returns() {
    let mut stack = Stack::start().await;
    stack.add_number(FROM).await;
    stack.kill_scheduler(0).await;
    let due = DueCounter::start(&stack).await;
    let mut client = stack.messaging().await;
    let when = Timestamp::now() + SignedDuration::from_secs(1);
    let mut ids = Vec::new();
    for i in 0..200 {
        let req = later(&format!("while-down-{i}"), when);
        ids.push(send_ok(&mut client, req).await.id);
    }
    // Well past due (and past the 5 s "late" threshold) with no scheduler running.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        status_of(&mut client, &ids[0]).await,
        MessageStatus::Scheduled
    );
    assert!(stack.sim.requests().is_empty());
    stack.start_scheduler();
    stack.wait_delivered(ids.len()).await;
    let seen = due.finish().await;
    assert_eq!(seen.len(), 200);
    assert!(
        seen.values().all(|(n, late)| *n == 1 && *late),
        "each fired once, marked late"
    );
    assert_eq!(stack.sim.requests().len(), 200);
    let m = stack.wait_final(&mut client, &ids[0]).await;
    let queued = m
        .history
        .iter()
        .find(|h| h.status == MessageStatus::Queued as i32)
        .unwrap();
    assert!(queued.detail.contains("late"), "{:?}", queued.detail);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_released_before_its_scheduled_message_fires_fails_it_without_sending() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let m = send_ok(
        &mut client,
        later(
            "after release",
            Timestamp::now() + SignedDuration::from_secs(2),
        ),
    )
    .await;
    let mut numbers = stack.numbers().await;
    numbers
        .release_number(as_user(sms_proto::v1::ReleaseNumberRequest {
            number: FROM.into(),
        }))
        .await
        .unwrap();
    let m = stack.wait_final(&mut client, &m.id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Failed
    );
    assert_eq!(m.reason, "sender_unavailable");
    assert!(stack.sim.requests().is_empty(), "the carrier never saw it");
    stack.shutdown().await;
}
