//! Webhooks (Standard Webhooks): an endpoint that fails three times then answers gets the event
//! with a signature an independent implementation accepts, the same `webhook-id` every time,
//! and the attempts recorded; a replay delivers it again; a rotated secret and the old one both
//! sign for a day; a hanging endpoint holds up no other; bad endpoints are refused with reasons.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use sms_carrier_sim::Incoming;
use sms_proto::v1::webhooks_service_client::WebhooksServiceClient;
use sms_proto::v1::{
    CreateWebhookEndpointRequest, ListWebhookAttemptsRequest, ReplayWebhookEventsRequest,
    RotateWebhookSecretRequest, SetWebhookEndpointEnabledRequest,
};
use sms_testkit::{ACCOUNT_SID, ORG, Options, Stack, USER, as_caller};
use tonic::transport::Channel;
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";

/// What an endpoint got: headers and body of each POST.
type Got = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiving endpoint on loopback: answers 500 to its first `fail` POSTs, then 200 (or
/// never, when `hang`).
async fn receiver(fail: usize, hang: bool) -> (String, Got) {
    let got: Got = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut all = seen.lock().unwrap();
                    all.push((headers, body.to_vec()));
                    all.len()
                };
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if n <= fail {
                    (StatusCode::INTERNAL_SERVER_ERROR, "not now")
                } else {
                    (StatusCode::OK, "thanks")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("{addr}"), got)
}

async fn create(
    client: &mut WebhooksServiceClient<Channel>,
    org: &str,
    url: &str,
    types: &[&str],
) -> Result<(String, String), tonic::Status> {
    client
        .create_webhook_endpoint(as_caller(
            CreateWebhookEndpointRequest {
                url: url.into(),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                description: "the CRM".into(),
            },
            org,
            USER,
        ))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.endpoint.unwrap().id, r.secret)
        })
}

