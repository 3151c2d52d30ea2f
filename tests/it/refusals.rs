//! Refusals that named the wrong thing or nothing (issue 23, item 7): each bad input gets the
//! reason that is about it, with its code and metadata.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message as _;
use sms_proto::events::v1::{ScheduleCommand, ScheduleCommandReply, schedule_command};
use sms_proto::v1::{
    CreateWebhookEndpointRequest, GetMediaRequest, LocalDateTime, NewAttachment, PreviewRequest,
    SendMessageRequest, preview_request,
};
use sms_testkit::{ORG, Stack, as_user, send_ok, sms};
use tonic::Code;
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn refusal(status: tonic::Status) -> (Code, String, HashMap<String, String>) {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (status.code(), info.reason, info.metadata)
}

fn at(seconds: i64, nanos: i32) -> SendMessageRequest {
    SendMessageRequest {
        send_at: Some(prost_types::Timestamp { seconds, nanos }),
        ..sms(OURS, CONTACT, "later")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_times_are_refused_for_what_is_wrong_with_them() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let in_an_hour = chrono::Utc::now().timestamp() + 3600;
    let local = |date_time: &str| SendMessageRequest {
        send_at_local: Some(LocalDateTime {
            date_time: date_time.into(),
            time_zone: "America/New_York".into(),
        }),
        ..sms(OURS, CONTACT, "later")
    };
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1)).format("%Y-%m-%d");
    let cases = [
        // The year 9999, inside and past what the calendar holds: too far ahead.
        (
            at(253_370_764_800, 0),
            Code::InvalidArgument,
            "SEND_AT_TOO_FAR",
        ),
        (
            at(253_402_300_799, 0),
            Code::InvalidArgument,
            "SEND_AT_TOO_FAR",
        ),
        // Not a timestamp at all.
        (
            at(in_an_hour, 1_000_000_000),
            Code::InvalidArgument,
            "INVALID_SEND_AT",
        ),
        (at(in_an_hour, -1), Code::InvalidArgument, "INVALID_SEND_AT"),
        // Long ago.
        (
            at(-62_135_596_800, 0),
            Code::InvalidArgument,
            "SEND_AT_IN_PAST",
        ),
        // A leap second is no local time.
        (
            local(&format!("{tomorrow}T09:00:60")),
            Code::InvalidArgument,
            "INVALID_LOCAL_TIME",
        ),
    ];
    for (request, code, reason) in cases {
        let shown = format!("{:?} {:?}", request.send_at, request.send_at_local);
        let status = client.send_message(as_user(request)).await.unwrap_err();
        let (got_code, got_reason, _) = refusal(status);
        assert_eq!((got_code, got_reason.as_str()), (code, reason), "{shown}");
    }
    // The edges that are fine.
    send_ok(&mut client, at(in_an_hour, 999_999_999)).await;
    send_ok(&mut client, local(&format!("{tomorrow}T09:00:59"))).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_preview_says_how_long_it_is() {
    let stack = Stack::start().await;
    let mut templates = stack.templates().await;
    for length in [1001, 4001, 6543, 10_000] {
        let status = templates
            .preview(as_user(PreviewRequest {
                source: Some(preview_request::Source::Body("a".repeat(length))),
                context: None,
            }))
            .await;
        let length_said = match status {
            Ok(r) => r.into_inner().length as usize,
            Err(status) => {
                let (code, reason, metadata) = refusal(status.clone());
                assert_eq!(
                    (code, reason.as_str()),
                    (Code::InvalidArgument, "BODY_TOO_LONG")
                );
                assert!(
                    status.message().contains(&format!("{length}")),
                    "{length}: {status:?}"
                );
                metadata
                    .get("length")
                    .map(|l| l.parse().unwrap())
                    .unwrap_or(length)
            }
        };
        assert_eq!(length_said, length);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_attachment_an_oversized_request_and_a_padded_url() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    // An attachment id that is no attachment's.
    let status = client
        .get_media(as_user(GetMediaRequest {
            id: uuid::Uuid::new_v4().to_string(),
        }))
        .await
        .unwrap_err();
    let (code, reason, _) = refusal(status);
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "ATTACHMENT_NOT_FOUND")
    );

    // Over the gRPC size limit: Messaging's 16 MiB, the other services' 4 MiB. The server
    // answers as soon as the message's length prefix says too much; a tonic client, still
    // sending, reports its own reset instead, so the answer is read with a bare HTTP/2 client.
    for (method, limit) in [
        ("sms.v1.MessagingService/SendMessage", 16 * 1024 * 1024),
        ("sms.v1.NumbersService/AddNumber", 4 * 1024 * 1024),
    ] {
        let status = oversized(&stack.grpc_url, method, limit + 1).await;
        let (code, reason, metadata) = refusal(status);
        assert_eq!(
            (code, reason.as_str()),
            (Code::ResourceExhausted, "REQUEST_TOO_LARGE"),
            "{method}"
        );
        assert_eq!(metadata["limit"], limit.to_string());
        assert_eq!(metadata["size"], (limit + 1).to_string());
    }

    // A webhook URL with white space around it is not taken as the URL inside.
    let mut webhooks = stack.webhooks().await;
    for url in [" https://crm.example/hooks", "https://crm.example/hooks "] {
        let status = webhooks
            .create_webhook_endpoint(as_user(CreateWebhookEndpointRequest {
                url: url.into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        let (code, reason, metadata) = refusal(status);
        assert_eq!(
            (code, reason.as_str()),
            (Code::InvalidArgument, "INVALID_WEBHOOK_URL"),
            "{url:?}"
        );
        assert!(metadata["why"].contains("white space"), "{metadata:?}");
    }
    stack.shutdown().await;
}

/// What the gRPC server at `grpc_url` answers a call of `method` whose message says it has
/// `length` bytes (only the 5-byte prefix is sent).
async fn oversized(grpc_url: &str, method: &str, length: u32) -> tonic::Status {
    let authority = grpc_url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{authority}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-organization-id", ORG)
        .header("x-user-id", sms_testkit::USER)
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let mut prefix = vec![0u8];
    prefix.extend(length.to_be_bytes());
    body.send_data(prefix.into(), false).unwrap();
    let response = response.await.unwrap();
    let mut headers = response.headers().clone();
    // A status in the trailers when the server did not answer trailers-only.
    let mut rest = response.into_body();
    while rest.data().await.is_some() {}
    if let Ok(Some(trailers)) = rest.trailers().await {
        headers.extend(trailers);
    }
    tonic::Status::from_header_map(&headers).expect("a gRPC status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_to_a_send_lists_its_attachments() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let mut png = PNG.to_vec();
    png.resize(2048, 7);
    let sent = client
        .send_message(as_user(SendMessageRequest {
            attachments: vec![NewAttachment {
                file_name: "chart.png".into(),
                content_type: "image/png".into(),
                data: png,
                url: String::new(),
            }],
            ..sms(OURS, CONTACT, "the chart")
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(sent.attachments.len(), 1, "{sent:?}");
    let a = &sent.attachments[0];
    assert_eq!(
        (a.file_name.as_str(), a.content_type.as_str(), a.size),
        ("chart.png", "image/png", 2048)
    );
    // The same as GetMessage says, and the id serves the file.
    let got = client
        .get_media(as_user(GetMediaRequest { id: a.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data.len(), 2048);
    stack.shutdown().await;
}

/// A cancel or reschedule for a schedule the scheduler never had is not "done": nothing was
/// changed, and the state says `unknown`. One for a schedule still on its way (accepted a
/// moment ago) is kept for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_does_not_claim_to_cancel_what_it_never_had() {
    let stack = Stack::start().await;
    let client = stack.bus.client().clone();
    let subject = stack.bus.subjects().scheduler_command();
    let ask = |action, accepted_at: Option<i64>| {
        let command = ScheduleCommand {
            meta: Some(sms_bus::meta(
                sms_bus::new_event_id(),
                ORG,
                &uuid::Uuid::now_v7().to_string(),
            )),
            action: Some(action),
            accepted_at: accepted_at.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        };
        let (client, subject) = (client.clone(), subject.clone());
        async move {
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject, command.encode_to_vec().into()),
            )
            .await
            .unwrap()
            .unwrap();
            ScheduleCommandReply::decode(reply.payload).unwrap()
        }
    };
    let now = chrono::Utc::now().timestamp();
    let later = prost_types::Timestamp {
        seconds: now + 3600,
        nanos: 0,
    };
    for action in [
        schedule_command::Action::Cancel(true),
        schedule_command::Action::RescheduleTo(later),
    ] {
        // No word of when it was accepted, or long ago: never had, never will.
        for accepted in [None, Some(now - 3600)] {
            let reply = ask(action, accepted).await;
            assert!(!reply.done, "{action:?} {accepted:?}: {reply:?}");
            assert_eq!(reply.state, "unknown");
        }
        // Accepted a moment ago: its schedule may still be on its way.
        let reply = ask(action, Some(now)).await;
        assert!(reply.done, "{action:?}: {reply:?}");
    }
    stack.shutdown().await;
}
