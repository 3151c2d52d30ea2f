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
