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
