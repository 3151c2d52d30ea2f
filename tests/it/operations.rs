//! What an operator sees: `/healthz`, `/readyz` and the Prometheus metrics at `/metrics`,
//! moved by real traffic through every service.

use std::time::Duration;

use sms_carrier_sim::Incoming;
use sms_proto::v1::MessageStatus;
use sms_testkit::{ACCOUNT_SID, Stack, as_user, eventually, send_ok, sms};

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
        let id = send_ok(&mut client, sms(FROM, to, "hello")).await.id;
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

    // The dispatcher's consumer of the sender's partition.
    let dispatching = sms_bus::ConsumerKind::DispatcherAccepted(sms_bus::dispatch_partition(
        sms_testkit::ORG,
        FROM,
    ))
    .durable_name();
    // Counters only ever grow: compare with the page read before the traffic.
    // The STOP is answered with the one-time confirmation: a third message to the carrier.
    let after = eventually(
        Duration::from_secs(10),
        "the opt-out and its confirmation to be counted",
        || async {
            let (_, text) = get(&format!("{base}/metrics")).await;
            let grew = |name: &str, labels: &[(&str, &str)]| {
                sample(&text, name, labels) - sample(&before, name, labels)
            };
            // Each counter moves a little after the fact that lets the next step happen.
            (grew("sms_optout_changes_total", &[("change", "opted_out")]) >= 1.0
                && grew("sms_message_statuses_total", &[("status", "delivered")]) >= 2.0
                && grew("sms_carrier_requests_total", &[("outcome", "accepted")]) >= 3.0
                && grew(
                    "sms_bus_events_total",
                    &[("consumer", dispatching.as_str()), ("outcome", "ok")],
                ) >= 3.0)
                .then_some(text)
        },
    )
    .await;
    let conversation = stack.conversation(FROM, QUITTER).await;
    let confirmation = conversation
        .iter()
        .find(|m| m.from == FROM)
        .expect("the confirmation is on the conversation");
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let status = |s: MessageStatus| {
        let name = sms_bus::status_from_proto(s).unwrap().as_str();
        delta("sms_message_statuses_total", &[("status", name)])
    };
    // SendMessage: two accepted, one refused (the confirmation is not a SendMessage call).
    let accepted = [("kind", "sms"), ("when", "now")];
    assert_eq!(delta("sms_messages_accepted_total", &accepted), 2.0);
    let too_long = [("reason", "BODY_TOO_LONG")];
    assert_eq!(delta("sms_sends_refused_total", &too_long), 1.0);
    // The carrier took three: hello, the landline (which fails later), the confirmation.
    let taken = [("outcome", "accepted")];
    assert_eq!(delta("sms_carrier_requests_total", &taken), 3.0);
    assert_eq!(delta("sms_carrier_request_seconds_count", &[]), 3.0);
    assert_eq!(status(MessageStatus::Delivered), 2.0);
    assert_eq!(status(MessageStatus::Failed), 1.0);
    assert_eq!(
        delta("sms_segments_billed_total", &[("encoding", "GSM-7")]),
        (1 + confirmation.segments) as f64,
        "the delivered messages are billed, the landline is not"
    );
    let forged = [("kind", "incoming"), ("outcome", "bad_signature")];
    assert_eq!(delta("sms_webhooks_total", &forged), 1.0);
    let stored = [("kind", "status"), ("outcome", "stored")];
    assert_eq!(
        delta("sms_webhooks_total", &stored),
        5.0,
        "sent and delivered twice, and the landline's failure"
    );
    let stop = [("change", "opted_out"), ("source", "keyword")];
    assert_eq!(delta("sms_optout_changes_total", &stop), 1.0);
    let handled = [("consumer", dispatching.as_str()), ("outcome", "ok")];
    assert_eq!(delta("sms_bus_events_total", &handled), 3.0);
    assert!(after.contains("# TYPE sms_carrier_request_seconds histogram"));
    assert!(after.contains("# HELP sms_messages_accepted_total"));
    stack.shutdown().await;
}
