//! Calls without an outcome, and statuses that stop moving, resolved by asking the carrier:
//! found → bound to the carrier's message, never sent again; provably absent → sent once;
//! the carrier unreachable or unreadable → asked again, nothing guessed. And retries that run
//! out end in `failed` with the last reason.

use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use sms_proto::events::v1::{MessageAccepted, OutboundMessage, StatusChanged};
use sms_proto::v1::{Message, MessageStatus};
use sms_testkit::{Options, Stack, eventually, send_ok, sms};

const FROM: &str = "+12015550100";

/// A stack whose dispatcher gives up on a carrier call after 500 ms and takes a call without
/// an outcome to be in doubt 3 s after it began.
async fn stack(change: impl FnOnce(&mut Options)) -> Stack {
    let mut options = Options {
        carrier_timeout: Duration::from_millis(500),
        in_doubt_after: Duration::from_secs(3),
        ..Options::default()
    };
    change(&mut options);
    let stack = Stack::start_with(options).await;
    stack.add_number(FROM).await;
    stack
}

fn status(m: &Message) -> MessageStatus {
    MessageStatus::try_from(m.status).unwrap()
}

/// What the carrier took for `to`: the sids of its accepted requests.
fn taken(stack: &Stack, to: &str) -> Vec<String> {
    stack
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.to == to && r.http_status == 201)
        .filter_map(|r| r.sid)
        .collect()
}

/// The dispatcher's calls through its carrier, so far.
fn calls(stack: &Stack) -> u64 {
    stack.dispatchers[0]
        .carrier
        .calls
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// A stack whose dispatcher resolves sends in doubt by `resolution`, and whose first carrier
/// call is lost on the way, as when the dispatcher dies mid-call.
async fn first_call_lost(resolution: sms_testkit::Resolution) -> Stack {
    let stack = stack(|o| o.carrier_resolution = resolution).await;
    stack.dispatchers[0]
        .carrier
        .lose
        .store(1, std::sync::atomic::Ordering::Relaxed);
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_carrier_took_without_answering_is_found_and_never_sent_again() {
    const TO: &str = "+12015550123";
    let stack = stack(|o| {
        let b = &mut o.sim.behaviour;
        b.taken_unanswered.insert(TO.into());
        b.hang = Duration::from_secs(2);
        // Only resolution can tell the composer anything: no callbacks.
        b.callbacks = false;
    })
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "did you get this?"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    let sids = taken(&stack, TO);
    assert_eq!(sids.len(), 1, "the carrier got it once: {sids:?}");
    assert_eq!(m.carrier_sid, sids[0], "bound to the carrier's message");
    assert!(stack.sim.lookups() >= 1, "the carrier was asked");
    // Well past another lease: still one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(taken(&stack, TO).len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_before_the_carrier_is_sent_once_it_is_found_absent() {
    const TO: &str = "+12015550124";
    let stack = first_call_lost(sms_testkit::Resolution::ListByPair).await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "second time lucky"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    let sids = taken(&stack, TO);
    assert_eq!(
        sids.len(),
        1,
        "sent once, after the carrier said it had none"
    );
    assert_eq!(m.carrier_sid, sids[0]);
    assert_eq!(
        calls(&stack),
        2,
        "the lost call and the one that reached the carrier"
    );
    stack.shutdown().await;
}

/// A carrier that can be asked about a message only under the id it gave (SMPP's `query_sm`):
/// a call whose answer never came is resent when the connection's policy is at least once,
/// without asking the carrier anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_doubt_without_an_id_is_sent_again_when_the_policy_is_at_least_once() {
    const TO: &str = "+12015550131";
    let stack = first_call_lost(sms_testkit::Resolution::ById {
        unanswered: sms_testkit::Unanswered::Resend,
    })
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "at least once"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    assert_eq!(taken(&stack, TO).len(), 1);
    assert_eq!(calls(&stack), 2, "the lost call and the resend");
    assert_eq!(stack.sim.lookups(), 0, "nothing to look up without an id");
    stack.shutdown().await;
}

/// The same call, on a connection whose policy is at most once: the message fails as
/// `unknown_carrier_error` and is never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_doubt_without_an_id_fails_when_the_policy_is_at_most_once() {
    const TO: &str = "+12015550132";
    let stack = first_call_lost(sms_testkit::Resolution::ById {
        unanswered: sms_testkit::Unanswered::Fail,
    })
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "at most once")).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Failed, "{m:?}");
    assert_eq!(m.reason, "unknown_carrier_error");
    assert!(taken(&stack, TO).is_empty());
    // Well past another lease: never called again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(calls(&stack), 1, "only the lost call");
    assert_eq!(stack.sim.lookups(), 0);
    stack.shutdown().await;
}

