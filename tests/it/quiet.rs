//! Organization settings: quiet hours (held until the recipient's local window opens, replies
//! and opt-out confirmations exempt) and the daily cap on segments.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use sms_carrier_sim::Incoming;
use sms_proto::v1::{
    CancelMessageRequest, GetMessageRequest, GetSettingsRequest, GetUsageRequest, MessageStatus,
    QuietHours, SendMessageRequest, Settings, UpdateSettingsRequest,
};
use sms_testkit::{ACCOUNT_SID, Stack, as_caller, eventually, sms};
use tonic_types::StatusExt;

const USER: &str = "rep-1";

async fn set(stack: &Stack, org: &str, settings: Settings) -> Settings {
    stack
        .settings()
        .await
        .update_settings(as_caller(
            UpdateSettingsRequest {
                settings: Some(settings),
            },
            org,
            USER,
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
}

fn quiet(start: &str, end: &str) -> Settings {
    Settings {
        quiet_hours: Some(QuietHours {
            enabled: true,
            start: start.into(),
            end: end.into(),
            days: Vec::new(),
        }),
        daily_segment_cap: 0,
    }
}

fn instant(t: &prost_types::Timestamp) -> Timestamp {
    Timestamp::new(t.seconds, t.nanos).unwrap()
}

async fn send(
    stack: &Stack,
    org: &str,
    request: SendMessageRequest,
) -> Result<sms_proto::v1::SendMessageResponse, tonic::Status> {
    stack
        .messaging()
        .await
        .send_message(as_caller(request, org, USER))
        .await
        .map(tonic::Response::into_inner)
}

async fn message(stack: &Stack, org: &str, id: &str) -> sms_proto::v1::Message {
    stack
        .messaging()
        .await
        .get_message(as_caller(GetMessageRequest { id: id.into() }, org, USER))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

async fn wait_status(stack: &Stack, org: &str, id: &str, want: MessageStatus) {
    eventually(Duration::from_secs(60), "the message's status", || async {
        let m = message(stack, org, id).await;
        (m.status == want as i32).then_some(())
    })
    .await;
}

/// A sending window that opens a few seconds from now in `zone` and lasts an hour or until the
/// day ends (waits out the last seconds of a local day).
async fn window_opening_soon(zone: &str) -> (String, String, Timestamp) {
    let tz = TimeZone::get(zone).unwrap();
    loop {
        let now = Timestamp::now();
        let local = now.to_zoned_datetime(tz.clone());
        let t = local.time();
        let whole = jiff::civil::Time::new(t.hour(), t.minute(), t.second(), 0).unwrap();
        // Times past midnight are errors, not wrapped: the window must fit in the day.
        let start = whole.checked_add(5.seconds()).ok();
        let last = jiff::civil::Time::new(23, 59, 59, 0).unwrap();
        let end = start.map(|s| s.checked_add(1.hour()).unwrap_or(last));
        if let (Some(start), Some(end)) = (start, end)
            && end > start
        {
            let opens = local
                .date()
                .to_datetime(start)
                .to_zoned_datetime(tz.clone())
                .unwrap()
                .timestamp();
            return (start.to_string(), end.to_string(), opens);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_message_until_the_window_opens_in_new_york_and_los_angeles() {
    let stack = Stack::start().await;
    let cases = [
        ("org-ny", "+12125550100", "+12125550123", "America/New_York"),
        (
            "org-la",
            "+13105550100",
            "+13105550123",
            "America/Los_Angeles",
        ),
    ];
    let mut held = Vec::new();
    for (org, from, to, zone) in cases {
        stack.add_number_as(org, USER, from).await;
        let (start, end, opens) = window_opening_soon(zone).await;
        set(&stack, org, quiet(&start, &end)).await;
        let sent = send(&stack, org, sms(from, to, "hello from the sales team"))
            .await
            .unwrap();
        let m = sent.message.unwrap();
        assert_eq!(m.status, MessageStatus::Scheduled as i32, "{zone}: held");
        assert_eq!(
            instant(m.send_at.as_ref().unwrap()),
            opens,
            "{zone}: released at the window's start ({start} local)"
        );
        let note = sent
            .notes
            .iter()
            .find(|n| n.contains("quiet hours"))
            .unwrap_or_else(|| panic!("{zone}: no note in {:?}", sent.notes));
        assert!(note.contains(zone), "{note}");
        let history = message(&stack, org, &m.id).await.history;
        assert!(
            history[0].detail.contains("held for quiet hours"),
            "{history:?}"
        );
        held.push((org, to, m.id, opens));
    }
    // A validity the caller asked for runs while quiet hours hold the message: one that ends
    // before the window opens is never sent, and fails as expired.
    let (org, from, _, _) = cases[0];
    let mut short = sms(from, "+12125550124", "only worth it within 2 seconds");
    short.validity_seconds = Some(2);
    let sent = send(&stack, org, short).await.unwrap();
    assert!(
        sent.notes.iter().any(|n| n.contains("fail as expired")),
        "{:?}",
        sent.notes
    );
    let short = sent.message.unwrap();
    assert_eq!(short.status, MessageStatus::Scheduled as i32);
    wait_status(&stack, org, &short.id, MessageStatus::Failed).await;
    assert_eq!(message(&stack, org, &short.id).await.reason, "expired");
    assert!(
        stack.sim.requests().iter().all(|r| r.to != "+12125550124"),
        "never handed to the carrier"
    );
    for (org, to, id, opens) in held {
        wait_status(&stack, org, &id, MessageStatus::Delivered).await;
        let call = stack
            .sim
            .requests()
            .into_iter()
            .find(|r| r.to == to)
            .unwrap();
        let called =
            Timestamp::from_millisecond(i64::try_from(call.received_at_ms).unwrap()).unwrap();
        assert!(
            called >= opens,
            "{to}: the carrier was called at {called}, before the window opened at {opens}"
        );
    }
    stack.shutdown().await;
}

/// Quiet hours that are closed now in New York and stay closed for at least an hour.
fn closed_in_new_york() -> Settings {
    let local = Timestamp::now().to_zoned_datetime(TimeZone::get("America/New_York").unwrap());
    if local.hour() < 12 {
        quiet("13:00", "23:00")
    } else {
        quiet("00:00", "01:00")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_opt_out_confirmations_are_never_held() {
    const ORG: &str = "org-quiet";
    const OURS: &str = "+12125550100";
    let stack = Stack::start().await;
    stack.add_number_as(ORG, USER, OURS).await;
    set(&stack, ORG, closed_in_new_york()).await;

    // A new contact: held.
    let cold = send(&stack, ORG, sms(OURS, "+12125550131", "first contact"))
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(cold.status, MessageStatus::Scheduled as i32);
    // A message scheduled inside quiet hours moves to the window's start.
    let mut later = sms(OURS, "+12125550132", "scheduled at night");
    let asked = Timestamp::now().checked_add(2.minutes()).unwrap();
    later.send_at = Some(prost_types::Timestamp {
        seconds: asked.as_second(),
        nanos: 0,
    });
    let moved = send(&stack, ORG, later).await.unwrap();
    let moved_at = instant(moved.message.unwrap().send_at.as_ref().unwrap());
    assert!(moved_at > asked, "moved from {asked} to {moved_at}");
    assert!(moved.notes.iter().any(|n| n.contains("quiet hours")));

    // A contact who just texted gets the reply now.
    let replying = "+12125550133";
    let texts = |from: &'static str, body: &'static str| {
        let message = Incoming {
            from: from.into(),
            to: OURS.into(),
            body: body.into(),
            ..Default::default()
        };
        let (sim, url) = (stack.sim.clone(), stack.incoming_url());
        async move {
            sim.send_incoming(&url, ACCOUNT_SID, &message)
                .await
                .unwrap();
        }
    };
    texts(replying, "is it still available?").await;
    eventually(Duration::from_secs(30), "the inbound message", || async {
        let conversation = stack
            .messaging()
            .await
            .get_conversation(as_caller(
                sms_proto::v1::GetConversationRequest {
                    our_number: OURS.into(),
                    contact_number: replying.into(),
                    ..Default::default()
                },
                ORG,
                USER,
            ))
            .await
            .unwrap()
            .into_inner();
        (!conversation.messages.is_empty()).then_some(())
    })
    .await;
    let reply = send(&stack, ORG, sms(OURS, replying, "yes it is"))
        .await
        .unwrap();
    assert!(reply.notes.iter().all(|n| !n.contains("quiet hours")));
    let reply = reply.message.unwrap();
    assert_ne!(reply.status, MessageStatus::Scheduled as i32);
    wait_status(&stack, ORG, &reply.id, MessageStatus::Delivered).await;

    // STOP at night: the confirmation goes out at once.
    let stopping = "+12125550134";
    texts(stopping, "STOP").await;
    eventually(
        Duration::from_secs(30),
        "the opt-out confirmation",
        || async {
            stack
                .sim
                .requests()
                .into_iter()
                .any(|r| r.to == stopping && r.http_status == 201)
                .then_some(())
        },
    )
    .await;
    // The held ones are still held.
    for id in [&cold.id] {
        assert_eq!(
            message(&stack, ORG, id).await.status,
            MessageStatus::Scheduled as i32
        );
    }
    assert!(
        stack
            .sim
            .requests()
            .iter()
            .all(|r| r.to != "+12125550131" && r.to != "+12125550132")
    );
    stack.shutdown().await;
}

async fn today(stack: &Stack, org: &str) -> sms_proto::v1::DailySegments {
    stack
        .messaging()
        .await
        .get_usage(as_caller(GetUsageRequest::default(), org, USER))
        .await
        .unwrap()
        .into_inner()
        .today
        .unwrap()
}

fn cap(segments: i64) -> Settings {
    Settings {
        daily_segment_cap: segments,
        ..Settings::default()
    }
}

/// A body of `n` GSM-7 segments.
fn segments(n: usize) -> String {
    "x".repeat(153 * n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_refuses_what_goes_over_it_exactly_even_under_concurrency() {
    const ORG: &str = "org-cap";
    const OURS: &str = "+12125550100";
    let stack = Stack::start().await;
    stack.add_number_as(ORG, USER, OURS).await;
    // Without a cap, today's figure is read from the messages; a cap set later counts what
    // was already accepted for the day.
    send(&stack, ORG, sms(OURS, "+12125550141", &segments(2)))
        .await
        .unwrap();
    let t = today(&stack, ORG).await;
    assert_eq!((t.segments, t.cap), (2, 0));
    set(&stack, ORG, cap(5)).await;
    send(&stack, ORG, sms(OURS, "+12125550142", &segments(2)))
        .await
        .unwrap();
    let refused = send(&stack, ORG, sms(OURS, "+12125550143", &segments(2)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let info = refused.get_details_error_info().unwrap();
    assert_eq!(info.reason, "DAILY_CAP_REACHED");
    assert_eq!(info.metadata["cap"], "5");
    assert_eq!(info.metadata["used"], "4");
    assert_eq!(info.metadata["segments"], "2");
    assert!(refused.message().contains("daily cap of 5"), "{refused:?}");
    // One segment still fits.
    send(&stack, ORG, sms(OURS, "+12125550143", &segments(1)))
        .await
        .unwrap();
    let t = today(&stack, ORG).await;
    assert_eq!((t.segments, t.cap), (5, 5));

    // A scheduled message counts on its day, and gives its segments back when canceled.
    let raised = cap(8);
    set(&stack, ORG, raised).await;
    let now = jiff::Timestamp::now();
    let due = now.checked_add(2.minutes()).unwrap();
    let utc_day = |t: Timestamp| t.to_zoned_datetime(TimeZone::UTC).date();
    if utc_day(due) != utc_day(now) {
        // Too close to midnight (UTC) for "today" to stay put: wait for the new day.
        tokio::time::sleep(Duration::from_secs(125)).await;
    }
    let mut later = sms(OURS, "+12125550144", &segments(3));
    let due = jiff::Timestamp::now().checked_add(2.minutes()).unwrap();
    later.send_at = Some(prost_types::Timestamp {
        seconds: due.as_second(),
        nanos: 0,
    });
    let used_before = today(&stack, ORG).await.segments;
    let scheduled = send(&stack, ORG, later).await.unwrap().message.unwrap();
    assert_eq!(today(&stack, ORG).await.segments, used_before + 3);
    stack
        .messaging()
        .await
        .cancel_message(as_caller(
            CancelMessageRequest {
                id: scheduled.id.clone(),
            },
            ORG,
            USER,
        ))
        .await
        .unwrap();
    assert_eq!(today(&stack, ORG).await.segments, used_before);

    // 40 sends at once against room for 10 more segments: exactly 10 accepted.
    let room = cap(i64::try_from(used_before).unwrap() + 10);
    set(&stack, ORG, room).await;
    let client = stack.messaging().await;
    let calls: Vec<_> = (0..40)
        .map(|k| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .send_message(as_caller(
                        sms(OURS, &format!("+121255502{k:02}"), "one segment"),
                        ORG,
                        USER,
                    ))
                    .await
                    .map(|_| ())
                    .map_err(|s| s.get_details_error_info().unwrap().reason)
            })
        })
        .collect();
    let mut accepted = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(reason) => assert_eq!(reason, "DAILY_CAP_REACHED"),
        }
    }
    assert_eq!(accepted, 10);
    assert_eq!(today(&stack, ORG).await.segments, used_before + 10);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_default_round_trip_and_refuse_what_cannot_be_used() {
    const ORG: &str = "org-settings";
    let stack = Stack::start().await;
    let mut client = stack.settings().await;
    let defaults = client
        .get_settings(as_caller(GetSettingsRequest {}, ORG, USER))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    let q = defaults.quiet_hours.clone().unwrap();
    assert!(!q.enabled);
    assert_eq!((q.start.as_str(), q.end.as_str()), ("08:00", "21:00"));
    assert_eq!(q.days.len(), 7);
    assert_eq!(defaults.daily_segment_cap, 0);

    let mut wanted = quiet("09:30", "17:00");
    wanted.quiet_hours.as_mut().unwrap().days = vec!["mon".into(), "Friday".into()];
    wanted.daily_segment_cap = 1000;
    let stored = set(&stack, ORG, wanted).await;
    let q = stored.quiet_hours.clone().unwrap();
    assert_eq!(q.days, ["mon", "fri"]);
    assert_eq!(stored.daily_segment_cap, 1000);
    let read = client
        .get_settings(as_caller(GetSettingsRequest {}, ORG, USER))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(read, stored);

    let bad = |start: &str, end: &str, days: &[&str], cap: i64| Settings {
        quiet_hours: Some(QuietHours {
            enabled: true,
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|d| (*d).to_owned()).collect(),
        }),
        daily_segment_cap: cap,
    };
    for (settings, reason, field) in [
        (
            bad("8am", "21:00", &[], 0),
            "INVALID_QUIET_HOURS_TIME",
            "quiet_hours.start",
        ),
        (
            bad("08:00", "24:00", &[], 0),
            "INVALID_QUIET_HOURS_TIME",
            "quiet_hours.end",
        ),
        (
            bad("21:00", "08:00", &[], 0),
            "QUIET_HOURS_BACKWARDS",
            "quiet_hours.end",
        ),
        (
            bad("08:00", "21:00", &["someday"], 0),
            "INVALID_QUIET_HOURS_DAY",
            "quiet_hours.days",
        ),
        (
            bad("08:00", "21:00", &[], -1),
            "INVALID_DAILY_CAP",
            "daily_segment_cap",
        ),
        (
            bad("08:00", "21:00", &[], i64::MAX),
            "INVALID_DAILY_CAP",
            "daily_segment_cap",
        ),
    ] {
        let status = client
            .update_settings(as_caller(
                UpdateSettingsRequest {
                    settings: Some(settings),
                },
                ORG,
                USER,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, reason);
        assert_eq!(info.metadata["field"], field);
    }
    // Nothing refused was stored.
    let after = client
        .get_settings(as_caller(GetSettingsRequest {}, ORG, USER))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(after, stored);
    stack.shutdown().await;
}