async fn text_us(stack: &Stack, from: &str, body: &str) {
    stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &Incoming {
                from: from.into(),
                to: OURS.into(),
                body: body.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

async fn set_enabled(
    client: &mut WebhooksServiceClient<Channel>,
    id: &str,
    enabled: bool,
) -> sms_proto::v1::WebhookEndpoint {
    client
        .set_webhook_endpoint_enabled(as_caller(
            SetWebhookEndpointEnabledRequest {
                endpoint_id: id.to_owned(),
                enabled,
            },
            ORG,
            USER,
        ))
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).unwrap().to_str().unwrap()
}

async fn wait_posts(got: &Got, n: usize, what: &str) -> Vec<(HeaderMap, Vec<u8>)> {
    sms_testkit::eventually(Duration::from_secs(30), what, || {
        let got = got.clone();
        async move {
            let all = got.lock().unwrap().clone();
            (all.len() >= n).then_some(all)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_that_fails_three_times_then_answers_gets_the_signed_event() {
    let (flaky_host, flaky) = receiver(3, false).await;
    let (hung_host, hung) = receiver(0, true).await;
    let (other_host, other) = receiver(0, false).await;
    let (foreign_host, foreign) = receiver(0, false).await;
    let stack = Stack::start_with(Options {
        fetch_allow_private: vec![
            flaky_host.clone(),
            hung_host.clone(),
            other_host.clone(),
            foreign_host.clone(),
        ],
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let mut client = stack.webhooks().await;
    let mut contacts = stack.contacts().await;
    contacts
        .set_contact(as_caller(
            sms_proto::v1::SetContactRequest {
                contact_number: "+12015550177".into(),
                lead_id: "lead-77".into(),
                contact_id: "contact-77".into(),
            },
            ORG,
            USER,
        ))
        .await
        .unwrap();

    // Bad endpoints, each refused with its reason.
    for (url, types, reason) in [
        ("ftp://example.com/hook", vec![], "INVALID_WEBHOOK_URL"),
        ("http://127.0.0.1:9/hook", vec![], "INVALID_WEBHOOK_URL"),
        ("https://10.1.2.3/hook", vec![], "INVALID_WEBHOOK_URL"),
        ("not a url", vec![], "INVALID_WEBHOOK_URL"),
        (
            "https://example.com/hook",
            vec!["message.sent"],
            "UNKNOWN_EVENT_TYPE",
        ),
    ] {
        let refused = create(&mut client, ORG, url, &types).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{url}");
        assert_eq!(
            refused.get_details_error_info().unwrap().reason,
            reason,
            "{url}: {}",
            refused.message()
        );
    }

    let flaky_url = format!("http://{flaky_host}/hook");
    let (flaky_id, secret) = create(&mut client, ORG, &flaky_url, &["message.inbound"])
        .await
        .unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let duplicate = create(&mut client, ORG, &flaky_url, &[]).await.unwrap_err();
    assert_eq!(duplicate.code(), tonic::Code::AlreadyExists);
    assert_eq!(
        duplicate.get_details_error_info().unwrap().reason,
        "WEBHOOK_ENDPOINT_EXISTS"
    );
    // An endpoint that never answers, and another that answers at once: the first holds up
    // neither the second nor the flaky one.
    let (hung_id, _) = create(&mut client, ORG, &format!("http://{hung_host}/hook"), &[])
        .await
        .unwrap();
    let (_, other_secret) = create(&mut client, ORG, &format!("http://{other_host}/hook"), &[])
        .await
        .unwrap();
    // Another organization's endpoint sees none of ours.
    create(
        &mut client,
        "org-other",
        &format!("http://{foreign_host}/hook"),
        &[],
    )
    .await
    .unwrap();

    text_us(&stack, "+12015550177", "sounds good, call me").await;

    // Three failures, then the delivery: four POSTs of the same event.
    let posts = wait_posts(&flaky, 4, "four attempts at the flaky endpoint").await;
    assert_eq!(posts.len(), 4, "nothing after the delivery");
    let id = header(&posts[0].0, "webhook-id").to_owned();
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for (headers, body) in &posts {
        assert_eq!(
            header(headers, "webhook-id"),
            id,
            "the same id on every attempt"
        );
        verifier
            .verify(body, headers)
            .unwrap_or_else(|e| panic!("signature refused: {e}"));
        assert_eq!(header(headers, "content-type"), "application/json");
    }
    let body: serde_json::Value = serde_json::from_slice(&posts[3].1).unwrap();
    assert_eq!(body["type"], "message.inbound");
    assert_eq!(body["data"]["from"], "+12015550177");
    assert_eq!(body["data"]["to"], OURS);
    assert_eq!(body["data"]["body"], "sounds good, call me");
    assert_eq!(body["data"]["lead_id"], "lead-77");
    assert_eq!(body["data"]["contact_id"], "contact-77");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    // A body changed on the way is refused by the same verifier.
    let mut tampered = posts[3].1.clone();
    tampered[5] ^= 1;
    assert!(verifier.verify(&tampered, &posts[3].0).is_err());

    // The attempts, newest first: 500 three times (each with its next time), then 200.
    let attempts = sms_testkit::eventually(Duration::from_secs(10), "4 attempts recorded", || {
        let mut client = client.clone();
        let flaky_id = flaky_id.clone();
        async move {
            let a = client
                .list_webhook_attempts(as_caller(
                    ListWebhookAttemptsRequest {
                        endpoint_id: flaky_id,
                        ..Default::default()
                    },
                    ORG,
                    USER,
                ))
                .await
                .unwrap()
                .into_inner()
                .attempts;
            (a.len() == 4).then_some(a)
        }
    })
    .await;
    let summary: Vec<(u32, u32, &str, bool)> = attempts
        .iter()
        .rev()
        .map(|a| {
            (
                a.attempt,
                a.http_status,
                a.outcome.as_str(),
                a.next_attempt_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 500, "retrying", true),
            (2, 500, "retrying", true),
            (3, 500, "retrying", true),
            (4, 200, "delivered", false),
        ]
    );
    // The typed outcome says the same as the word.
    let outcomes: Vec<i32> = attempts.iter().rev().map(|a| a.attempt_outcome).collect();
    use sms_proto::v1::WebhookOutcome;
    assert_eq!(
        outcomes,
        [
            WebhookOutcome::Retrying as i32,
            WebhookOutcome::Retrying as i32,
            WebhookOutcome::Retrying as i32,
            WebhookOutcome::Delivered as i32
        ]
    );
    assert!(attempts.iter().all(|a| a.event_id == id));
    assert_eq!(attempts[3].response, "not now");

    // The other endpoint got every event (the inbound message, and the number added before it
    // was registered is not among them) while the hung one was still on its first attempts.
    let others = wait_posts(&other, 1, "the inbound event at the other endpoint").await;
    let other_body: serde_json::Value = serde_json::from_slice(&others[0].1).unwrap();
    assert_eq!(other_body["type"], "message.inbound");
    standardwebhooks::Webhook::new(&other_secret)
        .unwrap()
        .verify(&others[0].1, &others[0].0)
        .unwrap();
    assert!(
        !hung.lock().unwrap().is_empty(),
        "the hung endpoint was tried"
    );
    assert!(foreign.lock().unwrap().is_empty());

    // A replay delivers the event again, same id, from the schedule's start; a new secret and
    // the old one both sign it.
    let new_secret = client
        .rotate_webhook_secret(as_caller(
            RotateWebhookSecretRequest {
                endpoint_id: flaky_id.clone(),
            },
            ORG,
            USER,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    assert_ne!(new_secret, secret);
    let replayed = client
        .replay_webhook_events(as_caller(
            ReplayWebhookEventsRequest {
                endpoint_id: flaky_id.clone(),
                event_id: id.clone(),
                all_failed: false,
            },
            ORG,
            USER,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.scheduled, 1);
    let posts = wait_posts(&flaky, 5, "the replay").await;
    let (headers, body) = &posts[4];
    assert_eq!(header(headers, "webhook-id"), id);
    assert_eq!(header(headers, "webhook-signature").split(' ').count(), 2);
    standardwebhooks::Webhook::new(&new_secret)
        .unwrap()
        .verify(body, headers)
        .unwrap();
    verifier.verify(body, headers).unwrap();

    // Unknown events and endpoints, and a replay naming nothing, are refused.
    let refuse = |request: ReplayWebhookEventsRequest, reason: &'static str| {
        let mut client = client.clone();
        async move {
            let e = client
                .replay_webhook_events(as_caller(request, ORG, USER))
                .await
                .unwrap_err();
            assert_eq!(e.get_details_error_info().unwrap().reason, reason);
        }
    };
    refuse(
        ReplayWebhookEventsRequest {
            endpoint_id: flaky_id.clone(),
            event_id: "no-such-event".into(),
            all_failed: false,
        },
        "EVENT_NOT_FOUND",
    )
    .await;
    refuse(
        ReplayWebhookEventsRequest {
            endpoint_id: flaky_id.clone(),
            ..Default::default()
        },
        "INVALID_REPLAY",
    )
    .await;
    refuse(
        ReplayWebhookEventsRequest {
            endpoint_id: uuid::Uuid::now_v7().to_string(),
            all_failed: true,
            ..Default::default()
        },
        "WEBHOOK_ENDPOINT_NOT_FOUND",
    )
    .await;
    // Another organization cannot see or touch the endpoint.
    let e = client
        .set_webhook_endpoint_enabled(as_caller(
            SetWebhookEndpointEnabledRequest {
                endpoint_id: hung_id.clone(),
                enabled: false,
            },
            "org-other",
            USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // A disabled endpoint gets nothing; enabled again, it gets what happened meanwhile.
    let disabled = set_enabled(&mut client, &flaky_id, false).await;
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason, "disabled by a caller");
    text_us(&stack, "+12015550178", "while you were away").await;
    wait_posts(&other, 2, "the second inbound at the other endpoint").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(flaky.lock().unwrap().len(), 5, "nothing while disabled");
    set_enabled(&mut client, &flaky_id, true).await;
    let posts = wait_posts(&flaky, 6, "the missed event after enabling").await;
    let body: serde_json::Value = serde_json::from_slice(&posts[5].1).unwrap();
    assert_eq!(body["data"]["body"], "while you were away");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_every_attempt_for_long_enough_is_disabled_and_can_come_back() {
    // Every POST refused; disabled once its failures span more than a second (5 days in
    // production), each delivery having failed 7 retries apart of 300 ms.
    let (host, got) = receiver(usize::MAX, false).await;
    let stack = Stack::start_with(Options {
        fetch_allow_private: vec![host.clone()],
        webhook_retries: vec![Duration::from_millis(300); 7],
        webhook_disable_after: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let mut client = stack.webhooks().await;
    let (id, _) = create(&mut client, ORG, &format!("http://{host}/hook"), &[])
        .await
        .unwrap();
    stack.add_number(OURS).await;
    let endpoint =
        sms_testkit::eventually(Duration::from_secs(30), "the endpoint disabled", || {
            let mut client = client.clone();
            async move {
                client
                    .list_webhook_endpoints(as_caller(
                        sms_proto::v1::ListWebhookEndpointsRequest {},
                        ORG,
                        USER,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .endpoints
                    .into_iter()
                    .find(|e| !e.enabled)
            }
        })
        .await;
    assert!(
        endpoint
            .disabled_reason
            .starts_with("every attempt failed since "),
        "{}",
        endpoint.disabled_reason
    );
    assert!(endpoint.failing_since.is_some());
    let tried = got.lock().unwrap().len();
    assert!(tried >= 2, "{tried} attempts");
    // Nothing more is sent to it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(got.lock().unwrap().len(), tried);
    // Enabled again: its failures are forgotten, and its delivery is tried again on replay.
    let back = set_enabled(&mut client, &id, true).await;
    assert!(back.enabled && back.failing_since.is_none() && back.disabled_reason.is_empty());
    stack.shutdown().await;
}