/// A send whose last call provably sent nothing is sent again whatever the policy; once that
/// resend may have reached the carrier (its answer never came), it is in doubt like any other
/// call: at most once, it fails and is never sent a third time. (The long chaos run found the
/// resend's doubt taken for the first call's certainty: messages sent twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_of_a_call_that_sent_nothing_is_in_doubt_like_any_other_call() {
    const TO: &str = "+12015550133";
    let stack = stack(|o| {
        o.carrier_resolution = sms_testkit::Resolution::ById {
            unanswered: sms_testkit::Unanswered::Fail,
        };
        let b = &mut o.sim.behaviour;
        b.taken_unanswered.insert(TO.into());
        b.hang = Duration::from_secs(2);
    })
    .await;
    stack.dispatchers[0]
        .carrier
        .lose
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "sent nothing, then once"))
        .await
        .id;
    // The first call is lost before it leaves: it sent nothing, as a call refused before the
    // carrier had it whose retry was then lost (the state that path leaves).
    eventually(Duration::from_secs(5), "the lost call", || async {
        (calls(&stack) >= 1).then_some(())
    })
    .await;
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let marked = sqlx::query(
        "UPDATE dispatcher.sends SET unsent = true WHERE message_id = $1::uuid AND state = 'sending'",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(marked, 1, "the lost call's send is in doubt");
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Failed, "{m:?}");
    assert_eq!(m.reason, "unknown_carrier_error");
    // Well past two more leases: the resend reached the carrier, and nothing after it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(taken(&stack, TO).len(), 1, "the carrier got it once");
    assert_eq!(calls(&stack), 2, "the lost call and the one resend");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_that_cannot_be_asked_is_asked_again_and_nothing_is_guessed() {
    const TO: &str = "+12015550125";
    let stack = stack(|o| {
        let b = &mut o.sim.behaviour;
        b.taken_unanswered.insert(TO.into());
        b.hang = Duration::from_secs(2);
        b.callbacks = false;
        b.lookups_unavailable = true;
    })
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "hello?")).await.id;
    // Unreachable: asked again and again; the message is neither failed nor sent again.
    eventually(Duration::from_secs(20), "asked three times", || async {
        (stack.sim.lookups() >= 3).then_some(())
    })
    .await;
    let m = stack.message(&id).await;
    assert_eq!(status(&m), MessageStatus::Queued, "{m:?}");
    // An answer that is not the carrier's JSON is not "absent" either.
    let before = stack.sim.lookups();
    stack.sim.update(|b| {
        b.lookups_unavailable = false;
        b.lookups_garbled = true;
    });
    eventually(Duration::from_secs(20), "asked twice more", || async {
        (stack.sim.lookups() >= before + 2).then_some(())
    })
    .await;
    assert_eq!(status(&stack.message(&id).await), MessageStatus::Queued);
    assert_eq!(taken(&stack, TO).len(), 1, "never sent again while unknown");
    // The carrier answers again: found, bound, delivered.
    stack.sim.update(|b| b.lookups_garbled = false);
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    let sids = taken(&stack, TO);
    assert_eq!(sids.len(), 1);
    assert_eq!(m.carrier_sid, sids[0]);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_whose_callbacks_were_lost_are_fetched_from_the_carrier() {
    const DELIVERED: &str = "+12015550126";
    const LANDLINE: &str = "+12015550127";
    let stack = stack(|o| {
        o.sim.behaviour.callbacks = false;
        o.sim.behaviour.landlines.insert(LANDLINE.into());
        o.status_check = sms_composer::check::CheckConfig {
            after: Duration::from_secs(1),
            max_checks: 5,
        };
    })
    .await;
    let mut client = stack.messaging().await;
    let ok = send_ok(&mut client, sms(FROM, DELIVERED, "no callback"))
        .await
        .id;
    let landline = send_ok(&mut client, sms(FROM, LANDLINE, "no callback either"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &ok).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    assert_eq!(m.carrier_sid, taken(&stack, DELIVERED)[0]);
    let m = stack.wait_final(&mut client, &landline).await;
    assert_eq!(status(&m), MessageStatus::Failed, "{m:?}");
    assert_eq!(m.reason, "not_sms_capable");
    assert_eq!(m.carrier_error_code, 30006);
    // Final now: not asked about again (a question already on its way is let through first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lookups = stack.sim.lookups();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.sim.lookups(), lookups);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_that_run_out_end_in_failed_with_the_last_reason() {
    const TO: &str = "+12015550128";
    let stack = stack(|o| {
        // Server errors (HTTP 500) are tried a number of times; the carrier saying it is down
        // (503) would make the message wait instead (outage::a_carrier_out_of_reach…).
        o.sim.behaviour.server_errors.insert(TO.into(), 1000);
    })
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "anyone home?")).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Failed, "{m:?}");
    assert_eq!(m.reason, "carrier_unavailable");
    let last = m.history.last().unwrap();
    assert!(last.detail.contains("500"), "{last:?}");
    let calls = stack
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.to == TO)
        .count();
    assert_eq!(calls, 4, "SMS_SEND_ATTEMPTS calls, no more");
    stack.shutdown().await;
}

