//! Carrier-grade sending: the validity period.

use std::time::Duration;

use sms_proto::v1::MessageStatus;
use sms_testkit::{Options, Stack, as_user, send_ok, sms};
use tonic_types::StatusExt;

const FROM: &str = "+12015550100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validity_out_of_range_is_refused_and_the_rest_reaches_the_carrier() {
    let stack = Stack::start().await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    for bad in [0, 36_001, u32::MAX] {
        let mut request = sms(FROM, "+12015550123", "hi");
        request.validity_seconds = Some(bad);
        let status = client.send_message(as_user(request)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "VALIDITY_OUT_OF_RANGE");
        assert_eq!(info.metadata["field"], "validity_seconds");
        assert!(status.message().contains(&bad.to_string()));
    }
    // What is left of it goes to the carrier as ValidityPeriod; unset, Twilio's longest.
    let mut request = sms(FROM, "+12015550124", "ten minutes");
    request.validity_seconds = Some(600);
    let short = send_ok(&mut client, request).await.id;
    let long = send_ok(&mut client, sms(FROM, "+12015550125", "whenever"))
        .await
        .id;
    for id in [&short, &long] {
        stack.wait_final(&mut client, id).await;
    }
    let periods: Vec<(String, Option<u32>)> = stack
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.to, r.validity_period))
        .collect();
    let of = |to: &str| periods.iter().find(|(t, _)| t == to).unwrap().1.unwrap();
    assert!((595..=600).contains(&of("+12015550124")), "{periods:?}");
    assert!(
        (35_995..=36_000).contains(&of("+12015550125")),
        "{periods:?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_our_queue_holds_past_its_validity_fails_as_expired() {
    const TO: &str = "+12015550126";
    let mut options = Options::default();
    // The carrier throttles this recipient for good: every call is 429, and the dispatcher
    // backs off and tries again, holding the message in our queue.
    options.sim.behaviour.throttled.insert(TO.into(), 1000);
    let stack = Stack::start_with(options).await;
    stack.add_number(FROM).await;
    let mut client = stack.messaging().await;
    let mut request = sms(FROM, TO, "only worth sending within 2 seconds");
    request.validity_seconds = Some(2);
    let id = send_ok(&mut client, request).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Failed,
        "{m:?}"
    );
    assert_eq!(m.reason, "expired");
    let taken = stack
        .sim
        .requests()
        .iter()
        .filter(|r| r.to == TO && r.http_status == 201)
        .count();
    assert_eq!(taken, 0, "never handed to the carrier");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stack.shutdown().await;
}
