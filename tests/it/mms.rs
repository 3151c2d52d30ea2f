//! MMS: attachment limits at their boundaries, delivery through the carrier, inbound media.

use std::time::Duration;

use sms_carrier_sim::Incoming;
use sms_core::mms::{MAX_IMAGE_TOTAL_BYTES, MAX_MIXED_TOTAL_BYTES};
use sms_proto::v1::{
    GetMediaRequest, GetUsageRequest, MessageStatus, NewAttachment, SendMessageRequest,
};
use sms_testkit::{ACCOUNT_SID, Options, Stack, as_user, eventually, send_ok};
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
const PDF: &[u8] = b"%PDF-1.7\n";

fn file(head: &[u8], size: usize, fill: u8) -> Vec<u8> {
    let mut v = head.to_vec();
    v.resize(size, fill);
    v
}

fn attach(content_type: &str, data: Vec<u8>) -> NewAttachment {
    NewAttachment {
        file_name: String::new(),
        content_type: content_type.into(),
        data,
        url: String::new(),
    }
}

fn mms(from: &str, to: &str, attachments: Vec<NewAttachment>) -> SendMessageRequest {
    SendMessageRequest {
        to: to.into(),
        from: from.into(),
        body: "see attached".into(),
        attachments,
        ..Default::default()
    }
}

