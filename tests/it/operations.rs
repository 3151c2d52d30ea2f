//! What an operator sees: `/healthz`, `/readyz` and the Prometheus metrics at `/metrics`,
//! moved by real traffic through every service.

use std::time::Duration;

use sms_carrier_sim::Incoming;
use sms_proto::v1::MessageStatus;
use sms_testkit::{ACCOUNT_SID, Stack, as_user, eventually, sms};

const FROM: &str = "+12015550100";
const TO: &str = "+12015550123";
const LANDLINE: &str = "+12015550124";
const QUITTER: &str = "+12015550125";

/// The sum of every sample of `name` whose labels include all of `labels` (0 when none).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_follow_the_traffic() {
    let stack = Stack::start().await;
    stack.sim.update(|b| {
        b.landlines.insert(LANDLINE.into());
    });
    stack.add_number(FROM).await;
    let base = &stack.inbound_url;
    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".into()));
    assert_eq!(get(&format!("{base}/readyz")).await, (200, "ready".into()));
    let (code, before) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);

    // One delivered, one failed at the carrier (landline), one refused by the composer.
    let mut client = stack.messaging().await;
    for to in [TO, LANDLINE] {
        let id = client
            .send_message(as_user(sms(FROM, to, "hello")))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
            .id;
        stack.wait_final(&mut client, &id).await;
    }
    let too_long = "x".repeat(1001);
    assert!(
        client
            .send_message(as_user(sms(FROM, TO, &too_long)))
            .await
            .is_err()
    );
    // A forged webhook, and a STOP.
    let (code, _) = reqwest::Client::new()
        .post(stack.incoming_url())
        .form(&[("AccountSid", ACCOUNT_SID), ("From", TO), ("To", FROM)])
        .header("X-Twilio-Signature", "forged")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 403);
    let stop = Incoming {
        from: QUITTER.into(),
        to: FROM.into(),
        body: "STOP".into(),
        ..Default::default()
    };
    let (code, _) = stack
        .sim
        .send_incoming(&stack.incoming_url(), ACCOUNT_SID, &stop)
        .await
        .unwrap();
    assert_eq!(code, 200);

    // Counters only ever grow, so compare with the page read before the traffic.
    let delta = |after: &str, name: &str, labels: &[(&str, &str)]| {
        sample(after, name, labels) - sample(&before, name, labels)
    };
    let after = eventually(
        Duration::from_secs(10),
        "the opt-out to be counted",
        || async {
            let (_, text) = get(&format!("{base}/metrics")).await;
            (sample(
                &text,
                "sms_optout_changes_total",
                &[("change", "opted_out")],
            ) > sample(
                &before,
                "sms_optout_changes_total",
                &[("change", "opted_out")],
            ))
            .then_some(text)
        },
    )
    .await;
    let accepted = [("kind", "sms"), ("when", "now")];
    assert_eq!(delta(&after, "sms_messages_accepted_total", &accepted), 2.0);
    assert_eq!(
        delta(
            &after,
            "sms_sends_refused_total",
            &[("reason", "BODY_TOO_LONG")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            "sms_carrier_requests_total",
            &[("outcome", "accepted")]
        ),
        2.0
    );
    assert_eq!(delta(&after, "sms_carrier_request_seconds_count", &[]), 2.0);
    let status = |s: MessageStatus| {
        delta(
            &after,
            "sms_message_statuses_total",
            &[("status", sms_bus::status_from_proto(s).unwrap().as_str())],
        )
    };
    assert_eq!(status(MessageStatus::Delivered), 1.0);
    assert_eq!(status(MessageStatus::Failed), 1.0);
    assert_eq!(
        delta(
            &after,
            "sms_segments_billed_total",
            &[("encoding", "GSM-7")]
        ),
        1.0,
        "the delivered message is billed, the landline is not"
    );
    assert_eq!(
        delta(
            &after,
            "sms_webhooks_total",
            &[("kind", "incoming"), ("outcome", "bad_signature")]
        ),
        1.0
    );
    assert!(
        delta(
            &after,
            "sms_webhooks_total",
            &[("kind", "status"), ("outcome", "stored")]
        ) >= 3.0,
        "sent and delivered, and the landline's failure"
    );
    assert_eq!(
        delta(
            &after,
            "sms_optout_changes_total",
            &[("change", "opted_out"), ("source", "keyword")]
        ),
        1.0
    );
    assert!(
        delta(
            &after,
            "sms_bus_events_total",
            &[("consumer", "dispatcher-accepted"), ("outcome", "ok")]
        ) >= 2.0
    );
    assert!(after.contains("# TYPE sms_carrier_request_seconds histogram"));
    assert!(after.contains("# HELP sms_messages_accepted_total"));
    stack.shutdown().await;
}
