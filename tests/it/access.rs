//! Who may do what inside an organization (issue 23, item 8): the calling system says each
//! call's user and role (`x-user-role`: `member`, the default, or `admin`). A member acts for
//! themselves; only an administrator changes the organization for everyone (numbers, groups,
//! settings, webhooks, opt-ins, replies) or what another user made. The console follows it.

use std::collections::HashMap;

use sms_proto::v1::{
    AddGroupMemberRequest, AddNumberRequest, CancelMessageRequest, CreateGroupRequest,
    CreateWebhookEndpointRequest, DeleteWebhookEndpointRequest, ImportNumberRequest,
    ListMessagesRequest, ListWebhookAttemptsRequest, ListWebhookEndpointsRequest, NumberKind,
    ReleaseNumberRequest, RemoveGroupMemberRequest, RemoveOptOutRequest, RentNumberRequest,
    ReplayWebhookEventsRequest, RotateWebhookSecretRequest, SearchAvailableNumbersRequest,
    SendMessageRequest, SetNumberRateRequest, SetRepliesRequest, SetWebhookEndpointEnabledRequest,
    UpdateSettingsRequest, add_number_request,
};
use sms_testkit::{ORG, Stack, USER, as_caller, as_member, sms};
use tonic::Code;
use tonic_types::StatusExt;

use crate::console::{Console, Http, TOKEN_A, authed};

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const OTHER: &str = "user-2";

fn refusal(status: tonic::Status) -> (Code, String, HashMap<String, String>) {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (status.code(), info.reason, info.metadata)
}

/// What a call answered: `Ok` or its code and reason.
type Answer = Result<(), (Code, String)>;

fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Answer {
    r.map(|_| ()).map_err(|s| {
        let (code, reason, _) = refusal(s);
        (code, reason)
    })
}

/// A call as [`USER`], a member of [`ORG`].
fn member<T>(message: T) -> tonic::Request<T> {
    as_member(message, ORG, USER)
}