/// A message as the composer hands it to the dispatcher, valid until `valid_until`.
fn accepted(to: &str, body: &str, valid_until: std::time::SystemTime) -> MessageAccepted {
    let id = uuid::Uuid::now_v7().to_string();
    MessageAccepted {
        meta: Some(sms_bus::meta(
            sms_bus::new_event_id(),
            sms_testkit::ORG,
            &id,
        )),
        message: Some(OutboundMessage {
            message_id: id,
            organization_id: sms_testkit::ORG.into(),
            user_id: sms_testkit::USER.into(),
            from: FROM.into(),
            to: to.into(),
            body: body.into(),
            encoding: "gsm7".into(),
            segments: 1,
            valid_until: Some(prost_types::Timestamp::from(valid_until)),
            ..Default::default()
        }),
    }
}

/// The dispatcher's `failed` statuses, as they reach the bus.
async fn failures(stack: &Stack) -> async_nats::Subscriber {
    stack
        .bus
        .client()
        .subscribe(stack.bus.subjects().status(sms_core::Status::Failed))
        .await
        .unwrap()
}

async fn next_failure(failed: &mut async_nats::Subscriber) -> StatusChanged {
    let m = tokio::time::timeout(Duration::from_secs(30), failed.next())
        .await
        .expect("a failed status")
        .unwrap();
    StatusChanged::decode(m.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_its_validity_never_reaches_the_carrier() {
    const TO: &str = "+12015550129";
    let stack = stack(|_| {}).await;
    let mut failed = failures(&stack).await;
    let stale = std::time::SystemTime::now() - Duration::from_secs(1);
    stack
        .bus
        .publish_durably(&accepted(TO, "too late", stale))
        .await
        .unwrap();
    let e = next_failure(&mut failed).await;
    assert_eq!(e.reason, "expired", "{e:?}");
    assert!(e.detail.contains("validity"), "{e:?}");
    assert!(taken(&stack, TO).is_empty(), "never handed to the carrier");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_that_cannot_be_asked_until_the_validity_ends_fails_it_as_expired() {
    const TO: &str = "+12015550130";
    let stack = stack(|o| {
        let b = &mut o.sim.behaviour;
        b.taken_unanswered.insert(TO.into());
        b.hang = Duration::from_secs(2);
        b.callbacks = false;
        b.lookups_unavailable = true;
    })
    .await;
    let mut failed = failures(&stack).await;
    let valid_until = std::time::SystemTime::now() + Duration::from_secs(6);
    stack
        .bus
        .publish_durably(&accepted(TO, "in doubt until too late", valid_until))
        .await
        .unwrap();
    let e = next_failure(&mut failed).await;
    assert!(
        std::time::SystemTime::now() >= valid_until,
        "asked again until the validity ended, not given up before"
    );
    assert_eq!(e.reason, "expired", "{e:?}");
    assert!(e.detail.contains("could not learn"), "{e:?}");
    assert!(stack.sim.lookups() >= 2, "asked more than once");
    assert_eq!(taken(&stack, TO).len(), 1, "never sent again while unknown");
    stack.shutdown().await;
}
