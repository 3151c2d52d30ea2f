//! Who may send what, from which number, to whom; templates; usage; filters; tenancy.

use std::collections::HashMap;
use std::time::Duration;

use sms_proto::v1::{
    AddGroupMemberRequest, AddNumberRequest, CreateGroupRequest, CreateTemplateRequest, Direction,
    GetMessageRequest, GetTemplateRequest, GetUsageRequest, ListErroredLeadsRequest,
    ListMessagesRequest, MessageStatus, NumberKind, PreviewRequest, RemoveGroupMemberRequest,
    SendMessageRequest, TemplateContext, UpdateTemplateRequest, add_number_request,
    preview_request,
};
use sms_testkit::{ORG, Options, Stack, USER, as_caller, as_user, send_ok, sms};
use tonic::Code;
use tonic_types::StatusExt;

const US_A: &str = "+12015550100";
const US_CONTACT: &str = "+12015550123";

/// The gRPC code, ErrorInfo reason and metadata of a refusal.
fn refusal(status: tonic::Status) -> (Code, String, HashMap<String, String>) {
    let info = status
        .get_details_error_info()
        .expect("every refusal carries ErrorInfo");
    (status.code(), info.reason, info.metadata)
}

async fn send_as(
    stack: &Stack,
    user: &str,
    req: SendMessageRequest,
) -> Result<String, (Code, String)> {
    let mut client = stack.messaging().await;
    client
        .send_message(as_caller(req, ORG, user))
        .await
        .map(|r| r.into_inner().message.unwrap().id)
        .map_err(|s| {
            let (code, reason, _) = refusal(s);
            (code, reason)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_rules_at_their_boundaries() {
    let stack = Stack::start().await;
    let mut numbers = stack.numbers().await;
    stack.add_number(US_A).await;
    // A Canadian sender may text a US contact: +1 spans both.
    stack.add_number("+15062345678").await;
    assert!(
        send_as(&stack, USER, sms("+15062345678", US_CONTACT, "hi"))
            .await
            .is_ok()
    );
    // A UK sender may not text a US contact.
    stack.add_number("+447400123456").await;
    assert_eq!(
        send_as(&stack, USER, sms("+447400123456", US_CONTACT, "hi")).await,
        Err((Code::InvalidArgument, "INTERNATIONAL_NOT_ALLOWED".into()))
    );
    // A UK landline, rented for voice, cannot send (and says so when added).
    let reply = numbers
        .add_number(as_user(AddNumberRequest {
            number: "+442079460018".into(),
            owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.number.unwrap().sms_capable);
    assert!(
        reply.warnings[0].contains("cannot send or receive SMS"),
        "{:?}",
        reply.warnings
    );
    assert_eq!(
        send_as(&stack, USER, sms("+442079460018", "+447400123457", "hi")).await,
        Err((Code::FailedPrecondition, "SENDER_NOT_SMS_CAPABLE".into()))
    );
    // An external number never sends, even the owner's own.
    numbers
        .add_number(as_user(AddNumberRequest {
            number: "+12015550199".into(),
            kind: NumberKind::External as i32,
            owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        send_as(&stack, USER, sms("+12015550199", US_CONTACT, "hi")).await,
        Err((Code::FailedPrecondition, "EXTERNAL_SENDER".into()))
    );
    // Someone else's number is refused.
    assert_eq!(
        send_as(&stack, "user-2", sms(US_A, US_CONTACT, "hi")).await,
        Err((Code::PermissionDenied, "SENDER_NOT_OWNED".into()))
    );
    // A group number: members may send, others may not, and removal takes effect.
    let group = numbers
        .create_group(as_user(CreateGroupRequest {
            name: "Sales".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    numbers
        .add_number(as_user(AddNumberRequest {
            number: "+12015550177".into(),
            owner: Some(add_number_request::Owner::OwnerGroupId(group.id.clone())),
            ..Default::default()
        }))
        .await
        .unwrap();
    numbers
        .add_group_member(as_user(AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: "user-3".into(),
        }))
        .await
        .unwrap();
    assert!(
        send_as(&stack, "user-3", sms("+12015550177", US_CONTACT, "hi"))
            .await
            .is_ok()
    );
    assert_eq!(
        send_as(&stack, "user-4", sms("+12015550177", US_CONTACT, "hi")).await,
        Err((Code::PermissionDenied, "SENDER_NOT_OWNED".into()))
    );
    numbers
        .remove_group_member(as_user(RemoveGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: "user-3".into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        send_as(&stack, "user-3", sms("+12015550177", US_CONTACT, "hi")).await,
        Err((Code::PermissionDenied, "SENDER_NOT_OWNED".into()))
    );
    // Body length: 1000 characters pass, 1001 do not (and the limit is in the metadata).
    assert!(
        send_as(&stack, USER, sms(US_A, US_CONTACT, &"é".repeat(1000)))
            .await
            .is_ok()
    );
    let mut client = stack.messaging().await;
    let status = client
        .send_message(as_user(sms(US_A, US_CONTACT, &"é".repeat(1001))))
        .await
        .unwrap_err();
    let (code, reason, metadata) = refusal(status);
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "BODY_TOO_LONG")
    );
    assert_eq!(metadata.get("characters").map(String::as_str), Some("1001"));
    assert_eq!(metadata.get("limit").map(String::as_str), Some("1000"));
    // A released number no longer sends.
    numbers
        .release_number(as_user(sms_proto::v1::ReleaseNumberRequest {
            number: US_A.into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        send_as(&stack, USER, sms(US_A, US_CONTACT, "hi")).await,
        Err((Code::FailedPrecondition, "UNKNOWN_SENDER".into()))
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sender_the_number_last_used_with_the_contact_is_picked() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    stack.add_number("+12015550101").await;
    stack.add_number("+447400123456").await;
    let mut client = stack.messaging().await;
    let pick = |to: &str| SendMessageRequest {
        to: to.into(),
        body: "hi".into(),
        ..Default::default()
    };
    // New contact: the oldest number with the right calling code.
    let m = send_ok(&mut client, pick(US_CONTACT)).await;
    assert_eq!(m.from, US_A);
    // After texting the contact from the second number, that one sticks.
    client
        .send_message(as_user(sms("+12015550101", US_CONTACT, "hi")))
        .await
        .unwrap();
    let m = send_ok(&mut client, pick(US_CONTACT)).await;
    assert_eq!(m.from, "+12015550101");
    // A UK contact gets the UK number.
    let m = send_ok(&mut client, pick("+447400123457")).await;
    assert_eq!(m.from, "+447400123456");
    // A user with no number for +61 is told so.
    let status = client
        .send_message(as_user(pick("+61412345678")))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "NO_SENDER_AVAILABLE");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_message_and_sends_once() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    let mut client = stack.messaging().await;
    let req = SendMessageRequest {
        idempotency_key: "crm-retry-42".into(),
        ..sms(US_A, US_CONTACT, "only once")
    };
    let a = send_ok(&mut client, req.clone()).await;
    let b = send_ok(&mut client, req).await;
    assert_eq!(a.id, b.id);
    stack.wait_final(&mut client, &a.id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.sim.requests().len(), 1);
    stack.shutdown().await;
}

/// Concurrent calls are stored many per transaction; a key repeated inside one batch must
/// still give every caller the one message, and conflicts must not cost the others theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_sharing_a_key_get_one_message_and_the_rest_are_all_stored() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    let client = stack.messaging().await;
    let calls = (0..60).map(|i| {
        let mut client = client.clone();
        // Every third call is a retry of one request with one key.
        let req = if i % 3 == 0 {
            SendMessageRequest {
                idempotency_key: "crm-burst".into(),
                ..sms(US_A, US_CONTACT, "burst, retried")
            }
        } else {
            sms(US_A, US_CONTACT, &format!("burst {i}"))
        };
        async move {
            let m = send_ok(&mut client, req).await;
            (i, m.id)
        }
    });
    let results = futures::future::join_all(calls).await;
    let keyed: std::collections::HashSet<&String> = results
        .iter()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(keyed.len(), 1, "one message for the key");
    let all: std::collections::HashSet<&String> = results.iter().map(|(_, id)| id).collect();
    assert_eq!(all.len(), 41, "40 without a key, 1 with it");
    let mut client = client.clone();
    for id in &all {
        stack.wait_final(&mut client, id).await;
    }
    assert_eq!(stack.sim.requests().len(), 41);
    // The key with another request is refused, naming the message it created.
    let status = client
        .send_message(as_user(SendMessageRequest {
            idempotency_key: "crm-burst".into(),
            ..sms(US_A, US_CONTACT, "something else")
        }))
        .await
        .unwrap_err();
    let (code, reason, metadata) = refusal(status);
    assert_eq!(
        (code, reason.as_str()),
        (Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED")
    );
    assert_eq!(
        metadata.get("message_id"),
        keyed.iter().next().copied(),
        "the message the key created"
    );
    assert_eq!(stack.sim.requests().len(), 41, "nothing more was sent");
    stack.shutdown().await;
}

fn context() -> TemplateContext {
    let mut c = TemplateContext::default();
    c.contact.get_or_insert_default().first_name = "Zoë".into();
    c.lead
        .get_or_insert_default()
        .custom
        .insert("Deal Size".into(), "$5k".into());
    c.user.get_or_insert_default().first_name = "Sam".into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_validated_private_or_shared_previewed_and_sent() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    let mut templates = stack.templates().await;
    let create = |name: &str, body: &str, shared: bool| CreateTemplateRequest {
        name: name.into(),
        body: body.into(),
        shared,
    };
    // An unknown tag is refused with its name and position.
    let status = templates
        .create_template(as_user(create(
            "bad",
            "Hi\n  {{ contact.nickname }}",
            false,
        )))
        .await
        .unwrap_err();
    let (code, reason, metadata) = refusal(status);
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "TEMPLATE_UNKNOWN_TAG")
    );
    assert_eq!(metadata["tag"], "contact.nickname");
    assert_eq!(
        (metadata["line"].as_str(), metadata["column"].as_str()),
        ("2", "3")
    );
    let status = templates
        .create_template(as_user(create("bad", "Hi {{ contact.first_name", false)))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "TEMPLATE_UNCLOSED_TAG");

    let private = templates
        .create_template(as_user(create(
            "Follow-up",
            "Hi {{ contact.first_name }}, {{ user.first_name }} here about {{ lead.custom.[\"Deal Size\"] }}",
            false,
        )))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let shared = templates
        .create_template(as_user(create(
            "Team",
            "Thanks — {{ organization.name }}",
            true,
        )))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    // Another user sees the shared one, not the private one, and cannot change either.
    let other = |id: &str| as_caller(GetTemplateRequest { id: id.into() }, ORG, "user-2");
    let status = templates
        .get_template(other(&private.id))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "TEMPLATE_NOT_FOUND");
    assert!(templates.get_template(other(&shared.id)).await.is_ok());
    // Another member may use a shared template, not change it (an administrator may).
    let status = templates
        .update_template(sms_testkit::as_member(
            UpdateTemplateRequest {
                id: shared.id.clone(),
                body: Some("hijacked".into()),
                ..Default::default()
            },
            ORG,
            "user-2",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(status),
        (
            Code::PermissionDenied,
            "NOT_TEMPLATE_OWNER".into(),
            HashMap::new()
        )
    );

    // Preview: rendered body, encoding, segments, what forced UCS-2, what smart encoding saves.
    let preview = templates
        .preview(as_user(PreviewRequest {
            source: Some(preview_request::Source::TemplateId(private.id.clone())),
            context: Some(context()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.body, "Hi Zoë, Sam here about $5k");
    assert_eq!((preview.encoding.as_str(), preview.segments), ("UCS-2", 1));
    assert_eq!(preview.non_gsm, ["ë"]);
    let long = templates
        .preview(as_user(PreviewRequest {
            source: Some(preview_request::Source::Body(format!(
                "{}’",
                "a".repeat(100)
            ))),
            context: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (long.segments, long.smart_segments, long.segments_saved),
        (2, 1, 1)
    );
    assert_eq!(long.smart_encoding, "GSM-7");
    assert_eq!(
        long.smart_encoding_type,
        sms_proto::v1::Encoding::Gsm7 as i32
    );

    // Send with a template: the stored and sent body is the rendered one.
    let mut client = stack.messaging().await;
    let m = send_ok(
        &mut client,
        SendMessageRequest {
            template_id: private.id.clone(),
            context: Some(context()),
            ..sms(US_A, US_CONTACT, "")
        },
    )
    .await;
    assert_eq!(m.body, "Hi Zoë, Sam here about $5k");
    stack.wait_final(&mut client, &m.id).await;
    assert_eq!(stack.sim.requests()[0].body, "Hi Zoë, Sam here about $5k");
    // A template that renders past 1000 characters is refused.
    let huge = templates
        .create_template(as_user(create("huge", "{{ contact.first_name }}", false)))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    let mut big = context();
    big.contact.get_or_insert_default().first_name = "x".repeat(1001);
    let status = client
        .send_message(as_user(SendMessageRequest {
            template_id: huge.id,
            context: Some(big),
            ..sms(US_A, US_CONTACT, "")
        }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "BODY_TOO_LONG");
    // Both a body and a template is ambiguous.
    let status = client
        .send_message(as_user(SendMessageRequest {
            template_id: private.id,
            ..sms(US_A, US_CONTACT, "and a body")
        }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "BODY_AND_TEMPLATE");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_filters_and_errored_leads() {
    let stack = Stack::start().await;
    let landline = "+12015550124";
    stack.sim.update(|b| {
        b.landlines.insert(landline.into());
    });
    stack.add_number(US_A).await;
    let mut client = stack.messaging().await;
    let with_lead = |to: &str, body: &str, lead: &str| SendMessageRequest {
        lead_id: lead.into(),
        ..sms(US_A, to, body)
    };
    let mut ids = Vec::new();
    for req in [
        with_lead(US_CONTACT, "short", "lead-1"),
        with_lead(US_CONTACT, &"a".repeat(161), "lead-1"),
        with_lead(US_CONTACT, "héllo ç", "lead-2"),
        with_lead(landline, "to a landline", "lead-3"),
    ] {
        ids.push(send_ok(&mut client, req).await.id);
    }
    for id in &ids {
        stack.wait_final(&mut client, id).await;
    }
    // Usage: the three the carrier took, by encoding; the failed landline is not billed.
    let usage = client
        .get_usage(as_user(GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .rows;
    use sms_proto::v1::{Encoding, MessageKind};
    assert!(
        usage
            .iter()
            .all(|u| u.message_kind == MessageKind::Sms as i32)
    );
    assert_eq!(
        usage.iter().map(|u| u.encoding_type).collect::<Vec<_>>(),
        [Encoding::Gsm7 as i32, Encoding::Ucs2 as i32]
    );
    let rows: Vec<(String, String, String, u64, u64)> = usage
        .into_iter()
        .map(|u| (u.country, u.kind, u.encoding, u.messages, u.segments))
        .collect();
    assert_eq!(
        rows,
        [
            ("US".into(), "sms".into(), "GSM-7".into(), 2, 3),
            ("US".into(), "sms".into(), "UCS-2".into(), 1, 1)
        ]
    );
    let status = client
        .get_usage(as_user(GetUsageRequest {
            from_month: "2026-13".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "INVALID_MONTH");

    let list = |req: ListMessagesRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_messages(as_user(req))
                .await
                .unwrap()
                .into_inner()
                .messages
                .into_iter()
                .map(|m| m.body)
                .collect::<Vec<_>>()
        }
    };
    let errors = list(ListMessagesRequest {
        errors_only: true,
        ..Default::default()
    })
    .await;
    assert_eq!(errors, ["to a landline"]);
    let lead1 = list(ListMessagesRequest {
        lead_id: "lead-1".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(lead1.len(), 2);
    let inbound = list(ListMessagesRequest {
        direction: Direction::Inbound as i32,
        ..Default::default()
    })
    .await;
    assert!(inbound.is_empty());
    let future = list(ListMessagesRequest {
        created_after: Some(prost_types::Timestamp {
            seconds: 4_102_444_800,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await;
    assert!(future.is_empty());
    let delivered = list(ListMessagesRequest {
        status: MessageStatus::Delivered as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(delivered.len(), 3);
    let leads = client
        .list_errored_leads(as_user(ListErroredLeadsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .leads;
    assert_eq!(leads.len(), 1);
    assert_eq!(
        (leads[0].lead_id.as_str(), leads[0].errored_messages),
        ("lead-3", 1)
    );
    assert_eq!(leads[0].last_reason, "not_sms_capable");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organization_can_neither_see_nor_use_anothers_numbers_templates_or_messages() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    let mut client = stack.messaging().await;
    let a_msg = send_ok(&mut client, sms(US_A, US_CONTACT, "for A's eyes")).await;
    let mut templates = stack.templates().await;
    let a_tpl = templates
        .create_template(as_user(CreateTemplateRequest {
            name: "A".into(),
            body: "hi".into(),
            shared: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    fn b<T>(m: T) -> tonic::Request<T> {
        as_caller(m, "org-b", USER)
    }
    let status = client
        .get_message(b(GetMessageRequest {
            id: a_msg.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "MESSAGE_NOT_FOUND");
    let listed = client
        .list_messages(b(ListMessagesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert!(listed.is_empty());
    let status = client
        .send_message(b(sms(US_A, US_CONTACT, "borrowing A's number")))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "UNKNOWN_SENDER");
    let mut numbers = stack.numbers().await;
    let b_numbers = numbers
        .list_numbers(b(sms_proto::v1::ListNumbersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .numbers;
    assert!(b_numbers.is_empty());
    let status = numbers
        .get_number(b(sms_proto::v1::GetNumberRequest {
            number: US_A.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "NUMBER_NOT_FOUND");
    let status = templates
        .get_template(b(GetTemplateRequest { id: a_tpl.id }))
        .await
        .unwrap_err();
    assert_eq!(refusal(status).1, "TEMPLATE_NOT_FOUND");
    let usage = client
        .get_usage(b(GetUsageRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert!(usage.is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_configured_bearer_token() {
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
    let get = || as_user(ListMessagesRequest::default());
    let status = client.list_messages(get()).await.unwrap_err();
    assert_eq!(refusal(status).1, "UNAUTHENTICATED");
    let mut wrong = get();
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        client.list_messages(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut right = get();
    right
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert!(client.list_messages(right).await.is_ok());
    let mut no_org = tonic::Request::new(ListMessagesRequest::default());
    no_org
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = client.list_messages(no_org).await.unwrap_err();
    assert_eq!(refusal(status).1, "MISSING_ORGANIZATION");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_encoding_sends_look_alikes_as_gsm7_only_when_asked_and_when_it_saves() {
    let stack = Stack::start().await;
    stack.add_number(US_A).await;
    let mut client = stack.messaging().await;
    // Curly quotes and a dash force UCS-2: 80 characters are 2 segments of 67.
    let typed = format!("“Hi” — it’s Sam {}", "x".repeat(64));
    assert_eq!(typed.chars().count(), 80);
    let plain = send_ok(&mut client, sms(US_A, US_CONTACT, &typed)).await;
    assert_eq!((plain.encoding.as_str(), plain.segments), ("UCS-2", 2));
    assert_eq!(plain.body, typed, "sent as written unless asked");

    let reply = client
        .send_message(as_user(SendMessageRequest {
            smart_encoding: true,
            ..sms(US_A, US_CONTACT, &typed)
        }))
        .await
        .unwrap()
        .into_inner();
    let smart = reply.message.unwrap();
    assert_eq!((smart.encoding.as_str(), smart.segments), ("GSM-7", 1));
    assert_eq!(smart.body, format!("\"Hi\" - it's Sam {}", "x".repeat(64)));
    assert!(
        reply.notes.iter().any(|n| n.contains("smart encoding")),
        "{:?}",
        reply.notes
    );
    stack.wait_final(&mut client, &smart.id).await;
    let carrier = stack.sim.requests();
    assert!(
        carrier.iter().any(|r| r.body == smart.body),
        "the carrier got the GSM-7 text"
    );

    // An emoji keeps the message UCS-2 whatever is replaced: nothing saved, nothing changed.
    let emoji = format!("“Hi” 🙂 {}", "x".repeat(10));
    let kept = client
        .send_message(as_user(SendMessageRequest {
            smart_encoding: true,
            ..sms(US_A, US_CONTACT, &emoji)
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.message.unwrap().body, emoji);
    assert!(kept.notes.is_empty(), "{:?}", kept.notes);
    stack.shutdown().await;
}