fn later(from: &str, body: &str) -> SendMessageRequest {
    SendMessageRequest {
        send_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        ..sms(from, CONTACT, body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_acts_for_themselves_and_administrators_for_everyone() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let (mut numbers, mut settings, mut webhooks, mut opt_outs, mut messaging) = (
        stack.numbers().await,
        stack.settings().await,
        stack.webhooks().await,
        stack.opt_outs().await,
        stack.messaging().await,
    );

    // Every administrator's call, made by a member: refused before anything is looked at.
    let mut refused: Vec<(&str, Answer)> = vec![
        (
            "RentNumber",
            answer(
                numbers
                    .rent_number(member(RentNumberRequest::default()))
                    .await,
            ),
        ),
        (
            "ImportNumber",
            answer(
                numbers
                    .import_number(member(ImportNumberRequest::default()))
                    .await,
            ),
        ),
        (
            "AddNumber",
            answer(
                numbers
                    .add_number(member(AddNumberRequest::default()))
                    .await,
            ),
        ),
        (
            "ReleaseNumber",
            answer(
                numbers
                    .release_number(member(ReleaseNumberRequest {
                        number: OURS.into(),
                    }))
                    .await,
            ),
        ),
        (
            "SetNumberRate",
            answer(
                numbers
                    .set_number_rate(member(SetNumberRateRequest::default()))
                    .await,
            ),
        ),
        (
            "SetNumberCarrier",
            answer(
                numbers
                    .set_number_carrier(member(sms_proto::v1::SetNumberCarrierRequest::default()))
                    .await,
            ),
        ),
        (
            "CreateGroup",
            answer(
                numbers
                    .create_group(member(CreateGroupRequest::default()))
                    .await,
            ),
        ),
        (
            "AddGroupMember",
            answer(
                numbers
                    .add_group_member(member(AddGroupMemberRequest::default()))
                    .await,
            ),
        ),
        (
            "RemoveGroupMember",
            answer(
                numbers
                    .remove_group_member(member(RemoveGroupMemberRequest::default()))
                    .await,
            ),
        ),
        (
            "UpdateSettings",
            answer(
                settings
                    .update_settings(member(UpdateSettingsRequest::default()))
                    .await,
            ),
        ),
        (
            "CreateWebhookEndpoint",
            answer(
                webhooks
                    .create_webhook_endpoint(member(CreateWebhookEndpointRequest::default()))
                    .await,
            ),
        ),
        (
            "ListWebhookEndpoints",
            answer(
                webhooks
                    .list_webhook_endpoints(member(ListWebhookEndpointsRequest::default()))
                    .await,
            ),
        ),
        (
            "SetWebhookEndpointEnabled",
            answer(
                webhooks
                    .set_webhook_endpoint_enabled(member(
                        SetWebhookEndpointEnabledRequest::default(),
                    ))
                    .await,
            ),
        ),
        (
            "DeleteWebhookEndpoint",
            answer(
                webhooks
                    .delete_webhook_endpoint(member(DeleteWebhookEndpointRequest::default()))
                    .await,
            ),
        ),
        (
            "RotateWebhookSecret",
            answer(
                webhooks
                    .rotate_webhook_secret(member(RotateWebhookSecretRequest::default()))
                    .await,
            ),
        ),
        (
            "ListWebhookAttempts",
            answer(
                webhooks
                    .list_webhook_attempts(member(ListWebhookAttemptsRequest::default()))
                    .await,
            ),
        ),
        (
            "ReplayWebhookEvents",
            answer(
                webhooks
                    .replay_webhook_events(member(ReplayWebhookEventsRequest::default()))
                    .await,
            ),
        ),
        (
            "RemoveOptOut",
            answer(
                opt_outs
                    .remove_opt_out(member(RemoveOptOutRequest {
                        contact_number: CONTACT.into(),
                        reason: "asked by phone".into(),
                    }))
                    .await,
            ),
        ),
        (
            "SetReplies",
            answer(
                opt_outs
                    .set_replies(member(SetRepliesRequest::default()))
                    .await,
            ),
        ),
    ];
    let listed: Vec<&str> = refused.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        listed,
        sms_runtime::auth::ADMIN_METHODS,
        "the test covers every administrator's call"
    );
    for (method, got) in refused.drain(..) {
        assert_eq!(
            got,
            Err((Code::PermissionDenied, "ADMIN_REQUIRED".to_owned())),
            "{method} as a member"
        );
    }
    // What a member does: look for numbers, send from their own, read the organization's log.
    answer(
        numbers
            .search_available_numbers(member(SearchAvailableNumbersRequest {
                country: "US".into(),
                ..Default::default()
            }))
            .await,
    )
    .unwrap();
    let own = messaging
        .send_message(member(later(OURS, "mine")))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    answer(
        messaging
            .list_messages(member(ListMessagesRequest::default()))
            .await,
    )
    .unwrap();
    // A role the calling system cannot mean.
    let mut odd = as_member(ListMessagesRequest::default(), ORG, USER);
    odd.metadata_mut()
        .insert("x-user-role", "root".parse().unwrap());
    let (code, reason, metadata) = refusal(messaging.list_messages(odd).await.unwrap_err());
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "INVALID_ROLE")
    );
    assert_eq!(metadata["field"], "x-user-role");

    // Another user's scheduled send: not a member's to cancel; the sender's and an
    // administrator's.
    let theirs_number = "+12015550101";
    stack.add_number_as(ORG, OTHER, theirs_number).await;
    let theirs = messaging
        .send_message(as_member(later(theirs_number, "theirs"), ORG, OTHER))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    let cancel = |id: &str| CancelMessageRequest { id: id.into() };
    let (code, reason, _) = refusal(
        messaging
            .cancel_message(member(cancel(&theirs.id)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "NOT_MESSAGE_OWNER")
    );
    messaging
        .cancel_message(member(cancel(&own.id)))
        .await
        .unwrap();
    messaging
        .cancel_message(as_caller(cancel(&theirs.id), ORG, USER))
        .await
        .unwrap();

    // Joining a group is an administrator's doing, so its numbers are not a member's to take.
    let group = numbers
        .create_group(as_caller(
            CreateGroupRequest {
                name: "sales".into(),
            },
            ORG,
            USER,
        ))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    let shared = "+12015550102";
    numbers
        .add_number(as_caller(
            AddNumberRequest {
                number: shared.into(),
                kind: NumberKind::Internal as i32,
                owner: Some(add_number_request::Owner::OwnerGroupId(group.id.clone())),
                ..Default::default()
            },
            ORG,
            USER,
        ))
        .await
        .unwrap();
    let join = AddGroupMemberRequest {
        group_id: group.id.clone(),
        user_id: OTHER.into(),
    };
    let (_, reason, _) = refusal(
        numbers
            .add_group_member(as_member(join.clone(), ORG, OTHER))
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, "ADMIN_REQUIRED");
    let (_, reason, _) = refusal(
        messaging
            .send_message(as_member(
                sms(shared, CONTACT, "from the group"),
                ORG,
                OTHER,
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, "SENDER_NOT_OWNED");
    numbers
        .add_group_member(as_caller(join, ORG, USER))
        .await
        .unwrap();
    messaging
        .send_message(as_member(
            sms(shared, CONTACT, "from the group"),
            ORG,
            OTHER,
        ))
        .await
        .unwrap();
    stack.shutdown().await;
}

/// The console signs a person in as a member unless they say they administer the
/// organization; a member is not offered what only administrators may do, and the API refuses
/// it if asked anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_follows_the_roles() {
    let console = Console::start(std::time::Duration::from_secs(600)).await;
    let stack = &console.stack;
    let theirs_number = "+12015550101";
    crate::console::add_number(stack, ORG, USER, OURS).await;
    crate::console::add_number(stack, ORG, OTHER, theirs_number).await;
    let as_member_of_a = |m, user: &str| {
        let mut r = as_member(m, ORG, user);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {TOKEN_A}").parse().unwrap(),
        );
        r
    };
    let mut messaging = stack.messaging().await;
    let own = messaging
        .send_message(as_member_of_a(later(OURS, "mine"), USER))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    let theirs = messaging
        .send_message(as_member_of_a(later(theirs_number, "theirs"), OTHER))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    // The registry's replies as an administrator set them.
    stack
        .opt_outs()
        .await
        .set_replies(authed(
            SetRepliesRequest {
                help_text: "Text us any time.".into(),
                opt_out_confirmation: String::new(),
            },
            ORG,
            USER,
        ))
        .await
        .unwrap();

    let mut http = Http::new(&console.url);
    assert_eq!(http.sign_in_as(TOKEN_A, ORG, USER, false).await.status, 303);
    let p = http.get("/optouts").await;
    assert_eq!(p.status, 200);
    assert!(
        !p.body.contains("/optouts/remove"),
        "no opt-back-in for a member"
    );
    assert!(!p.body.contains(r#"action="/optouts/replies""#));
    assert!(p.body.contains(r#"id="admin-only""#));
    assert!(p.body.contains("Text us any time."), "the replies, to read");
    let csrf = p.csrf();
    let refused = http
        .post(
            "/optouts/remove",
            &[
                ("csrf", &csrf),
                ("contact_number", CONTACT),
                ("reason", "asked by phone"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("administrators"), "{}", refused.body);
    let p = http.get("/scheduled").await;
    assert!(p.body.contains(&format!("/scheduled/{}/cancel", own.id)));
    assert!(
        !p.body.contains(&format!("/scheduled/{}/cancel", theirs.id)),
        "no cancel for another user's send"
    );
    let refused = http
        .post(
            &format!("/scheduled/{}/cancel", theirs.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // The same person as an administrator.
    let mut admin = Http::new(&console.url);
    assert_eq!(admin.sign_in(TOKEN_A, ORG, USER).await.status, 303);
    let p = admin.get("/optouts").await;
    assert!(p.body.contains("/optouts/remove"));
    assert!(p.body.contains(r#"action="/optouts/replies""#));
    let p = admin.get("/scheduled").await;
    assert!(p.body.contains(&format!("/scheduled/{}/cancel", theirs.id)));
    let csrf = p.csrf();
    let done = admin
        .post(
            &format!("/scheduled/{}/cancel", theirs.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    console.shutdown().await;
}
