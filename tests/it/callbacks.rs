//! Carrier status callbacks as an attacker holding a carrier account's token would send them:
//! signed, but about messages that are not theirs to speak of. A callback applies only to the
//! message whose carrier sid and account the dispatcher reported; an opt-out the carrier
//! reports is recorded only for the recipient of a message we sent.

use std::time::{Duration, Instant};

use sms_proto::v1::{CheckOptOutRequest, MessageStatus, SetNumberRateRequest};
use sms_testkit::{
    ACCOUNT_SID, AUTH_TOKEN, ORG, OTHER_ACCOUNT_SID, OTHER_AUTH_TOKEN, Stack, USER, as_caller,
    as_user, eventually, post_form, send_ok, sms, twilio_signature,
};

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const FORGED_SID: &str = "SMf0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// A status callback for message `mid` of `org`, signed with `(account, token)` as the carrier
/// signs it; the receiver's HTTP status.
async fn callback(
    stack: &Stack,
    (account, token): (&str, &str),
    org: &str,
    mid: &str,
    status: &str,
    sid: &str,
    error_code: Option<&str>,
) -> u16 {
    let url = format!(
        "{}/webhooks/twilio/status?org={org}&mid={mid}",
        stack.inbound_url
    );
    let mut params = vec![
        ("MessageSid", sid),
        ("AccountSid", account),
        ("MessageStatus", status),
        ("From", OURS),
        ("To", CONTACT),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode", code));
    }
    let signature = twilio_signature(token, &url, &params);
    post_form(&url, &params, Some(&signature)).await.0
}

async fn opted_out(stack: &Stack, org: &str) -> bool {
    stack
        .opt_outs()
        .await
        .check_opt_out(as_caller(
            CheckOptOutRequest {
                contact_number: CONTACT.into(),
            },
            org,
            USER,
        ))
        .await
        .unwrap()
        .into_inner()
        .status
        .is_some_and(|s| s.opted_out)
}

/// Issue 23, item 1: a message waiting for its sender's rate is `queued` and not yet the
/// carrier's; a signed callback saying it was delivered (with a sid of its own) must not move
/// it, bind that sid or bill it. The real send goes out later and ends with the real sid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_callback_cannot_move_a_message_the_dispatcher_still_holds() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    // One segment every 4 s: the second message waits about 4 s for its turn.
    stack
        .numbers()
        .await
        .set_number_rate(as_user(SetNumberRateRequest {
            number: OURS.into(),
            send_rate: 0.25,
            send_burst: 1,
        }))
        .await
        .unwrap();
    let mut client = stack.messaging().await;
    // Let the dispatcher's copy of the rate arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = send_ok(&mut client, sms(OURS, CONTACT, "first")).await;
    let second = send_ok(&mut client, sms(OURS, CONTACT, "second")).await;
    eventually(Duration::from_secs(5), "the second message queued", || {
        let stack = &stack;
        let id = second.id.clone();
        async move {
            let m = stack.message(&id).await;
            (m.status == MessageStatus::Queued as i32).then_some(())
        }
    })
    .await;
    let code = callback(
        &stack,
        (ACCOUNT_SID, AUTH_TOKEN),
        ORG,
        &second.id,
        "delivered",
        FORGED_SID,
        None,
    )
    .await;
    assert_eq!(code, 200, "a signed callback is acknowledged at the edge");
    // Still waiting for its turn: the forged `delivered` did nothing.
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(1500) {
        let m = stack.message(&second.id).await;
        if m.status != MessageStatus::Queued as i32 {
            // Its turn came: it is the dispatcher's `sending`, never the forged `delivered`.
            assert_ne!(m.carrier_sid, FORGED_SID, "{m:?}");
            break;
        }
        assert!(m.carrier_sid.is_empty(), "{m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = stack.wait_final(&mut client, &second.id).await;
    assert_eq!(done.status, MessageStatus::Delivered as i32);
    assert!(
        done.carrier_sid.starts_with("SM") && done.carrier_sid != FORGED_SID,
        "{done:?}"
    );
    assert!(
        stack.sim.requests().iter().any(|r| r.body == "second"),
        "the carrier got the real send"
    );
    // The first message, already the carrier's: a callback with another sid is ignored.
    let first = stack.wait_final(&mut client, &first.id).await;
    assert_eq!(
        callback(
            &stack,
            (ACCOUNT_SID, AUTH_TOKEN),
            ORG,
            &first.id,
            "undelivered",
            FORGED_SID,
            Some("30007"),
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.message(&first.id).await.status,
        MessageStatus::Delivered as i32
    );
    stack.shutdown().await;
}

/// Issue 23, item 2: a signed `failed`/21610 for a message that does not exist, or for another
/// organization's, or signed by another carrier account than the one the message went
/// through, opts no one out. The carrier's own word about its own message does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_opt_out_counts_only_for_its_own_message_and_account() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    // No callbacks: the message stays `sending` with the sid the dispatcher reported.
    stack.sim.update(|b| b.callbacks = false);
    let mut client = stack.messaging().await;
    let m = send_ok(&mut client, sms(OURS, CONTACT, "hello")).await;
    let sid = eventually(Duration::from_secs(10), "the message handed on", || {
        let stack = &stack;
        let id = m.id.clone();
        async move {
            let m = stack.message(&id).await;
            (m.status == MessageStatus::Sending as i32 && !m.carrier_sid.is_empty())
                .then_some(m.carrier_sid)
        }
    })
    .await;
    let account = (ACCOUNT_SID, AUTH_TOKEN);
    let other_account = (OTHER_ACCOUNT_SID, OTHER_AUTH_TOKEN);
    let nobody = uuid::Uuid::new_v4().to_string();
    for (org, mid, signer, sid) in [
        // A message that does not exist, in another organization and in ours.
        ("org-b", nobody.as_str(), account, FORGED_SID),
        (ORG, nobody.as_str(), account, FORGED_SID),
        // Our message, claimed for another organization.
        ("org-b", m.id.as_str(), account, sid.as_str()),
        // Our message with its own sid, signed by an account it was not sent through.
        (ORG, m.id.as_str(), other_account, sid.as_str()),
    ] {
        let code = callback(&stack, signer, org, mid, "failed", sid, Some("21610")).await;
        assert_eq!(code, 200, "{org} {mid}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !opted_out(&stack, "org-b").await,
        "org-b's contact opted out"
    );
    assert!(!opted_out(&stack, ORG).await, "our contact opted out");
    assert_eq!(
        stack.message(&m.id).await.status,
        MessageStatus::Sending as i32,
        "moved by a callback that is not its carrier's"
    );
    // The carrier, through the account the message went through, about its own message.
    let code = callback(&stack, account, ORG, &m.id, "failed", &sid, Some("21610")).await;
    assert_eq!(code, 200);
    let failed = stack.wait_final(&mut client, &m.id).await;
    assert_eq!(
        (failed.reason.as_str(), failed.carrier_error_code),
        ("opted_out", 21610)
    );
    eventually(
        Duration::from_secs(10),
        "the carrier opt-out recorded",
        || {
            let stack = &stack;
            async move { opted_out(stack, ORG).await.then_some(()) }
        },
    )
    .await;
    assert!(!opted_out(&stack, "org-b").await);
    stack.shutdown().await;
}
