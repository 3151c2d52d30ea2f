//! One message through all five services, failures, bad input, and the trace.

use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use sms_proto::events::v1::{MessageAccepted, StatusChanged};
use sms_proto::v1::{MessageStatus, SendMessageRequest};
use sms_testkit::{Stack, as_user, send_ok, sms};
use tonic::Code;
use tonic_types::StatusExt;

const FROM: &str = "+12015550100";
const TO: &str = "+12015550123";

/// A message's history, without `sending`: the dispatcher reports it when the carrier answers,
/// and the carrier's `sent` callback may be applied before it (then `sending` is stale).
fn statuses(m: &sms_proto::v1::Message) -> Vec<MessageStatus> {
    m.history
        .iter()
        .map(|h| MessageStatus::try_from(h.status).unwrap())
        .filter(|s| *s != MessageStatus::Sending)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_with_its_lifecycle_and_segments() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let body = "Hi Ana — it’s Sam from Acme. Are you free tomorrow?";
    let sent = client
        .send_message(as_user(sms(FROM, TO, body)))
        .await
        .unwrap()
        .into_inner();
    let id = sent.message.unwrap().id;

    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );
    // A `sent` callback that came before the dispatcher reported the sid waits on the bus and
    // is recorded after `delivered`, as a stale fact at its own time: the history converges.
    let lifecycle = [
        MessageStatus::Accepted,
        MessageStatus::Queued,
        MessageStatus::Sent,
        MessageStatus::Delivered,
    ];
    let m = sms_testkit::eventually(Duration::from_secs(10), "the whole history", || {
        let id = id.clone();
        let stack = &stack;
        async move {
            let m = stack.message(&id).await;
            (statuses(&m) == lifecycle).then_some(m)
        }
    })
    .await;
    let expected = sms_core::count(body);
    assert_eq!(m.encoding, "UCS-2");
    assert_eq!(m.encoding_type, sms_proto::v1::Encoding::Ucs2 as i32);
    assert_eq!(m.segments as usize, expected.segments);
    assert_eq!(m.characters as usize, expected.units);
    assert!(m.carrier_sid.starts_with("SM"), "{}", m.carrier_sid);

    let requests = stack.sim.requests();
    assert_eq!(requests.len(), 1, "the carrier got exactly one request");
    let r = &requests[0];
    assert_eq!(
        (r.from.as_str(), r.to.as_str(), r.body.as_str()),
        (FROM, TO, body)
    );
    assert_eq!(r.sid.as_deref(), Some(m.carrier_sid.as_str()));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landline_and_spam_fail_with_their_reasons_and_are_not_retried() {
    let landline = "+12015550124";
    let spam = "+12015550125";
    let stack = Stack::start().await;
    stack.sim.update(|b| {
        b.landlines.insert(landline.into());
        b.spam.insert(spam.into());
    });
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let a = client
        .send_message(as_user(sms(FROM, landline, "hello")))
        .await
        .unwrap();
    let b = client
        .send_message(as_user(sms(FROM, spam, "WIN A PRIZE")))
        .await
        .unwrap();

    let a = stack
        .wait_final(&mut client, &a.into_inner().message.unwrap().id)
        .await;
    assert_eq!(
        MessageStatus::try_from(a.status).unwrap(),
        MessageStatus::Failed
    );
    assert_eq!(a.reason, "not_sms_capable");
    assert_eq!(
        a.failure_reason,
        sms_proto::v1::FailureReason::NotSmsCapable as i32
    );
    assert_eq!(a.carrier_error_code, 30006);
    let b = stack
        .wait_final(&mut client, &b.into_inner().message.unwrap().id)
        .await;
    // Twilio reports a filtered message as undelivered with 30007.
    assert_eq!(
        MessageStatus::try_from(b.status).unwrap(),
        MessageStatus::Undelivered
    );
    assert_eq!(b.reason, "filtered_as_spam");
    assert_eq!(b.carrier_error_code, 30007);

    // Give a wrongful retry the time to happen, then check it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to: Vec<String> = stack.sim.requests().into_iter().map(|r| r.to).collect();
    assert_eq!(to.iter().filter(|t| *t == landline).count(), 1);
    assert_eq!(to.iter().filter(|t| *t == spam).count(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_carrier_error_is_retried_until_it_succeeds() {
    let stack = Stack::start().await;
    stack.sim.update(|b| {
        b.transient_failures.insert(TO.into(), 1);
    });
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(FROM, TO, "retry me")).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );
    let codes: Vec<u16> = stack.sim.requests().iter().map(|r| r.http_status).collect();
    assert_eq!(
        codes,
        [503, 201],
        "one failed call, one successful call, nothing more"
    );
    stack.shutdown().await;
}

async fn refused(stack: &Stack, req: SendMessageRequest) -> (Code, String) {
    let mut client = stack.messaging().await;
    let status = client.send_message(as_user(req)).await.unwrap_err();
    let reason = status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    (status.code(), reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_with_reasons_and_publish_nothing() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let cases = [
        (
            sms(FROM, "not a number", "hi"),
            Code::InvalidArgument,
            "INVALID_RECIPIENT",
        ),
        (
            sms(FROM, "+1201555", "hi"),
            Code::InvalidArgument,
            "INVALID_RECIPIENT",
        ),
        (sms(FROM, TO, ""), Code::InvalidArgument, "BODY_EMPTY"),
        (sms(FROM, TO, "   "), Code::InvalidArgument, "BODY_EMPTY"),
        (
            sms(FROM, TO, &"a".repeat(1001)),
            Code::InvalidArgument,
            "BODY_TOO_LONG",
        ),
        (
            sms(FROM, "+447400123456", "hi"),
            Code::InvalidArgument,
            "INTERNATIONAL_NOT_ALLOWED",
        ),
        (
            sms(FROM, "+819012345678", "hi"),
            Code::InvalidArgument,
            "UNSUPPORTED_COUNTRY",
        ),
        (
            SendMessageRequest {
                from: "+12015550999".into(),
                ..sms(FROM, TO, "hi")
            },
            Code::FailedPrecondition,
            "UNKNOWN_SENDER",
        ),
    ];
    for (req, code, reason) in cases {
        assert_eq!(
            refused(&stack, req).await,
            (code, reason.to_owned()),
            "{reason}"
        );
    }
    // A body of exactly 1000 characters is fine, and is the only thing on the bus.
    let mut client = stack.messaging().await;
    client
        .send_message(as_user(sms(FROM, TO, &"a".repeat(1000))))
        .await
        .unwrap();
    let mut stream = stack
        .bus
        .jetstream()
        .get_stream(stack.bus.subjects().events_stream())
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    let accepted = stack
        .bus
        .jetstream()
        .get_stream(stack.bus.subjects().events_stream())
        .await
        .unwrap()
        .get_last_raw_message_by_subject(
            &stack
                .bus
                .subjects()
                .msg_accepted(sms_bus::dispatch_partition(sms_testkit::ORG, FROM)),
        )
        .await
        .unwrap();
    assert_eq!(
        accepted.sequence, 1,
        "the valid message is the first event published"
    );
    assert!(info.state.messages >= 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_started_at_the_grpc_call_follows_every_event_and_the_carrier_call() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut events = stack
        .bus
        .client()
        .subscribe(format!("{}.>", stack.namespace))
        .await
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = as_user(sms(FROM, TO, "trace me"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let mut client = stack.messaging().await;
    let id = client
        .send_message(request)
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );

    // accepted, queued and sending (the dispatcher: it took the message on, then the carrier's
    // sid), sent and delivered (carrier callbacks; the carrier's own `queued` callback is
    // acknowledged and not repeated on the bus).
    let mut seen = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 5 && std::time::Instant::now() < deadline {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await
        else {
            continue;
        };
        let message_id = if msg.subject.contains(".msg.accepted.") {
            MessageAccepted::decode(msg.payload.clone())
                .unwrap()
                .meta
                .unwrap()
                .message_id
        } else if msg.subject.contains(".status.") {
            StatusChanged::decode(msg.payload.clone())
                .unwrap()
                .meta
                .unwrap()
                .message_id
        } else {
            continue;
        };
        // A core subscription sees every publish, also a copy JetStream drops as a repeat
        // (the dispatcher's early `queued`, then its outbox's): one per event id.
        let event_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        if message_id == id && seen_ids.insert(event_id) {
            let tp = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            seen.push((msg.subject.to_string(), tp));
        }
    }
    let mut subjects: Vec<&str> = seen
        .iter()
        .map(|(s, _)| {
            // `msg.accepted.<partition>`, `status.<status>`.
            s.rsplit_once(".msg.")
                .map(|(_, rest)| rest.split('.').next().unwrap_or(rest))
                .or(s.rsplit_once(".status.").map(|(_, rest)| rest))
                .unwrap()
        })
        .collect();
    // The dispatcher's `sending` and the carrier's `sent` race; the rest is in order.
    subjects[2..4].sort_unstable();
    assert_eq!(
        subjects,
        ["accepted", "queued", "sending", "sent", "delivered"],
        "events of the message: {seen:?}"
    );
    for (subject, traceparent) in &seen {
        assert!(
            traceparent.contains(trace_id),
            "{subject} carried {traceparent:?}, not trace {trace_id}"
        );
    }
    let carrier = stack.sim.requests();
    let tp = carrier[0].traceparent.clone().unwrap_or_default();
    assert!(tp.contains(trace_id), "the carrier call carried {tp:?}");
    stack.shutdown().await;
}