/// Ten images totalling `total` bytes.
fn ten_images(total: usize) -> Vec<NewAttachment> {
    let each = total / 10;
    (0..10)
        .map(|i| {
            let size = if i == 0 { total - each * 9 } else { each };
            attach("image/png", file(PNG, size, i as u8))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_limits_at_their_boundaries() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    stack.add_number("+447400123456").await;
    let mut client = stack.messaging().await;
    let reason = |status: tonic::Status| {
        status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    };

    // Ten images of exactly 5 MiB in total: accepted and delivered, the carrier fetched them all.
    let m = send_ok(
        &mut client,
        mms(OURS, CONTACT, ten_images(MAX_IMAGE_TOTAL_BYTES as usize)),
    )
    .await;
    let m = stack.wait_final(&mut client, &m.id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered,
        "{}",
        m.reason
    );
    let fetched: u64 = stack.sim.requests()[0].media_sizes.iter().sum();
    assert_eq!(fetched, MAX_IMAGE_TOTAL_BYTES);
    assert_eq!(stack.sim.requests()[0].media_urls.len(), 10);
    // One byte more: refused.
    let status = client
        .send_message(as_user(mms(
            OURS,
            CONTACT,
            ten_images(MAX_IMAGE_TOTAL_BYTES as usize + 1),
        )))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "IMAGES_TOO_LARGE");

    // A PDF with an image: 600 KiB in total accepted, one KiB more refused.
    let pdf_and_image = |total: usize| {
        let image = file(JPEG, 20 * 1024, 1);
        let pdf = file(PDF, total - image.len(), 2);
        vec![attach("image/jpeg", image), attach("application/pdf", pdf)]
    };
    client
        .send_message(as_user(mms(
            OURS,
            CONTACT,
            pdf_and_image(MAX_MIXED_TOTAL_BYTES as usize),
        )))
        .await
        .unwrap();
    let status = client
        .send_message(as_user(mms(
            OURS,
            CONTACT,
            pdf_and_image(MAX_MIXED_TOTAL_BYTES as usize + 1024),
        )))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "ATTACHMENTS_TOO_LARGE");

    // Eleven attachments; a PNG declared as JPEG; MMS between UK numbers.
    let eleven = (0..11)
        .map(|i| attach("image/png", file(PNG, 100, i)))
        .collect();
    assert_eq!(
        reason(
            client
                .send_message(as_user(mms(OURS, CONTACT, eleven)))
                .await
                .unwrap_err()
        ),
        "TOO_MANY_ATTACHMENTS"
    );
    let liar = vec![attach("image/jpeg", file(PNG, 1000, 0))];
    assert_eq!(
        reason(
            client
                .send_message(as_user(mms(OURS, CONTACT, liar)))
                .await
                .unwrap_err()
        ),
        "MEDIA_TYPE_MISMATCH"
    );
    let uk = vec![attach("image/png", file(PNG, 1000, 0))];
    let status = client
        .send_message(as_user(mms("+447400123456", "+447400123457", uk)))
        .await
        .unwrap_err();
    assert_eq!(reason(status), "SENDER_NOT_MMS_CAPABLE");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mms_to_a_uk_number_is_refused_even_from_an_mms_capable_sender() {
    let stack = Stack::start().await;
    // A UK number marked MMS-capable by hand: the country rule still applies.
    let mut numbers = stack.numbers().await;
    numbers
        .add_number(as_user(sms_proto::v1::AddNumberRequest {
            number: "+447400123456".into(),
            owner: Some(sms_proto::v1::add_number_request::Owner::OwnerUserId(
                sms_testkit::USER.into(),
            )),
            mms_capable: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut client = stack.messaging().await;
    let status = client
        .send_message(as_user(mms(
            "+447400123456",
            "+447400123457",
            vec![attach("image/png", file(PNG, 1000, 0))],
        )))
        .await
        .unwrap_err();
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "MMS_COUNTRY_NOT_SUPPORTED"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mms_usage_is_counted_apart_from_sms() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let a = send_ok(
        &mut client,
        mms(OURS, CONTACT, vec![attach("image/png", file(PNG, 5000, 3))]),
    )
    .await;
    let b = send_ok(
        &mut client,
        SendMessageRequest {
            to: CONTACT.into(),
            from: OURS.into(),
            body: "plain text".into(),
            ..Default::default()
        },
    )
    .await;
    stack.wait_final(&mut client, &a.id).await;
    stack.wait_final(&mut client, &b.id).await;
    let rows = client
        .get_usage(as_user(GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .rows;
    let kinds: Vec<(String, u64)> = rows.into_iter().map(|r| (r.kind, r.messages)).collect();
    assert_eq!(kinds, [("mms".to_owned(), 1), ("sms".to_owned(), 1)]);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_mms_stores_both_images_byte_for_byte() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let first = file(PNG, 40_000, 7);
    let second = file(JPEG, 70_000, 9);
    let media = vec![
        (
            stack
                .sim
                .host_media(&stack.sim_url, ACCOUNT_SID, "image/png", first.clone()),
            "image/png".to_owned(),
        ),
        (
            stack
                .sim
                .host_media(&stack.sim_url, ACCOUNT_SID, "image/jpeg", second.clone()),
            "image/jpeg".to_owned(),
        ),
    ];
    let (code, _) = stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &Incoming {
                from: CONTACT.into(),
                to: OURS.into(),
                body: "photos from the site visit".into(),
                media,
                sid: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let mut client = stack.messaging().await;
    let m = eventually(
        Duration::from_secs(15),
        "the MMS on the conversation",
        || async {
            let messages = stack.conversation(OURS, CONTACT).await;
            messages.into_iter().find(|m| m.attachments.len() == 2)
        },
    )
    .await;
    assert_eq!(m.body, "photos from the site visit");
    for (a, expected) in m.attachments.iter().zip([&first, &second]) {
        assert_eq!(a.state, "stored");
        assert_eq!(
            a.attachment_state,
            sms_proto::v1::AttachmentState::Stored as i32
        );
        let got = client
            .get_media(as_user(GetMediaRequest { id: a.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got.data, expected, "byte for byte");
        assert_eq!(got.attachment.unwrap().size, expected.len() as u64);
    }
    // A download that fails is recorded; the text is kept.
    let (code, _) = stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &Incoming {
                from: CONTACT.into(),
                to: OURS.into(),
                body: "one more".into(),
                media: vec![(
                    format!(
                        "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Media/MEgone",
                        stack.sim_url
                    ),
                    "image/png".into(),
                )],
                sid: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let failed = eventually(
        Duration::from_secs(20),
        "the text with a failed attachment",
        || async {
            let messages = stack.conversation(OURS, CONTACT).await;
            messages
                .into_iter()
                .find(|m| m.body == "one more" && !m.attachments.is_empty())
        },
    )
    .await;
    assert_eq!(failed.attachments[0].state, "failed");
    assert!(
        failed.attachments[0].error.contains("404"),
        "{}",
        failed.attachments[0].error
    );
    let _ = &mut client;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_given_by_url_is_fetched_stored_and_served_only_at_its_signed_url() {
    // The CRM's file server, on loopback: allowed by name for this test only.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let url = format!("http://{host}/brochure.jpg");
    let stack = Stack::start_with(Options {
        fetch_allow_private: vec![host],
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let picture = file(JPEG, 12_345, 5);
    let served = picture.clone();
    let app = axum::Router::new().route(
        "/brochure.jpg",
        axum::routing::get(move || {
            let body = served.clone();
            async move { ([("content-type", "image/jpeg")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut client = stack.messaging().await;
    let m = send_ok(
        &mut client,
        mms(
            OURS,
            CONTACT,
            vec![NewAttachment {
                file_name: "brochure.jpg".into(),
                content_type: "image/jpeg".into(),
                data: Vec::new(),
                url,
            }],
        ),
    )
    .await;
    let m = stack.wait_final(&mut client, &m.id).await;
    assert_eq!(
        MessageStatus::try_from(m.status).unwrap(),
        MessageStatus::Delivered
    );
    let request = &stack.sim.requests()[0];
    assert_eq!(
        request.media_sizes,
        [picture.len() as u64],
        "the carrier fetched it"
    );
    // The URL the carrier got works; altered, it does not.
    let media_url = request.media_urls[0].clone();
    let http = reqwest::Client::new();
    let ok = http.get(&media_url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().to_vec(), picture);
    let tampered = media_url.replace("signature=", "signature=0");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let later = media_url.replace("expires=", "expires=9");
    assert_eq!(http.get(&later).send().await.unwrap().status(), 403);
    stack.shutdown().await;
}

/// In development the simulator's address is exempt from the fetch policy (it hosts inbound
/// media), but its control endpoints take an account's credentials: an attachment URL
/// pointing at `/_sim/requests` (every organization's messages) is refused, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_control_endpoints_are_no_attachment() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    // Something for the simulator to have recorded.
    send_ok(
        &mut client,
        SendMessageRequest {
            to: CONTACT.into(),
            from: OURS.into(),
            body: "a secret for org-a".into(),
            ..Default::default()
        },
    )
    .await;
    for path in ["/_sim/requests", "/_sim/hooks"] {
        let refused = client
            .send_message(as_user(mms(
                OURS,
                CONTACT,
                vec![NewAttachment {
                    file_name: "r.txt".into(),
                    content_type: "text/plain".into(),
                    data: Vec::new(),
                    url: format!("{}{path}", stack.sim_url),
                }],
            )))
            .await
            .unwrap_err();
        let info = refused.get_details_error_info().unwrap();
        assert_eq!(info.reason, "MEDIA_FETCH_FAILED", "{path}: {refused:?}");
        assert!(refused.message().contains("401"), "{path}: {refused:?}");
    }
    // The simulator still answers its own account.
    let listed = reqwest::Client::new()
        .get(format!("{}/_sim/requests", stack.sim_url))
        .basic_auth(ACCOUNT_SID, Some(sms_testkit::AUTH_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert!(listed.text().await.unwrap().contains("a secret for org-a"));
    stack.shutdown().await;
}
