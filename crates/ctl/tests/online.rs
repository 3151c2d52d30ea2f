//! The gRPC commands, driven through the real `smsctl` binary against every service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use sms_testkit::{ORG, Stack, USER};

struct Ctl<'a> {
    stack: &'a Stack,
}

impl Ctl<'_> {
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_smsctl"));
        cmd.args(args)
            .env("SMS_ENDPOINT", &self.stack.grpc_url)
            .env("SMS_OPTOUT_ENDPOINT", &self.stack.optout_url)
            .env("SMS_SIM_URL", &self.stack.sim_url)
            .env("SMS_SIM_ACCOUNT_SID", sms_testkit::ACCOUNT_SID)
            .env("SMS_SIM_AUTH_TOKEN", sms_testkit::AUTH_TOKEN)
            .env("SMS_ORG", ORG)
            .env("SMS_USER", USER)
            .env("SMS_ROLE", "admin")
            .env_remove("SMS_TOKEN");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "smsctl {args:?} failed: {err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_templates_and_send_with_a_template() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    let added = ctl.ok(&["numbers", "add", "+12015550100"]).await;
    assert!(
        added.contains("+12015550100") && added.contains("sms"),
        "{added}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["numbers", "list", "--json"]).await).unwrap();
    assert_eq!(listed[0]["number"], "+12015550100");

    let id = ctl
        .ok(&[
            "templates",
            "create",
            "--name",
            "hello",
            "--body",
            "Hi {{ contact.first_name }} — {{ user.first_name }}",
        ])
        .await
        .trim()
        .to_owned();
    let list = ctl.ok(&["templates", "list"]).await;
    assert!(list.contains(&id) && list.contains("hello"), "{list}");

    let dir = std::env::temp_dir().join(format!("smsctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let context = dir.join("context.json");
    std::fs::write(
        &context,
        r#"{"contact": {"first_name": "Ana"}, "user": {"first_name": "Sam"}}"#,
    )
    .unwrap();
    let preview: serde_json::Value = serde_json::from_str(
        &ctl.ok(&[
            "templates",
            "preview",
            "--id",
            &id,
            "--context",
            context.to_str().unwrap(),
            "--json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(preview["body"], "Hi Ana — Sam");
    assert_eq!(preview["encoding"], "UCS-2");
    assert_eq!(preview["smart_encoding"], "GSM-7");

    let message_id = ctl
        .ok(&[
            "send",
            "--to",
            "+12015550123",
            "--template",
            &id,
            "--context",
            context.to_str().unwrap(),
        ])
        .await
        .trim()
        .to_owned();
    let mut client = stack.messaging().await;
    stack.wait_final(&mut client, &message_id).await;
    // The carrier's callbacks and the dispatcher's statuses travel separately: the last facts
    // of the history may land a moment after the final status.
    let ctl_ref = &ctl;
    let shown = sms_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the whole history",
        || {
            let id = message_id.clone();
            async move {
                let shown = ctl_ref.ok(&["get", &id]).await;
                (shown.contains("queued") && shown.contains("sent")).then_some(shown)
            }
        },
    )
    .await;
    assert!(
        shown.contains("delivered") && shown.contains("Hi Ana — Sam"),
        "{shown}"
    );
    assert!(shown.contains("accepted"), "{shown}");

    // Refusals are printed with their reason code and fail the command.
    let (code, _, err) = ctl
        .run(&[
            "templates",
            "create",
            "--name",
            "x",
            "--body",
            "{{ lead.nope }}",
        ])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("[TEMPLATE_UNKNOWN_TAG]"), "{err}");
    let (code, _, err) = ctl
        .run(&["send", "--to", "+12015550123", "--body", ""])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("[BODY_EMPTY]"), "{err}");
    let (code, _, err) = ctl.run(&["--endpoint", "http://127.0.0.1:1", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the platform"), "{err}");
    // MMS: attach a picture, see it on the message, download it back unchanged.
    let picture = dir.join("photo.png");
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.resize(30_000, 42);
    std::fs::write(&picture, &png).unwrap();
    let mms_id = ctl
        .ok(&[
            "send",
            "--to",
            "+12015550123",
            "--body",
            "the photo",
            "--attach",
            picture.to_str().unwrap(),
        ])
        .await
        .trim()
        .to_owned();
    let shown = ctl.ok(&["get", &mms_id]).await;
    let line = shown
        .lines()
        .find(|l| l.starts_with("Attachment:"))
        .unwrap();
    assert!(
        line.contains("image/png") && line.contains("30000 bytes"),
        "{line}"
    );
    let media_id = line.split_whitespace().nth(1).unwrap();
    let copy = dir.join("copy.png");
    ctl.ok(&["media", media_id, "-o", copy.to_str().unwrap()])
        .await;
    assert_eq!(std::fs::read(&copy).unwrap(), png);
    std::fs::remove_dir_all(dir).unwrap();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_cancel_conversation_inbox_and_opt_outs() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    ctl.ok(&["numbers", "add", "+12015550100"]).await;
    // Send later at a local time, then cancel it.
    let local = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT09:00")
        .to_string();
    let id = ctl
        .ok(&[
            "send",
            "--to",
            "+12015550123",
            "--body",
            "later",
            "--local",
            &local,
            "--tz",
            "America/New_York",
        ])
        .await;
    let (code, _, err) = ctl
        .run(&[
            "send",
            "--to",
            "+12015550123",
            "--body",
            "x",
            "--local",
            &local,
            "--tz",
            "Nowhere/Land",
        ])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("[UNKNOWN_TIME_ZONE]"), "{err}");
    let id = id.trim().to_owned();
    let shown = ctl.ok(&["get", &id]).await;
    assert!(shown.contains("scheduled"), "{shown}");
    let canceled = ctl.ok(&["cancel", &id]).await;
    assert!(canceled.contains("canceled"), "{canceled}");
    let (code, _, err) = ctl.run(&["cancel", &id]).await;
    assert_eq!(code, 1);
    assert!(err.contains("[NOT_SCHEDULED]"), "{err}");

    // A reply shows on the conversation and in the inbox; done hides it.
    let sid = stack
        .sim
        .send_incoming(
            &stack.incoming_url(),
            sms_testkit::ACCOUNT_SID,
            &sms_carrier_sim::Incoming {
                from: "+12015550123".into(),
                to: "+12015550100".into(),
                body: "Thanks, talk soon".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sid.0, 200);
    let inbox =
        sms_testkit::eventually(std::time::Duration::from_secs(10), "the reply", || async {
            let out = ctl.ok(&["inbox"]).await;
            out.contains("Thanks, talk soon").then_some(out)
        })
        .await;
    let inbound_id = inbox.split_whitespace().next().unwrap().to_owned();
    let convo = ctl
        .ok(&[
            "conversation",
            "--ours",
            "+12015550100",
            "--contact",
            "+12015550123",
        ])
        .await;
    assert!(convo.contains("Thanks, talk soon"), "{convo}");
    ctl.ok(&["done", &inbound_id]).await;
    assert!(!ctl.ok(&["inbox"]).await.contains("Thanks"));
    assert!(ctl.ok(&["inbox", "--all"]).await.contains("[done]"));

    // Opt-outs by hand, and the send refused with its reason.
    let added = ctl
        .ok(&[
            "optouts",
            "add",
            "+12015550124",
            "--reason",
            "asked by e-mail",
        ])
        .await;
    assert!(
        added.contains("opted out") && added.contains("asked by e-mail"),
        "{added}"
    );
    let refused =
        sms_testkit::eventually(std::time::Duration::from_secs(5), "the refusal", || async {
            let (code, _, err) = ctl
                .run(&["send", "--to", "+12015550124", "--body", "hi"])
                .await;
            (code == 1 && err.contains("[OPTED_OUT]")).then_some(err)
        })
        .await;
    assert!(refused.contains("opted out"), "{refused}");
    let check = ctl.ok(&["optouts", "check", "+12015550124"]).await;
    assert!(check.contains("manual"), "{check}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_quiet_hours_and_the_daily_cap() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    let shown = ctl.ok(&["settings", "show"]).await;
    assert!(shown.contains("quiet hours: off"), "{shown}");
    assert!(shown.contains("daily cap:   none"), "{shown}");
    let set = ctl
        .ok(&[
            "settings",
            "set",
            "--quiet-hours",
            "on",
            "--window-start",
            "09:00",
            "--window-days",
            "mon,tue,wed,thu,fri",
            "--daily-cap",
            "2",
        ])
        .await;
    assert!(
        set.contains("quiet hours: on (sends 09:00–21:00 on mon,tue,wed,thu,fri"),
        "{set}"
    );
    assert!(set.contains("daily cap:   2 segments"), "{set}");
    // Only what is given changes.
    ctl.ok(&["settings", "set", "--quiet-hours", "off"]).await;
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["settings", "show", "--json"]).await).unwrap();
    assert_eq!(json["quiet_hours"]["enabled"], false);
    assert_eq!(json["quiet_hours"]["start"], "09:00");
    assert_eq!(json["daily_segment_cap"], 2);
    // A refused change says why and names the field.
    let (code, _, err) = ctl
        .run(&["settings", "set", "--window-start", "22:00"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("QUIET_HOURS_BACKWARDS"), "{err}");
    // The cap: one segment, another, then refused; usage shows today against it.
    ctl.ok(&["numbers", "add", "+12015550100"]).await;
    for to in ["+12015550123", "+12015550124"] {
        ctl.ok(&["send", "--from", "+12015550100", "--to", to, "--body", "hi"])
            .await;
    }
    let (code, _, err) = ctl
        .run(&[
            "send",
            "--from",
            "+12015550100",
            "--to",
            "+12015550125",
            "--body",
            "hi",
        ])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("DAILY_CAP_REACHED"), "{err}");
    let usage = ctl.ok(&["usage"]).await;
    assert!(
        usage.contains("2 of 2 segment(s) of the daily cap"),
        "{usage}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_the_feed_and_resume_from_a_cursor() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    ctl.ok(&["numbers", "add", "+12015550100"]).await;
    let id = ctl
        .ok(&[
            "send",
            "--from",
            "+12015550100",
            "--to",
            "+12015550123",
            "--body",
            "hi",
        ])
        .await;
    let id = id.trim().to_owned();
    let mut events: Vec<serde_json::Value> = Vec::new();
    for _ in 0..100 {
        events = ctl
            .ok(&["events", "--json"])
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let delivered = events.iter().any(|e| {
            e["type"] == "message.status"
                && e["data"]["message_id"] == id.as_str()
                && e["data"]["status"] == "delivered"
        });
        if delivered {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(events[0]["type"], "number.changed", "{events:?}");
    assert!(events.len() >= 3, "{events:?}");
    // After the first event's cursor: the rest, as text lines led by their cursors.
    let cursor = events[0]["cursor"].as_str().unwrap();
    let rest = ctl.ok(&["events", "--from", cursor]).await;
    assert_eq!(rest.lines().count(), events.len() - 1, "{rest}");
    assert!(rest.lines().all(|l| !l.starts_with(cursor)), "{rest}");
    let (code, _, err) = ctl.run(&["events", "--from", "nonsense"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("INVALID_CURSOR"), "{err}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_answers_by_hand_and_by_script() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    ctl.ok(&["numbers", "add", "+12015550100"]).await;
    // By hand, with a picture.
    let png = std::env::temp_dir().join(format!("reply-{}.png", std::process::id()));
    std::fs::write(
        &png,
        [
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ],
    )
    .unwrap();
    let sid = ctl
        .ok(&[
            "sim",
            "reply",
            "--from",
            "+12015550123",
            "--to",
            "+12015550100",
            "--body",
            "is it still available?",
            "--media",
            png.to_str().unwrap(),
        ])
        .await;
    assert!(sid.trim().starts_with("SM"), "{sid}");
    let conversation = sms_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the reply with its picture",
        || async {
            let c = stack.conversation("+12015550100", "+12015550123").await;
            c.iter()
                .any(|m| m.body == "is it still available?" && m.attachments.len() == 1)
                .then_some(c)
        },
    )
    .await;
    assert_eq!(conversation.len(), 1);
    let inbox = ctl.ok(&["inbox"]).await;
    assert!(inbox.contains("is it still available?"), "{inbox}");
    // By script: a contact who answers messages that ask something.
    stack.sim.update(|b| {
        b.auto_reply = Some(sms_carrier_sim::AutoReply {
            text: "Sounds good".into(),
            when_contains: Some("tomorrow?".into()),
            delay: std::time::Duration::from_millis(50),
        });
    });
    for body in ["Yes it is. Can you come by tomorrow?", "Thanks!"] {
        ctl.ok(&[
            "send",
            "--from",
            "+12015550100",
            "--to",
            "+12015550123",
            "--body",
            body,
        ])
        .await;
    }
    sms_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the scripted answer",
        || async {
            stack
                .conversation("+12015550100", "+12015550123")
                .await
                .iter()
                .any(|m| m.body == "Sounds good")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let answers = stack
        .conversation("+12015550100", "+12015550123")
        .await
        .iter()
        .filter(|m| m.body == "Sounds good")
        .count();
    assert_eq!(answers, 1, "only the message that matched was answered");
    // Nobody to deliver to: said so.
    let (code, _, err) = ctl
        .run(&[
            "sim",
            "reply",
            "--from",
            "+12015550123",
            "--to",
            "+12015550100",
        ])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("a body or an attachment is required"), "{err}");
    let _ = std::fs::remove_file(png);
    stack.shutdown().await;
}

fn secret_of(added: &str) -> String {
    added
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap()
        .to_owned()
}

/// A loopback endpoint that answers 200 and keeps the bodies it got.
async fn hook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_add_list_attempts_replay_rotate_disable_delete() {
    let (host, got) = hook_receiver().await;
    let stack = Stack::start_with(sms_testkit::Options {
        fetch_allow_private: vec![host.clone()],
        ..sms_testkit::Options::default()
    })
    .await;
    let ctl = Ctl { stack: &stack };
    let url = format!("http://{host}/hook");
    let added = ctl
        .ok(&["webhooks", "add", &url, "--events", "number.changed"])
        .await;
    assert!(added.contains("secret: whsec_"), "{added}");
    let id = added.split_whitespace().next().unwrap().to_owned();
    // Refusals say why.
    let (code, _, err) = ctl.run(&["webhooks", "add", &url]).await;
    assert_ne!(code, 0);
    assert!(err.contains("WEBHOOK_ENDPOINT_EXISTS"), "{err}");
    let (code, _, err) = ctl
        .run(&[
            "webhooks",
            "add",
            "https://example.com/x",
            "--events",
            "sms.sent",
        ])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("UNKNOWN_EVENT_TYPE"), "{err}");
    let (code, _, err) = ctl
        .run(&["webhooks", "add", "http://169.254.169.254/"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("INVALID_WEBHOOK_URL"), "{err}");

    // The simulator's development endpoint stands in for the CRM's.
    let sim_hooks = format!("{}/_sim/hooks", stack.sim_url);
    let sim_added = ctl.ok(&["webhooks", "add", &sim_hooks]).await;
    let sim_secret = secret_of(&sim_added);
    let sim_id = sim_added.split_whitespace().next().unwrap().to_owned();

    ctl.ok(&["numbers", "add", "+12015550100"]).await;
    let mut received = String::new();
    for _ in 0..100 {
        received = ctl.ok(&["sim", "hooks", "--secret", &sim_secret]).await;
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        received.contains("number.changed") && received.contains("signature ok"),
        "{received}"
    );
    // Another secret's signature is not this one: said so, and the exit status says it too.
    let (code, out, _) = ctl
        .run(&["sim", "hooks", "--secret", &secret_of(&added)])
        .await;
    assert_ne!(code, 0);
    assert!(out.contains("SIGNATURE BAD"), "{out}");
    ctl.ok(&["webhooks", "delete", &sim_id]).await;

    let mut attempts = String::new();
    for _ in 0..100 {
        attempts = ctl.ok(&["webhooks", "attempts", &id, "--json"]).await;
        if !attempts.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first: serde_json::Value = serde_json::from_str(attempts.lines().next().unwrap()).unwrap();
    assert_eq!(first["event_type"], "number.changed", "{attempts}");
    assert_eq!(first["http_status"], 200);
    assert_eq!(first["outcome"], "delivered");
    let event = first["event_id"].as_str().unwrap().to_owned();
    assert_eq!(got.lock().unwrap().len(), 1);
    let body: serde_json::Value = serde_json::from_str(&got.lock().unwrap()[0]).unwrap();
    assert_eq!(body["data"]["number"], "+12015550100");

    assert!(
        ctl.ok(&["webhooks", "replay", &id, "--event", &event])
            .await
            .contains("1 deliveries scheduled")
    );
    for _ in 0..100 {
        if got.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got.lock().unwrap().len(), 2);
    let text = ctl.ok(&["webhooks", "attempts", &id]).await;
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains("HTTP 200")), "{text}");

    let rotated = ctl.ok(&["webhooks", "rotate", &id]).await;
    assert!(rotated.contains("secret: whsec_"), "{rotated}");
    assert!(
        ctl.ok(&["webhooks", "disable", &id])
            .await
            .contains("disabled (disabled by a caller)")
    );
    let listed = ctl.ok(&["webhooks", "list"]).await;
    assert!(
        listed.contains(&url) && listed.contains("disabled"),
        "{listed}"
    );
    assert!(
        ctl.ok(&["webhooks", "enable", &id])
            .await
            .contains("enabled")
    );
    ctl.ok(&["webhooks", "delete", &id]).await;
    assert_eq!(ctl.ok(&["webhooks", "list"]).await, "");
    let (code, _, err) = ctl.run(&["webhooks", "delete", &id]).await;
    assert_ne!(code, 0);
    assert!(err.contains("WEBHOOK_ENDPOINT_NOT_FOUND"), "{err}");
    stack.shutdown().await;
}

/// `numbers search`, `rent`, `import` and `release`, readable and `--json`, through the
/// binary: the voice-only warning, a rented number that receives, a refusal's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_search_rent_import_release() {
    let stack = Stack::start().await;
    let ctl = Ctl { stack: &stack };
    let found = ctl
        .ok(&["numbers", "search", "US", "--area-code", "415"])
        .await;
    let first = found.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("+1415") && first.contains("[sms,mms,voice]"),
        "{found}"
    );
    assert!(first.contains("San Francisco, CA"), "{first}");
    let number = first.split_whitespace().next().unwrap().to_owned();

    let (code, out, err) = ctl.run(&["numbers", "search", "DE"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("VOICE ONLY"), "{out}");
    assert!(
        err.contains("warning: only voice-only local numbers"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["numbers", "search", "DE", "--json"]).await).unwrap();
    assert_eq!(json["voice_only"], true);
    assert_eq!(json["numbers"][0]["sms_capable"], false);
    let voice = json["numbers"][0]["number"].as_str().unwrap().to_owned();

    let rented = ctl.ok(&["numbers", "rent", &number]).await;
    assert!(
        rented.contains(&number) && rented.contains("rented"),
        "{rented}"
    );
    let sid = ctl
        .ok(&[
            "sim",
            "reply",
            "--from",
            "+14155550111",
            "--to",
            &number,
            "--body",
            "hi",
        ])
        .await;
    assert!(sid.trim().starts_with("SM"), "{sid}");

    let (code, _, err) = ctl.run(&["numbers", "rent", &voice]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("VOICE_ONLY_NUMBER") && err.contains("allow_voice_only"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &ctl.ok(&["numbers", "rent", &voice, "--allow-voice-only", "--json"])
            .await,
    )
    .unwrap();
    assert_eq!(json["number"]["sms_capable"], false);
    assert_eq!(json["number"]["source"], "rented");
    assert!(json["warnings"][0].as_str().unwrap().contains("voice-only"));

    let gb = ctl
        .ok(&["numbers", "search", "GB", "--type", "mobile"])
        .await;
    let mobile = gb.split_whitespace().next().unwrap().to_owned();
    let (code, _, err) = ctl.run(&["numbers", "import", &mobile]).await;
    assert_ne!(code, 0);
    assert!(err.contains("NUMBER_NOT_AT_CARRIER"), "{err}");
    stack
        .sim
        .give_number(sms_testkit::ACCOUNT_SID, &mobile)
        .unwrap();
    let imported: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["numbers", "import", &mobile, "--json"]).await).unwrap();
    assert_eq!(imported["number"]["source"], "imported");
    assert_eq!(imported["number"]["mms_capable"], false);

    let released: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["numbers", "release", &number, "--json"]).await).unwrap();
    assert_eq!(released["number"], number.as_str());
    assert!(stack.sim.held_number(&number).is_none());
    let (code, _, err) = ctl
        .run(&["numbers", "search", "US", "--area-code", "41"])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("INVALID_AREA_CODE"), "{err}");
    stack.shutdown().await;
}
