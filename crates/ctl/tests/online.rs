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
            .env("SMS_ORG", ORG)
            .env("SMS_USER", USER)
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
    let shown = ctl.ok(&["get", &message_id]).await;
    assert!(
        shown.contains("delivered") && shown.contains("Hi Ana — Sam"),
        "{shown}"
    );
    assert!(
        shown.contains("accepted") && shown.contains("queued") && shown.contains("sent"),
        "{shown}"
    );

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
    std::fs::remove_dir_all(dir).unwrap();
    stack.shutdown().await;
}
