//! NATS with credentials: a service connects with its own, a publish outside a user's
//! permissions is refused by the server (and never stored), and a service given wrong
//! credentials exits at once with a message naming them, instead of retrying.

use std::time::{Duration, Instant};

use sms_bus::{Bus, BusConfig, BusError, NatsAuth};
use sms_testkit::cluster::{Proc, Scratch, free_port, nats_server};

/// A nats-server with JetStream and two users: `service` may do anything, `limited` may
/// publish nothing under the `locked` namespace.
fn server(dir: &Scratch) -> (Proc, u16) {
    let port = free_port();
    let config = format!(
        r#"
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{store}" }}
authorization {{
  users = [
    {{ user: service, password: "s3cret-service" }}
    {{ user: limited, password: "s3cret-limited",
      permissions: {{ publish: {{ deny: ["locked.>"] }} }} }}
  ]
}}
"#,
        store = dir.path().join("js").display()
    );
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::new(
        "nats-auth",
        nats_server(),
        vec!["-c".into(), path.display().to_string()],
        Vec::new(),
        dir.path(),
    );
    proc.start();
    (proc, port)
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events in the namespace's events stream.
async fn stored(bus: &Bus) -> u64 {
    bus.jetstream()
        .get_stream(bus.subjects().events_stream())
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

fn config(port: u16, namespace: &str, user: &str, password: &str) -> BusConfig {
    let mut c = BusConfig::new(format!("nats://127.0.0.1:{port}"), namespace);
    c.auth = NatsAuth::UserPassword {
        user: user.into(),
        password: password.into(),
    };
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_checked_and_limited_by_permissions() {
    let dir = Scratch::new("sms-nats-auth");
    let (_server, port) = server(&dir);
    wait_port(port).await;

    // Its own credentials: connected, streams made, an event stored.
    let bus = Bus::connect(config(port, "locked", "service", "s3cret-service"))
        .await
        .expect("the service's credentials are accepted");
    let js = bus.jetstream();
    js.publish("locked.status.probe", "x".into())
        .await
        .unwrap()
        .await
        .expect("the service may publish in its namespace");

    // Wrong password: refused at once, naming whose credentials (never the secret).
    let started = Instant::now();
    let refused = Bus::connect(config(port, "locked", "service", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(refused, BusError::Refused { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(
        text.contains("\"service\"") && text.contains("SMS_NATS_USER"),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the password is not in the message: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused credentials are not retried for the start-up patience ({:?})",
        started.elapsed()
    );
    // No credentials at all: refused too.
    let mut anonymous = BusConfig::new(format!("nats://127.0.0.1:{port}"), "locked");
    anonymous.auth = NatsAuth::None;
    assert!(matches!(
        Bus::connect(anonymous).await.unwrap_err(),
        BusError::Refused { .. }
    ));

    // A user without publish rights on the namespace: the server refuses the publish, and
    // nothing reaches the stream.
    let limited = async_nats::ConnectOptions::new()
        .user_and_password("limited".into(), "s3cret-limited".into())
        .connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let limited_js = async_nats::jetstream::new(limited.clone());
    let subject = "locked.status.forged".to_owned();
    let before = stored(&bus).await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        limited_js
            .publish(subject.clone(), "forged".into())
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "a publish outside the user's permissions was stored: {outcome:?}"
    );
    let after = stored(&bus).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_wrong_credentials_exits_at_once_saying_whose() {
    let dir = Scratch::new("sms-nats-auth-svc");
    let (_server, port) = server(&dir);
    wait_port(port).await;
    let binary = sms_testkit::cluster::service_binary("sms-scheduler");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .env("SMS_NATS_URL", format!("nats://127.0.0.1:{port}"))
            .env("SMS_NATS_USER", "scheduler")
            .env("SMS_NATS_PASSWORD", "not-the-password")
            .env(
                "SMS_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/sms_natsauth",
            )
            .env("SMS_DEV_MODE", "true")
            .env("SMS_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the credentials of user \"scheduler\""),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// The deploy configuration's shape: a nats-server whose users are the ones
/// `sms_bus::permissions` generates (one per service, each allowed only its own subjects and
/// its own consumers' JetStream calls), plus an admin for the test's assertions.
fn per_service_server(dir: &Scratch, namespace: &str) -> (Proc, u16) {
    let port = free_port();
    let subjects = sms_bus::Subjects::new(namespace);
    let users = sms_bus::permissions::authorization(
        &subjects,
        |service| format!("\"pw-{}\"", service.name()),
        &[r#"{ user: admin, password: "pw-admin" }"#.to_owned()],
    );
    let config = format!(
        "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{store}\" }}\n{users}",
        store = dir.path().join("js").display()
    );
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, config).unwrap();
    let mut proc = Proc::new(
        "nats-users",
        nats_server(),
        vec!["-c".into(), path.display().to_string()],
        Vec::new(),
        dir.path(),
    );
    proc.start();
    (proc, port)
}

fn user(name: &str) -> NatsAuth {
    NatsAuth::UserPassword {
        user: name.into(),
        password: format!("pw-{name}"),
    }
}

/// Every service with its own NATS user: a send is delivered (composer → dispatcher →
/// carrier → inbound → composer), a reply reaches the inbox, STOP reaches the registry and
/// refuses the next send, a scheduled message is cancelled over request/reply and another one
/// fires (scheduler → dispatcher). Then each user publishes one subject that belongs to
/// another service: the server refuses every one, and none is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_works_with_its_own_user_and_no_more() {
    use sms_bus::permissions::Service;
    use sms_proto::v1::{CancelMessageRequest, MessageStatus};
    use sms_testkit::{NatsAccess, Options, Stack, as_user, eventually, send_ok, sms};

    let dir = Scratch::new("sms-nats-users");
    let namespace = sms_testkit::fresh_namespace();
    let (_server, port) = per_service_server(&dir, &namespace);
    wait_port(port).await;
    let url = format!("nats://127.0.0.1:{port}");
    let stack = Stack::start_with(Options {
        nats: Some(NatsAccess {
            url: url.clone(),
            users: Service::ALL.iter().map(|s| (*s, user(s.name()))).collect(),
            admin: user("admin"),
        }),
        namespace: Some(namespace.clone()),
        ..Options::default()
    })
    .await;
    let ours = "+12015550100";
    let contact = "+12015550123";
    stack.add_number(ours).await;
    let mut messaging = stack.messaging().await;

    let sent = send_ok(&mut messaging, sms(ours, contact, "hello")).await;
    let done = stack.wait_final(&mut messaging, &sent.id).await;
    assert_eq!(done.status, MessageStatus::Delivered as i32);
    stack
        .sim
        .reply(contact, ours, "hi back", Vec::new())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the reply", || async {
        stack
            .conversation(ours, contact)
            .await
            .iter()
            .any(|m| m.body == "hi back")
            .then_some(())
    })
    .await;

    let later = sms_proto::v1::SendMessageRequest {
        send_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        ..sms(ours, contact, "in an hour")
    };
    let scheduled = send_ok(&mut messaging, later).await;
    messaging
        .cancel_message(as_user(CancelMessageRequest {
            id: scheduled.id.clone(),
        }))
        .await
        .expect("cancelled through the scheduler's request/reply");
    let soon = sms_proto::v1::SendMessageRequest {
        send_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 2,
            nanos: 0,
        }),
        ..sms(ours, contact, "in two seconds")
    };
    let fired = send_ok(&mut messaging, soon).await;
    let fired = stack.wait_final(&mut messaging, &fired.id).await;
    assert_eq!(fired.status, MessageStatus::Delivered as i32);

    stack
        .sim
        .reply(contact, ours, "STOP", Vec::new())
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the opt-out applied", || {
        let mut messaging = messaging.clone();
        async move {
            let refused = messaging
                .send_message(as_user(sms(ours, contact, "after STOP")))
                .await
                .err()?;
            (refused.message().contains("opted out")).then_some(())
        }
    })
    .await;

    // Outside each user's permissions.
    let s = sms_bus::Subjects::new(namespace.clone());
    let stranger = "+12015550999";
    let forged = [
        (Service::Inbound, s.msg_accepted(0)),
        (
            Service::Dispatcher,
            s.state(sms_bus::StateKind::OptOut, "org-a", stranger),
        ),
        (Service::OptOut, s.msg_due(0)),
        (Service::Scheduler, s.inbound_received()),
        (
            Service::Composer,
            s.state(sms_bus::StateKind::OptOut, "org-b", stranger),
        ),
        (Service::Inbound, s.scheduler_command()),
    ];
    let forged_count = forged.len();
    for (service, subject) in forged {
        let client = async_nats::ConnectOptions::new()
            .user_and_password(service.name().into(), format!("pw-{}", service.name()))
            .connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let outcome = tokio::time::timeout(Duration::from_secs(3), async {
            js.publish(subject.clone(), "forged".into()).await?.await
        })
        .await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "{} published {subject}: {outcome:?}",
            service.name()
        );
        // Nor is it in any stream under that subject.
        for stream in [s.events_stream(), s.state_stream()] {
            let stream = stack.bus.jetstream().get_stream(stream).await.unwrap();
            if let Ok(last) = stream.get_last_raw_message_by_subject(&subject).await {
                assert_ne!(last.payload.as_ref(), b"forged", "{subject} was stored");
            }
        }
    }
    // The services' own work needed nothing they were not allowed: the server logged a
    // violation for each forged publish and for nothing else.
    let log = std::fs::read_to_string(dir.path().join("nats-users.log")).unwrap();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert_eq!(violations.len(), forged_count, "{violations:#?}");
    stack.shutdown().await;
}

