//! Carrier-grade sending: the validity period, and each sender held to its rate.

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

/// A body of `segments` GSM-7 segments, starting with `tag`.
fn body_of(tag: &str, segments: usize) -> String {
    let length = match segments {
        1 => 100,
        2 => 250,
        _ => 400,
    };
    let mut body = format!("{tag} ");
    while body.len() < length {
        body.push('x');
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_senders_at_five_segments_a_second_never_go_faster_across_two_dispatchers() {
    const SENDERS: usize = 20;
    const MESSAGES: usize = 2000;
    const RATE: f64 = 5.0;
    const BURST: u32 = 5;
    let mut stack = Stack::start_with(Options {
        dispatchers: 2,
        carrier_rates: true,
        ..Options::default()
    })
    .await;
    let senders: Vec<String> = (0..SENDERS)
        .map(|k| format!("+1201555{:04}", 300 + k))
        .collect();
    let mut numbers = stack.numbers().await;
    for number in &senders {
        numbers
            .add_number(as_user(sms_proto::v1::AddNumberRequest {
                number: number.clone(),
                kind: sms_proto::v1::NumberKind::Internal as i32,
                owner: Some(sms_proto::v1::add_number_request::Owner::OwnerUserId(
                    sms_testkit::USER.into(),
                )),
                send_rate: Some(RATE),
                send_burst: Some(BURST),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    stack.wait_partitions_shared().await;
    // 2,000 messages of 1 to 3 segments, as fast as the API takes them.
    let client = stack.messaging().await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut segments_of: std::collections::HashMap<String, u32> = Default::default();
    for i in 0..MESSAGES {
        let segments = 1 + i % 3;
        let body = body_of(&format!("rate-{i}"), segments);
        segments_of.insert(body.clone(), segments as u32);
        let from = senders[i % SENDERS].clone();
        let mut client = client.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let m = send_ok(&mut client, sms(&from, &format!("+1201556{:04}", i), &body)).await;
            assert_eq!(m.segments as usize, segments);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stack.wait_delivered(MESSAGES).await;
    let took = started.elapsed().as_secs_f64();

    // What the carrier saw, per sender: when each request came and how many segments.
    let mut by_sender: std::collections::HashMap<String, Vec<(u64, u32)>> = Default::default();
    let requests = stack.sim.requests();
    assert_eq!(
        requests.iter().filter(|r| r.http_status == 201).count(),
        MESSAGES,
        "each message reached the carrier once"
    );
    for r in &requests {
        by_sender
            .entry(r.from.clone())
            .or_default()
            .push((r.received_at_ms, segments_of[&r.body]));
    }
    // No one-second window holds more than the burst plus a second's rate. Arrival times at
    // the carrier jitter around the dispatcher's send times on a loaded machine: the window
    // may stretch by 0.2 s of the rate.
    let allowed = f64::from(BURST) + RATE * 1.2;
    let mut worst = 0.0f64;
    for (sender, mut sent) in by_sender {
        sent.sort_unstable();
        for (i, (start, _)) in sent.iter().enumerate() {
            let in_window: u32 = sent[i..]
                .iter()
                .take_while(|(t, _)| *t < start + 1000)
                .map(|(_, s)| s)
                .sum();
            worst = worst.max(f64::from(in_window));
            assert!(
                f64::from(in_window) <= allowed,
                "{sender}: {in_window} segments in the second from {start} (allowed {allowed})"
            );
        }
    }
    // It cannot go faster than the rates allow: each sender has about 200 segments to send at
    // 5 a second, after a burst of 5.
    let per_sender = (MESSAGES / SENDERS) as f64 * 2.0;
    let least = (per_sender - f64::from(BURST)) / RATE;
    println!(
        "rate test: {MESSAGES} messages in {took:.1} s; the rates allow {least:.1} s at the least; \
         busiest second of a sender: {worst} segments (limit {BURST} + {RATE}/s)"
    );
    assert!(
        took >= least * 0.95,
        "{took:.1} s, faster than the rates allow ({least:.1} s)"
    );
    assert!(
        took < least * 3.0,
        "{took:.1} s, far slower than the rates allow ({least:.1} s)"
    );
    let a = stack.stop_dispatcher(1).await;
    let b = stack.stop_dispatcher(0).await;
    assert!(a > 0 && b > 0, "both replicas sent: {a} and {b}");
    stack.shutdown().await;
}
