//! The event feed (`EventsService.Subscribe`): resumable from any cursor, every subscriber of an
//! organization gets every event, no organization sees another's, bad cursors say where to
//! resume.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use sms_carrier_sim::Incoming;
use sms_feed::store::feed::Position;
use sms_proto::v1::{FeedEvent, SubscribeRequest, SubscribeResponse};
use sms_testkit::{ACCOUNT_SID, ORG, Stack, USER, as_caller, sms};
use tonic::Streaming;
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";

async fn subscribe(
    stack: &Stack,
    org: &str,
    cursor: &str,
    from_start: bool,
) -> Result<Streaming<SubscribeResponse>, tonic::Status> {
    stack
        .events()
        .await
        .subscribe(as_caller(
            SubscribeRequest {
                cursor: cursor.into(),
                from_start,
            },
            org,
            USER,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Events until none comes for `quiet`.
async fn drain(stream: &mut Streaming<SubscribeResponse>, quiet: Duration) -> Vec<FeedEvent> {
    let mut out = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(quiet, stream.next()).await {
        out.push(next.unwrap().event.unwrap());
    }
    out
}

fn ids(events: &[FeedEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn send_and_finish(stack: &Stack, org: &str, from: &str, n: usize, tag: &str) {
    let mut client = stack.messaging().await;
    for k in 0..n {
        let mut request = sms(from, &format!("+120155502{k:02}"), &format!("{tag} {k}"));
        request.lead_id = format!("lead-{tag}-{k}");
        let id = client
            .send_message(as_caller(request, org, USER))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
            .id;
        sms_testkit::eventually(Duration::from_secs(30), "a final status", || {
            let mut client = client.clone();
            let id = id.clone();
            async move {
                let m = client
                    .get_message(as_caller(
                        sms_proto::v1::GetMessageRequest { id },
                        org,
                        USER,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .message
                    .unwrap();
                (m.status == sms_proto::v1::MessageStatus::Delivered as i32).then_some(())
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_disconnects_resumes_from_its_cursor_with_exactly_what_it_missed() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    send_and_finish(&stack, ORG, OURS, 5, "before").await;

    // Read part of the feed, then go away mid-stream.
    let mut first = subscribe(&stack, ORG, "", true).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(first.next().await.unwrap().unwrap().event.unwrap());
    }
    drop(first);
    let cursor = seen.last().unwrap().cursor.clone();

    // Meanwhile: more messages, a reply on the first lead's conversation, a STOP.
    send_and_finish(&stack, ORG, OURS, 5, "after").await;
    for (from, body, sid) in [
        (
            "+12015550200",
            "sounds good",
            "SMfeed00000000000000000000000000f1",
        ),
        ("+12015550201", "STOP", "SMfeed00000000000000000000000000f2"),
    ] {
        stack
            .sim
            .send_incoming(
                &stack.incoming_url(),
                ACCOUNT_SID,
                &Incoming {
                    from: from.into(),
                    to: OURS.into(),
                    body: body.into(),
                    sid: Some(sid.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // The whole feed, read in one go once the opt-out (written by its own consumer) is in.
    let everything =
        sms_testkit::eventually(Duration::from_secs(30), "the opt-out in the feed", || {
            let stack = &stack;
            async move {
                let mut all = subscribe(stack, ORG, "", true).await.unwrap();
                let events = drain(&mut all, Duration::from_secs(1)).await;
                events
                    .iter()
                    .any(|e| e.r#type == "optout.changed")
                    .then_some(events)
            }
        })
        .await;
    let mut resumed = subscribe(&stack, ORG, &cursor, false).await.unwrap();
    let rest = drain(&mut resumed, Duration::from_secs(1)).await;

    let mut joined = ids(&seen);
    joined.extend(ids(&rest));
    assert_eq!(
        joined,
        ids(&everything),
        "what was read plus what was missed"
    );
    let unique: HashSet<&String> = joined.iter().collect();
    assert_eq!(unique.len(), joined.len(), "no event twice");
    let types: HashSet<&str> = everything.iter().map(|e| e.r#type.as_str()).collect();
    for t in [
        "number.changed",
        "message.status",
        "message.inbound",
        "optout.changed",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    // The reply carries the lead of its conversation.
    let reply = everything
        .iter()
        .find_map(|e| match &e.event {
            Some(sms_proto::v1::feed_event::Event::InboundMessage(m))
                if m.body == "sounds good" =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(reply.lead_id, "lead-after-0");
    // Statuses say which message, lead and status.
    let delivered = everything
        .iter()
        .filter(|e| match &e.event {
            Some(sms_proto::v1::feed_event::Event::MessageStatus(s)) => {
                s.status == sms_proto::v1::MessageStatus::Delivered as i32
                    && s.lead_id.starts_with("lead-")
            }
            _ => false,
        })
        .count();
    assert_eq!(delivered, 10);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_event_of_its_organization_and_none_of_another() {
    const OTHER: &str = "org-other";
    const THEIRS: &str = "+12015550300";
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    stack.add_number_as(OTHER, USER, THEIRS).await;
    let mut ours_a = subscribe(&stack, ORG, "", false).await.unwrap();
    let mut ours_b = subscribe(&stack, ORG, "", false).await.unwrap();
    let mut theirs = subscribe(&stack, OTHER, "", false).await.unwrap();
    send_and_finish(&stack, ORG, OURS, 3, "ours").await;
    send_and_finish(&stack, OTHER, THEIRS, 2, "theirs").await;
    let a = drain(&mut ours_a, Duration::from_secs(1)).await;
    let b = drain(&mut ours_b, Duration::from_secs(1)).await;
    let t = drain(&mut theirs, Duration::from_secs(1)).await;
    assert!(!a.is_empty());
    assert_eq!(ids(&a), ids(&b), "both subscribers, every event");
    let lead = |e: &FeedEvent| match &e.event {
        Some(sms_proto::v1::feed_event::Event::MessageStatus(s)) => s.lead_id.clone(),
        _ => String::new(),
    };
    assert!(a.iter().all(|e| lead(e).starts_with("lead-ours")), "{a:?}");
    assert!(!t.is_empty());
    assert!(
        t.iter().all(|e| lead(e).starts_with("lead-theirs")),
        "{t:?}"
    );
    let a_ids: HashSet<String> = ids(&a).into_iter().collect();
    assert!(ids(&t).iter().all(|id| !a_ids.contains(id)));
    // A cursor of one organization's feed is unknown to another's.
    let status = subscribe(&stack, OTHER, &a[0].cursor, false)
        .await
        .unwrap_err();
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "CURSOR_UNKNOWN"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_that_are_malformed_unknown_or_too_old_say_where_to_resume() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    send_and_finish(&stack, ORG, OURS, 2, "old").await;
    let mut all = subscribe(&stack, ORG, "", true).await.unwrap();
    let events = drain(&mut all, Duration::from_secs(1)).await;
    assert!(events.len() >= 4, "{events:?}");

    let refused = |status: tonic::Status| {
        let info = status.get_details_error_info().unwrap();
        let from = info
            .metadata
            .get("resume_from")
            .cloned()
            .unwrap_or_default();
        (status.code(), info.reason, from)
    };
    for bad in ["not a cursor", "djIuMS4y", "\u{0}"] {
        let (code, reason, _) = refused(subscribe(&stack, ORG, bad, false).await.unwrap_err());
        assert_eq!(code, tonic::Code::InvalidArgument, "{bad:?}");
        assert!(
            matches!(reason.as_str(), "INVALID_CURSOR" | "INVALID_CHARACTER"),
            "{reason}"
        );
    }
    let unknown = sms_feed::feed::cursor(Position {
        tx: 1 << 40,
        seq: 5,
    });
    let (code, reason, from) = refused(subscribe(&stack, ORG, &unknown, false).await.unwrap_err());
    assert_eq!(
        (code, reason.as_str()),
        (tonic::Code::InvalidArgument, "CURSOR_UNKNOWN")
    );
    assert_eq!(
        from, "",
        "nothing pruned yet: the feed starts at its beginning"
    );

    // Prune the two oldest events: their cursors are now too old.
    let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    for e in &events[..2] {
        sqlx::query(
            "UPDATE composer.feed SET written_at = now() - interval '400 days' WHERE event_id = $1",
        )
        .bind(&e.id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let pruned =
        sms_feed::store::feed::prune(&pool, chrono::Utc::now() - chrono::Duration::days(30), 1000)
            .await
            .unwrap();
    assert_eq!(pruned, 2);
    let (code, reason, from) = refused(
        subscribe(&stack, ORG, &events[0].cursor, false)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (tonic::Code::OutOfRange, "CURSOR_EXPIRED")
    );
    assert_eq!(from, events[1].cursor, "resume right after the last pruned");
    // Resuming from there, or from the start, gives the rest.
    let mut rest = subscribe(&stack, ORG, &from, false).await.unwrap();
    let rest = drain(&mut rest, Duration::from_secs(1)).await;
    assert_eq!(ids(&rest), ids(&events[2..]));
    let mut start = subscribe(&stack, ORG, "", true).await.unwrap();
    assert_eq!(
        ids(&drain(&mut start, Duration::from_secs(1)).await),
        ids(&events[2..])
    );
    stack.shutdown().await;
}