/// `deploy/nats.yaml`'s `users.conf` is what `sms_bus::permissions` generates for namespace
/// `sms` (`SMS_BLESS=1` rewrites it), and nats-server accepts the deploy configuration as it
/// stands (`nats-server -t`), with the passwords from the environment as in the pod.
#[test]
fn deploy_nats_users_is_generated_from_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("    # BEGIN GENERATED\n", "    # END GENERATED\n");
    let start = yaml.find(begin).expect("BEGIN GENERATED marker") + begin.len();
    let stop = yaml.find(end).expect("END GENERATED marker");
    let generated: String = sms_bus::permissions::authorization(
        &sms_bus::Subjects::new("sms"),
        |s| format!("$NATS_{}_PASSWORD", s.name().to_uppercase()),
        &[],
    )
    .lines()
    .map(|l| format!("    {l}\n"))
    .collect();
    if std::env::var_os("SMS_BLESS").is_some() {
        std::fs::write(
            &path,
            format!("{}{generated}{}", &yaml[..start], &yaml[stop..]),
        )
        .unwrap();
        return;
    }
    assert!(
        yaml[start..stop] == generated,
        "deploy/nats.yaml's users.conf differs from sms_bus::permissions; rewrite it with \
         SMS_BLESS=1 cargo nextest run -p sms-e2e deploy_nats_users"
    );

    // The ConfigMap's two files, as the pod mounts them, checked by nats-server itself.
    let value: serde_json::Value = {
        let doc = yaml.split("\n---\n").next().unwrap();
        let conf = |key: &str| -> String {
            let marker = format!("  {key}: |\n");
            let from = doc.find(&marker).unwrap() + marker.len();
            doc[from..]
                .lines()
                .take_while(|l| l.starts_with("    ") || l.is_empty())
                .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
                .collect()
        };
        serde_json::json!({ "nats": conf("nats.conf"), "users": conf("users.conf") })
    };
    let dir = Scratch::new("sms-nats-deploy");
    std::fs::write(
        dir.path().join("nats.conf"),
        value["nats"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("users.conf"),
        value["users"].as_str().unwrap(),
    )
    .unwrap();
    let mut check = std::process::Command::new(nats_server());
    check
        .arg("-t")
        .arg("-c")
        .arg(dir.path().join("nats.conf"))
        .env("POD_NAME", "nats-0");
    for service in sms_bus::permissions::Service::ALL {
        check.env(
            format!("NATS_{}_PASSWORD", service.name().to_uppercase()),
            "a-password",
        );
    }
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "nats-server -t: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
