//! Inbound webhooks, STOP / START / HELP, conversations and inboxes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message as _;
use sms_carrier_sim::Incoming;
use sms_proto::events::v1::{InboundReceived, InboundStored};
use sms_proto::v1::{
    AddGroupMemberRequest, AddNumberRequest, AddOptOutRequest, CheckOptOutRequest,
    CreateGroupRequest, ListInboxRequest, MarkInboxDoneRequest, MessageStatus, RemoveOptOutRequest,
    SendMessageRequest, add_number_request,
};
use sms_testkit::{
    ACCOUNT_SID, AUTH_TOKEN, ORG, Stack, USER, as_caller, as_user, eventually, send_ok, sms,
};
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";

use sms_testkit::{post_form as post, twilio_signature};

fn incoming(from: &str, body: &str) -> Incoming {
    Incoming {
        from: from.into(),
        to: OURS.into(),
        body: body.into(),
        ..Default::default()
    }
}

async fn conversation(stack: &Stack, contact: &str) -> Vec<(String, String)> {
    stack
        .conversation(OURS, contact)
        .await
        .into_iter()
        .map(|m| (m.from, m.body))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_deduplicated_and_filtered() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut published = stack
        .bus
        .client()
        .subscribe(stack.bus.subjects().inbound_received())
        .await
        .unwrap();
    let url = stack.incoming_url();
    let params = |body: &'static str, from: &'static str| {
        vec![
            ("MessageSid", "SMfeed0000000000000000000000000001"),
            ("AccountSid", ACCOUNT_SID),
            ("From", from),
            ("To", OURS),
            ("Body", body),
            ("NumMedia", "0"),
        ]
    };
    // Valid, and valid again (the carrier retries): 200 with empty TwiML, stored once.
    let good = params("hello there", CONTACT);
    let sig = twilio_signature(AUTH_TOKEN, &url, &good);
    let (code, body) = post(&url, &good, Some(&sig)).await;
    assert_eq!(code, 200);
    assert!(body.contains("<Response></Response>"), "{body}");
    assert_eq!(post(&url, &good, Some(&sig)).await.0, 200);
    // Tampered parameter, wrong token, no signature: 403.
    let mut tampered = good.clone();
    tampered[4] = ("Body", "tampered");
    assert_eq!(post(&url, &tampered, Some(&sig)).await.0, 403);
    let forged = params("wrong token", CONTACT);
    let bad_sig = twilio_signature("not-the-token", &url, &forged);
    assert_eq!(post(&url, &forged, Some(&bad_sig)).await.0, 403);
    assert_eq!(post(&url, &params("unsigned", CONTACT), None).await.0, 403);
    // A short code: acknowledged, never delivered.
    let short = vec![
        ("MessageSid", "SMfeed0000000000000000000000000002"),
        ("AccountSid", ACCOUNT_SID),
        ("From", "55555"),
        ("To", OURS),
        ("Body", "from a short code"),
    ];
    let (code, body) = post(
        &url,
        &short,
        Some(&twilio_signature(AUTH_TOKEN, &url, &short)),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("<Response>"));
    // A number we do not hold: acknowledged, dropped.
    let stranger = vec![
        ("MessageSid", "SMfeed0000000000000000000000000003"),
        ("AccountSid", ACCOUNT_SID),
        ("From", CONTACT),
        ("To", "+12015550188"),
        ("Body", "to a stranger"),
    ];
    let sig = twilio_signature(AUTH_TOKEN, &url, &stranger);
    assert_eq!(post(&url, &stranger, Some(&sig)).await.0, 200);
    // Oversized: refused before anything else.
    let huge = "x".repeat(70 * 1024);
    let big = vec![("AccountSid", ACCOUNT_SID), ("Body", huge.as_str())];
    assert_eq!(post(&url, &big, Some("x")).await.0, 413);

    // Only the genuine message reached the bus (the retry is the same event id).
    let mut bodies = Vec::new();
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(700), published.next()).await
    {
        bodies.push(InboundReceived::decode(msg.payload).unwrap().body);
    }
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|b| b == "hello there"), "{bodies:?}");
    let stored = eventually(
        Duration::from_secs(10),
        "the reply on the conversation",
        || async {
            let c = conversation(&stack, CONTACT).await;
            (!c.is_empty()).then_some(c)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(conversation(&stack, CONTACT).await, stored);
    assert_eq!(
        stored,
        [(CONTACT.to_owned(), "hello there".to_owned())],
        "stored once"
    );
    stack.shutdown().await;
}

async fn refused_reason(stack: &Stack, to: &str) -> Option<String> {
    let mut client = stack.messaging().await;
    match client
        .send_message(as_user(sms(OURS, to, "are you there?")))
        .await
    {
        Ok(_) => None,
        Err(status) => Some(
            status
                .get_details_error_info()
                .map(|i| i.reason)
                .unwrap_or_default(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_blocks_the_next_send_start_restores_it_help_answers() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    // A message scheduled before the STOP, due after it: the dispatcher must stop it.
    let scheduled = send_ok(
        &mut client,
        SendMessageRequest {
            send_at: Some(prost_types::Timestamp {
                seconds: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64
                    + 3,
                nanos: 0,
            }),
            ..sms(OURS, CONTACT, "scheduled before the stop")
        },
    )
    .await;

    let sent = Instant::now();
    let (code, _) = stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &incoming(CONTACT, "  Stop. "),
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    eventually(
        Duration::from_secs(5),
        "the opt-out to block sends",
        || async {
            (refused_reason(&stack, CONTACT).await.as_deref() == Some("OPTED_OUT")).then_some(())
        },
    )
    .await;
    println!("STOP blocked sends after {:?}", sent.elapsed());
    // The one confirmation went out; nothing else.
    // (Probes sent before the STOP was processed were rightly accepted; they are all this
    // test's "are you there?" texts.)
    let confirmation = eventually(Duration::from_secs(10), "the confirmation", || async {
        stack
            .sim
            .requests()
            .into_iter()
            .find(|r| r.to == CONTACT && r.body != "are you there?")
    })
    .await;
    assert_eq!(confirmation.body, sms_optout::DEFAULT_CONFIRMATION);
    assert_eq!(confirmation.from, OURS);
    let scheduled = stack.wait_final(&mut client, &scheduled.id).await;
    assert_eq!(
        MessageStatus::try_from(scheduled.status).unwrap(),
        MessageStatus::Failed
    );
    assert_eq!(scheduled.reason, "opted_out");
    let to_contact: Vec<String> = stack
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.to == CONTACT && r.body != "are you there?")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        to_contact,
        [sms_optout::DEFAULT_CONFIRMATION],
        "nothing else reached the contact"
    );
    let mut opt_outs = stack.opt_outs().await;
    let status = opt_outs
        .check_opt_out(as_user(CheckOptOutRequest {
            contact_number: CONTACT.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert!(status.opted_out);
    assert_eq!(
        (status.source.as_str(), status.our_number.as_str()),
        ("keyword", OURS)
    );

    // "stop please" is a sentence, not a keyword; HELP gets the help text.
    let other = "+12015550124";
    stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &incoming(other, "stop please"),
        )
        .await
        .unwrap();
    stack
        .sim
        .send_incoming(&stack.incoming_url(), ACCOUNT_SID, &incoming(other, "help"))
        .await
        .unwrap();
    let help = eventually(Duration::from_secs(10), "the help reply", || async {
        stack.sim.requests().into_iter().find(|r| r.to == other)
    })
    .await;
    assert_eq!(help.body, sms_optout::DEFAULT_HELP);
    assert_eq!(refused_reason(&stack, other).await, None, "still allowed");

    // START opts back in.
    stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &incoming(CONTACT, "START"),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "sends to flow again", || async {
        refused_reason(&stack, CONTACT)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_opt_out_is_recorded_and_hand_changes_say_who_and_why() {
    let stack = Stack::start().await;
    stack.sim.update(|b| {
        b.carrier_opted_out.insert(CONTACT.into());
    });
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let m = send_ok(&mut client, sms(OURS, CONTACT, "hello")).await;
    let m = stack.wait_final(&mut client, &m.id).await;
    assert_eq!(
        (m.reason.as_str(), m.carrier_error_code),
        ("opted_out", 21610)
    );
    eventually(
        Duration::from_secs(5),
        "the carrier opt-out recorded",
        || async {
            (refused_reason(&stack, CONTACT).await.as_deref() == Some("OPTED_OUT")).then_some(())
        },
    )
    .await;
    let mut opt_outs = stack.opt_outs().await;
    let removed = opt_outs
        .remove_opt_out(as_user(RemoveOptOutRequest {
            contact_number: CONTACT.into(),
            reason: "asked by phone to resubscribe".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert!(!removed.opted_out);
    assert_eq!(
        (removed.source.as_str(), removed.changed_by.as_str()),
        ("manual", USER)
    );
    let added = opt_outs
        .add_opt_out(as_user(AddOptOutRequest {
            contact_number: "+12015550124".into(),
            reason: "complained by e-mail".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert!(added.opted_out);
    eventually(
        Duration::from_secs(5),
        "the hand opt-out to apply",
        || async {
            (refused_reason(&stack, "+12015550124").await.as_deref() == Some("OPTED_OUT"))
                .then_some(())
        },
    )
    .await;
    let status = opt_outs
        .add_opt_out(as_user(AddOptOutRequest {
            contact_number: CONTACT.into(),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "MISSING_REASON"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_land_on_the_conversation_and_in_every_owners_inbox() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut numbers = stack.numbers().await;
    let group = numbers
        .create_group(as_user(CreateGroupRequest {
            name: "Support".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    for user in ["user-2", "user-3"] {
        numbers
            .add_group_member(as_user(AddGroupMemberRequest {
                group_id: group.id.clone(),
                user_id: user.into(),
            }))
            .await
            .unwrap();
    }
    let shared = "+12015550177";
    numbers
        .add_number(as_user(AddNumberRequest {
            number: shared.into(),
            owner: Some(add_number_request::Owner::OwnerGroupId(group.id.clone())),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut announced = stack
        .bus
        .client()
        .subscribe(stack.bus.subjects().msg_inbound())
        .await
        .unwrap();
    let mut client = stack.messaging().await;
    let out = send_ok(
        &mut client,
        sms(OURS, CONTACT, "Hi, are you free tomorrow?"),
    )
    .await;
    stack.wait_final(&mut client, &out.id).await;
    stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            ACCOUNT_SID,
            &incoming(CONTACT, "Yes, 10am works"),
        )
        .await
        .unwrap();
    let group_reply = Incoming {
        to: shared.into(),
        ..incoming(CONTACT, "Question for support")
    };
    stack
        .sim
        .send_incoming(&stack.incoming_url(), ACCOUNT_SID, &group_reply)
        .await
        .unwrap();

    let convo = eventually(
        Duration::from_secs(10),
        "the reply on the conversation",
        || async {
            let c = conversation(&stack, CONTACT).await;
            (c.len() == 2).then_some(c)
        },
    )
    .await;
    assert_eq!(
        convo,
        [
            (OURS.to_owned(), "Hi, are you free tomorrow?".to_owned()),
            (CONTACT.to_owned(), "Yes, 10am works".to_owned())
        ]
    );
    let reader = client.clone();
    let inbox = |user: &'static str, include_done: bool| {
        let mut client = reader.clone();
        async move {
            client
                .list_inbox(as_caller(
                    ListInboxRequest {
                        include_done,
                        ..Default::default()
                    },
                    ORG,
                    user,
                ))
                .await
                .unwrap()
                .into_inner()
                .messages
        }
    };
    let mine = eventually(Duration::from_secs(10), "user-1's inbox", || async {
        let m = inbox(USER, false).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].body, "Yes, 10am works");
    for member in ["user-2", "user-3"] {
        let theirs = eventually(Duration::from_secs(10), "a member's inbox", || async {
            let m = inbox(member, false).await;
            (!m.is_empty()).then_some(m)
        })
        .await;
        assert_eq!(theirs.len(), 1, "{member}");
        assert_eq!(theirs[0].body, "Question for support");
    }
    assert!(inbox("user-4", true).await.is_empty());
    client
        .mark_inbox_done(as_user(MarkInboxDoneRequest {
            id: mine[0].id.clone(),
            done: true,
        }))
        .await
        .unwrap();
    assert!(inbox(USER, false).await.is_empty());
    assert_eq!(inbox(USER, true).await.len(), 1);

    // The CRM is told, with whose inbox it is in.
    let mut stored = Vec::new();
    while stored.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), announced.next())
            .await
            .unwrap()
            .unwrap();
        stored.push(InboundStored::decode(msg.payload).unwrap());
    }
    stored.sort_by(|a, b| a.body.cmp(&b.body));
    assert_eq!(stored[0].inbox_user_ids, ["user-2", "user-3"]);
    assert_eq!(stored[1].inbox_user_ids, [USER]);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_belongs_to_the_lead_of_the_conversation_or_the_registered_contact() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let mut contacts = stack.contacts().await;
    // An earlier message to the contact for another lead, then the latest for lead-7.
    for (lead, body) in [("lead-1", "first"), ("lead-7", "about the house on Elm St")] {
        let mut request = sms(OURS, CONTACT, body);
        request.lead_id = lead.into();
        request.contact_id = "contact-9".into();
        let id = send_ok(&mut client, request).await.id;
        stack.wait_final(&mut client, &id).await;
    }
    // A manual text with no lead does not take the conversation away from it.
    let id = send_ok(&mut client, sms(OURS, CONTACT, "just checking in"))
        .await
        .id;
    stack.wait_final(&mut client, &id).await;
    // A number with no conversation, registered by the CRM.
    let registered = "+12015550177";
    let set = contacts
        .set_contact(as_user(sms_proto::v1::SetContactRequest {
            contact_number: "(201) 555-0177".into(),
            lead_id: "lead-x".into(),
            contact_id: String::new(),
        }))
        .await;
    // National format needs the region: refused, saying why.
    let refused = set.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "INVALID_RECIPIENT"
    );
    let set = contacts
        .set_contact(as_user(sms_proto::v1::SetContactRequest {
            contact_number: registered.into(),
            lead_id: "lead-x".into(),
            contact_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(set.lead_id, "lead-x");
    let neither = contacts
        .set_contact(as_user(sms_proto::v1::SetContactRequest {
            contact_number: registered.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        neither.get_details_error_info().unwrap().reason,
        "CONTACT_WITHOUT_IDS"
    );
    // A stranger: neither.
    let stranger = "+12015550178";
    for (from, sid) in [
        (CONTACT, "SMbead0000000000000000000000000001"),
        (registered, "SMbead0000000000000000000000000002"),
        (stranger, "SMbead0000000000000000000000000003"),
    ] {
        let mut m = incoming(from, "sounds good");
        m.sid = Some(sid.into());
        stack
            .sim
            .send_incoming(&stack.incoming_url(), ACCOUNT_SID, &m)
            .await
            .unwrap();
    }
    let reply_of = |from: &'static str| {
        let stack = &stack;
        async move {
            eventually(Duration::from_secs(30), "the reply", || async {
                stack
                    .conversation(OURS, from)
                    .await
                    .into_iter()
                    .find(|m| m.from == from)
            })
            .await
        }
    };
    let reply = reply_of(CONTACT).await;
    assert_eq!(
        (reply.lead_id.as_str(), reply.contact_id.as_str()),
        ("lead-7", "contact-9")
    );
    let reply = reply_of(registered).await;
    assert_eq!(
        (reply.lead_id.as_str(), reply.contact_id.as_str()),
        ("lead-x", "")
    );
    let reply = reply_of(stranger).await;
    assert_eq!(
        (reply.lead_id.as_str(), reply.contact_id.as_str()),
        ("", "")
    );
    // The lead's messages: both directions.
    let listed = client
        .list_messages(as_user(sms_proto::v1::ListMessagesRequest {
            lead_id: "lead-7".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .messages;
    let directions: Vec<(i32, String)> = listed
        .iter()
        .map(|m| (m.direction, m.body.clone()))
        .collect();
    assert_eq!(directions.len(), 2, "{directions:?}");
    assert!(
        listed
            .iter()
            .any(|m| m.from == CONTACT && m.body == "sounds good")
    );
    // Forgotten: found no more.
    contacts
        .delete_contact(as_user(sms_proto::v1::DeleteContactRequest {
            contact_number: registered.into(),
        }))
        .await
        .unwrap();
    let gone = contacts
        .get_contact(as_user(sms_proto::v1::GetContactRequest {
            contact_number: registered.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert_eq!(
        gone.get_details_error_info().unwrap().reason,
        "CONTACT_NOT_FOUND"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_whose_address_is_not_a_number_is_kept_and_read_back_as_it_came() {
    // A carrier may give an alphanumeric sender id, or a number its plan does not know: the
    // contact's text is never refused, and the address reads back as it came (rows carry an
    // Address, a number only when it is one).
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let senders = ["ACME", "+1555"];
    for (i, from) in senders.iter().enumerate() {
        let message = Incoming {
            sid: Some(format!("SMa1fa000000000000000000000000000{i}")),
            ..incoming(from, &format!("hello from {from}"))
        };
        stack
            .sim
            .send_incoming(&stack.incoming_url(), ACCOUNT_SID, &message)
            .await
            .unwrap();
    }
    let mut client = stack.messaging().await;
    let inbox = eventually(Duration::from_secs(10), "both in the inbox", || {
        let mut client = client.clone();
        async move {
            let m = client
                .list_inbox(as_user(ListInboxRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .messages;
            (m.len() == 2).then_some(m)
        }
    })
    .await;
    let mut froms: Vec<&str> = inbox.iter().map(|m| m.from.as_str()).collect();
    froms.sort_unstable();
    assert_eq!(froms, ["+1555", "ACME"]);
    for m in &inbox {
        let got = client
            .get_message(as_user(sms_proto::v1::GetMessageRequest {
                id: m.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        assert_eq!(
            (got.from.as_str(), got.to.as_str()),
            (m.from.as_str(), OURS)
        );
        assert_eq!(got.body, format!("hello from {}", m.from));
    }
    stack.shutdown().await;
}
