//! Trust nothing at the edges, through the whole stack: URLs we fetch, what carriers may say
//! about a message, what they send us, what we serve back, and who may act for whom.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, header};
use sms_carrier_sim::Incoming;
use sms_proto::v1::{
    CancelMessageRequest, GetMessageRequest, ListMessagesRequest, MessageStatus, NewAttachment,
    SendMessageRequest,
};
use sms_testkit::{ACCOUNT_SID, ORG, Options, Stack, as_caller, as_user, eventually, send_ok, sms};
use tonic::Code;
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
const PDF: &[u8] = b"%PDF-1.7\n%%EOF\n";

/// Requests a server got: (path, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An HTTP server on loopback that records every request; its `host:port`.
async fn recording_server(routes: axum::Router) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = routes.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let record = record.clone();
            async move {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record
                    .lock()
                    .unwrap()
                    .push((req.uri().path().to_owned(), auth));
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (host, seen)
}

fn by_url(url: &str) -> SendMessageRequest {
    SendMessageRequest {
        attachments: vec![NewAttachment {
            file_name: "x.jpg".into(),
            content_type: "image/jpeg".into(),
            data: Vec::new(),
            url: url.into(),
        }],
        ..sms(OURS, CONTACT, "see attached")
    }
}

fn refusal(status: &tonic::Status) -> (Code, String) {
    (
        status.code(),
        status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_urls_reach_no_loopback_or_private_address_without_the_exemption() {
    let (host, seen) = recording_server(axum::Router::new().route(
        "/x.jpg",
        axum::routing::get(|| async { ([("content-type", "image/jpeg")], JPEG.to_vec()) }),
    ))
    .await;
    // The exempt server redirects to the same server under another name (not exempt).
    let port = host.rsplit(':').next().unwrap().to_owned();
    let (redirector, _) = recording_server(axum::Router::new().route(
        "/r",
        axum::routing::get(move || {
            let to = format!("http://localhost:{port}/x.jpg");
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]) }
        }),
    ))
    .await;
    let stack = Stack::start_with(Options {
        fetch_allow_private: vec![redirector.clone()],
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    for url in [
        format!("http://{host}/x.jpg"),
        format!(
            "http://localhost:{}/x.jpg",
            host.rsplit(':').next().unwrap()
        ),
        format!("http://{redirector}/r"),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://10.0.0.1/x.jpg".into(),
        "https://[::1]/x.jpg".into(),
        "https://[::ffff:127.0.0.1]/x.jpg".into(),
        "ftp://example.com/x.jpg".into(),
    ] {
        let status = client
            .send_message(as_user(by_url(&url)))
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&status),
            (Code::InvalidArgument, "MEDIA_FETCH_FAILED".into()),
            "{url}: {status:?}"
        );
        assert!(
            [
                "loopback",
                "link-local",
                "private",
                "IPv4-mapped",
                "not https"
            ]
            .iter()
            .any(|w| status.message().contains(w)),
            "{url}: {}",
            status.message()
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the loopback server never got a request: {:?}",
        seen.lock().unwrap()
    );
    // Named in the exemption, the same kind of server is fetched (see mms.rs); nothing was sent.
    assert!(stack.sim.requests().is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_media_come_only_from_the_carriers_hosts_and_the_credentials_only_go_there() {
    let (evil, seen) = recording_server(axum::Router::new().route(
        "/steal.png",
        axum::routing::get(|| async { "internal page" }),
    ))
    .await;
    // Even exempt from the address rules, a host that is not the carrier's gets nothing.
    let stack = Stack::start_with(Options {
        fetch_allow_private: vec![evil.clone()],
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let (code, _) = stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &Incoming {
                from: CONTACT.into(),
                to: OURS.into(),
                body: "look at this".into(),
                media: vec![(format!("http://{evil}/steal.png"), "image/png".into())],
                sid: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let m = eventually(Duration::from_secs(15), "the message", || async {
        stack
            .conversation(OURS, CONTACT)
            .await
            .into_iter()
            .find(|m| !m.attachments.is_empty())
    })
    .await;
    assert_eq!(m.body, "look at this", "the text is kept");
    assert_eq!(m.attachments[0].state, "failed");
    assert!(
        m.attachments[0].error.contains("not one of the hosts"),
        "{}",
        m.attachments[0].error
    );
    assert!(seen.lock().unwrap().is_empty(), "never contacted");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_are_served_so_that_no_browser_runs_or_sniffs_them() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let m = send_ok(
        &mut client,
        SendMessageRequest {
            attachments: vec![
                NewAttachment {
                    file_name: "photo.jpg".into(),
                    content_type: "image/jpeg".into(),
                    data: JPEG.to_vec(),
                    url: String::new(),
                },
                NewAttachment {
                    file_name: "terms\".pdf".into(),
                    content_type: "application/pdf".into(),
                    data: PDF.to_vec(),
                    url: String::new(),
                },
            ],
            ..sms(OURS, CONTACT, "two files")
        },
    )
    .await;
    stack.wait_final(&mut client, &m.id).await;
    let urls = stack.sim.requests()[0].media_urls.clone();
    let http = reqwest::Client::new();
    let headers = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let image = http.get(&urls[0]).send().await.unwrap();
    assert_eq!(headers(&image, "x-content-type-options"), "nosniff");
    assert_eq!(
        headers(&image, "content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(headers(&image, "content-type"), "image/jpeg");
    assert!(headers(&image, "content-disposition").starts_with("inline"));
    let pdf = http.get(&urls[1]).send().await.unwrap();
    assert_eq!(
        headers(&pdf, "content-disposition"),
        "attachment; filename=\"terms_.pdf\""
    );
    assert_eq!(headers(&pdf, "x-content-type-options"), "nosniff");

    // HTML, scripts, executables and archives are not MMS.
    for (content_type, data) in [
        (
            "text/html",
            b"<html><script>alert(1)</script></html>".to_vec(),
        ),
        ("application/zip", b"PK\x03\x04\x14\0\0\0\x08\0".to_vec()),
        (
            "application/octet-stream",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
        ("image/svg+xml", b"<svg onload='alert(1)'/>".to_vec()),
    ] {
        let status = client
            .send_message(as_user(SendMessageRequest {
                attachments: vec![NewAttachment {
                    file_name: "f".into(),
                    content_type: content_type.into(),
                    data,
                    url: String::new(),
                }],
                ..sms(OURS, CONTACT, "file")
            }))
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&status),
            (Code::InvalidArgument, "MEDIA_TYPE_NOT_ALLOWED".into()),
            "{content_type}"
        );
    }
    stack.shutdown().await;
}

/// A signed status callback naming a scheduled message, with a sid of its own and `delivered`,
/// used to move it to `delivered` and bill it. It now changes nothing: the message was never
/// handed to the carrier, and a callback applies only to the message whose sid it carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_cannot_move_a_message_it_is_not_about() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let scheduled = send_ok(
        &mut client,
        SendMessageRequest {
            send_at: Some(prost_types::Timestamp {
                seconds: later.as_second(),
                nanos: 0,
            }),
            ..sms(OURS, CONTACT, "tomorrow")
        },
    )
    .await;
    let forged_sid = "SMdeadbeefdeadbeefdeadbeefdeadbeef";
    let callback = |mid: &str, status: &str, sid: &str| {
        (
            format!("/webhooks/twilio/status?org={ORG}&mid={mid}"),
            vec![
                ("MessageSid".to_owned(), sid.to_owned()),
                ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
                ("MessageStatus".to_owned(), status.to_owned()),
                ("From".to_owned(), OURS.to_owned()),
                ("To".to_owned(), CONTACT.to_owned()),
            ],
        )
    };
    let post = |(path, params): (String, Vec<(String, String)>)| {
        let stack = &stack;
        async move {
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            stack.signed_webhook(&path, &pairs).await
        }
    };
    assert_eq!(
        post(callback(&scheduled.id, "delivered", forged_sid))
            .await
            .0,
        200
    );
    // Well past the retries: still scheduled, and it can be canceled.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let m = client
        .get_message(as_user(GetMessageRequest {
            id: scheduled.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Scheduled
    );
    let canceled = client
        .cancel_message(as_user(CancelMessageRequest {
            id: scheduled.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(
        MessageStatus::try_from(canceled.status).unwrap(),
        MessageStatus::Canceled
    );
    // A delivered message is bound to its carrier sid: another sid's `undelivered` is ignored.
    let sent = send_ok(&mut client, sms(OURS, CONTACT, "now")).await;
    let sent = stack.wait_final(&mut client, &sent.id).await;
    assert!(sent.carrier_sid.starts_with("SM"));
    assert_eq!(
        post(callback(&sent.id, "undelivered", forged_sid)).await.0,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = client
        .get_message(as_user(GetMessageRequest {
            id: sent.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );
    assert_eq!(m.carrier_sid, sent.carrier_sid);
    // Nothing billed but the one message the carrier took.
    let usage = client
        .get_usage(as_user(sms_proto::v1::GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(usage.iter().map(|r| r.messages).sum::<u64>(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_text_that_cannot_be_stored_as_sent_is_stored_with_replacements_and_a_note() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    // `%00` in the form: Body is "hello\0world\u{1b}!".
    let sid = "SM00000000000000000000000000000abc";
    let params = [
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", CONTACT),
        ("To", OURS),
        ("Body", "hello\0world\u{1b}!"),
        ("NumMedia", "0"),
    ];
    let (code, _) = stack
        .signed_webhook("/webhooks/twilio/incoming", &params)
        .await;
    assert_eq!(code, 200);
    let m = eventually(Duration::from_secs(15), "the stored message", || async {
        stack.conversation(OURS, CONTACT).await.into_iter().next()
    })
    .await;
    assert_eq!(m.body, "hello\u{fffd}world\u{fffd}!");
    let mut client = stack.messaging().await;
    let m = client
        .get_message(as_user(GetMessageRequest { id: m.id }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert!(
        m.history[0].detail.contains("2 character(s)"),
        "{:?}",
        m.history
    );
    // Delivered again (the carrier retries): stored once.
    stack
        .signed_webhook("/webhooks/twilio/incoming", &params)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.conversation(OURS, CONTACT).await.len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_only_for_the_organizations_it_names() {
    let token = "crm-web-0123456789abcdef";
    let stack = Stack::start_with(Options {
        api_tokens: sms_runtime::auth::Tokens::new([(
            token.to_owned(),
            sms_runtime::auth::Grant {
                system: "crm-web".into(),
                organizations: sms_runtime::auth::Organizations::Only(
                    [ORG.to_owned()].into_iter().collect(),
                ),
            },
        )]),
        ..Options::default()
    })
    .await;
    let mut client = stack.messaging().await;
    let with_token = |org: &str| {
        let mut r = as_caller(ListMessagesRequest::default(), org, "u");
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    assert!(client.list_messages(with_token(ORG)).await.is_ok());
    let status = client.list_messages(with_token("org-b")).await.unwrap_err();
    assert_eq!(
        refusal(&status),
        (Code::PermissionDenied, "ORGANIZATION_NOT_ALLOWED".into())
    );
    let mut registry = stack.opt_outs().await;
    let mut r = as_caller(
        sms_proto::v1::CheckOptOutRequest {
            contact_number: CONTACT.into(),
        },
        "org-b",
        "u",
    );
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = registry.check_opt_out(r).await.unwrap_err();
    assert_eq!(
        refusal(&status),
        (Code::PermissionDenied, "ORGANIZATION_NOT_ALLOWED".into()),
        "the registry too"
    );
    stack.shutdown().await;
}
