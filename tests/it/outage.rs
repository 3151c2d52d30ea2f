//! The inbound receiver through a bus outage: a carrier's webhook that arrives while NATS is
//! down is held (the receiver keeps trying to store its event for its patience) and answered
//! 200 once the event is stored, so the carrier does not give up on it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sms_bus::{Bus, BusConfig};
use sms_proto::events::v1::NumberChanged;
use sms_testkit::cluster::NatsCluster;
use sms_testkit::{ACCOUNT_SID, AUTH_TOKEN, ORG, post_form, twilio_signature};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_during_a_bus_outage_is_stored_once_the_bus_is_back() {
    // A NATS of this test's own, to stop and start.
    let mut nats = NatsCluster::start(1).await;
    let namespace = sms_testkit::fresh_namespace();
    let bus = Bus::connect(BusConfig::new(nats.urls(), &namespace))
        .await
        .unwrap();
    bus.publish_durably(&NumberChanged {
        meta: Some(sms_bus::meta(sms_bus::new_event_id(), ORG, "")),
        number: "+12015550100".into(),
        active: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut common =
        sms_testkit::common_config(&namespace, "postgres://unused", 1, Duration::from_secs(3));
    common.nats_url = nats.urls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = sms_inbound::Config {
        common,
        public_url: base.clone(),
        twilio_accounts: HashMap::from([(ACCOUNT_SID.to_owned(), AUTH_TOKEN.to_owned())]),
        patience: Duration::from_secs(12),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sms_inbound::run(config, listener, shutdown.clone()));
    let url = format!("{base}/webhooks/twilio/incoming");
    let params = [
        ("MessageSid", "SM0000000000000000000000000000abcd"),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+12015550123"),
        ("To", "+12015550100"),
        ("Body", "are you there?"),
        ("NumMedia", "0"),
    ];
    let signature = twilio_signature(AUTH_TOKEN, &url, &params);
    // Ready: it answers (an unsigned request is refused at once).
    sms_testkit::eventually(Duration::from_secs(10), "the receiver", || async {
        tokio::time::timeout(Duration::from_secs(1), post_form(&url, &params, None))
            .await
            .ok()
            .filter(|(code, _)| *code == 403)
    })
    .await;

    // NATS goes down; it comes back 3 s later, while the webhook is held.
    nats.nodes[0].kill();
    let started = Instant::now();
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        nats.nodes[0].start();
        nats
    });
    let (code, _) = post_form(&url, &params, Some(&signature)).await;
    let waited = started.elapsed();
    let _nats = back.await.unwrap();
    assert_eq!(code, 200, "taken once the bus was back");
    assert!(
        waited >= Duration::from_secs(3),
        "held while NATS was down ({waited:?})"
    );

    // The event is in the stream, once.
    let stream = bus
        .jetstream()
        .get_stream(bus.subjects().events_stream())
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: bus.subjects().inbound_received(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut count = 0;
    while let Some(Ok(m)) = messages.next().await {
        m.ack().await.unwrap();
        count += 1;
    }
    assert_eq!(count, 1);
    shutdown.cancel();
}

/// What the test's proxy in front of the carrier does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// Nothing listens: connections are refused.
    Refusing,
    /// Connections are accepted and closed before any answer (a reset carrier, a dropped
    /// link): the request may have left, so the call's outcome is unknown.
    Dropping,
    /// Connections reach the carrier.
    Reachable,
}

/// Issue 23, item 5: a carrier that cannot be reached (connections refused, then accepted and
/// dropped before an answer) makes a message wait within its validity, as throttling does,
/// never fail it; once the carrier is back the message is delivered, and sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_out_of_reach_makes_messages_wait_not_fail() {
    use sms_proto::v1::MessageStatus;
    use sms_testkit::{Options, Stack, send_ok, sms};
    let port = sms_testkit::cluster::free_port();
    let stack = Stack::start_with(Options {
        carrier_url: Some(format!("http://127.0.0.1:{port}")),
        carrier_timeout: Duration::from_secs(2),
        in_doubt_after: Duration::from_secs(6),
        ..Options::default()
    })
    .await;
    stack.add_number("+12015550100").await;
    let sim_addr = stack.sim_url.trim_start_matches("http://").to_owned();
    let mode = std::sync::Arc::new(std::sync::Mutex::new(Carrier::Refusing));
    let proxy_mode = mode.clone();
    // The proxy binds once the carrier stops refusing.
    let proxy = tokio::spawn(async move {
        loop {
            if *proxy_mode.lock().unwrap() != Carrier::Refusing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            if *proxy_mode.lock().unwrap() == Carrier::Dropping {
                drop(inbound);
                continue;
            }
            let sim_addr = sim_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&sim_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let mut client = stack.messaging().await;
    let m = send_ok(
        &mut client,
        sms("+12015550100", "+12015550123", "are you there?"),
    )
    .await;
    let status = |m: &sms_proto::v1::Message| MessageStatus::try_from(m.status).unwrap();
    // Refused for 12 s: more calls than SMS_SEND_ATTEMPTS (4) fit in that, none final.
    let watch = |client: &mut sms_proto::v1::messaging_service_client::MessagingServiceClient<
        tonic::transport::Channel,
    >,
                 until: Instant| {
        let id = m.id.clone();
        let mut client = client.clone();
        async move {
            while Instant::now() < until {
                let got = client
                    .get_message(sms_testkit::as_user(sms_proto::v1::GetMessageRequest {
                        id: id.clone(),
                    }))
                    .await
                    .unwrap()
                    .into_inner()
                    .message
                    .unwrap();
                assert!(
                    !matches!(
                        MessageStatus::try_from(got.status).unwrap(),
                        MessageStatus::Failed | MessageStatus::Delivered
                    ),
                    "while the carrier is out of reach: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    watch(&mut client, Instant::now() + Duration::from_secs(12)).await;
    // Accepted and dropped for 12 s more: calls without an outcome, resolved by asking the
    // carrier (unreachable too), none final.
    *mode.lock().unwrap() = Carrier::Dropping;
    watch(&mut client, Instant::now() + Duration::from_secs(12)).await;
    assert!(
        stack.sim.requests().is_empty(),
        "nothing reached the carrier"
    );
    *mode.lock().unwrap() = Carrier::Reachable;
    // Its next try comes after its back-off (at most 30 s between calls, or a lookup's).
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let got = client
            .get_message(sms_testkit::as_user(sms_proto::v1::GetMessageRequest {
                id: m.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        let final_ = matches!(
            status(&got),
            MessageStatus::Delivered | MessageStatus::Failed | MessageStatus::Undelivered
        );
        if final_ || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status(&done), MessageStatus::Delivered, "{done:?}");
    let sent: Vec<_> = stack
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.body == "are you there?")
        .collect();
    assert_eq!(sent.len(), 1, "sent once: {sent:?}");
    proxy.abort();
    stack.shutdown().await;
}
