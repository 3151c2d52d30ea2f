//! Traces as an operator sees them: the services run as real processes, configured with the
//! standard `OTEL_*` variables only, and export to an in-process OTLP collector (a tonic
//! `TraceService`). One send must be one trace, composer → dispatcher → carrier call → inbound
//! webhook → composer, every span's parent in it; a cancel must join its caller's trace
//! through the scheduler's request/reply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::{
    AddNumberRequest, CancelMessageRequest, GetMessageRequest, MessageStatus, NumberKind,
    add_number_request,
};
use sms_testkit::cluster::{Proc, Scratch, free_port, service_binary};
use sms_testkit::{ACCOUNT_SID, AUTH_TOKEN, USER, as_user, sms};

/// A span as the collector received it, with the service that sent it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Got>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        name: s.name,
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    fn trace(&self, trace_id: &str) -> Vec<Got> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn parent_of<'a>(spans: &'a [Got], s: &Got) -> Option<&'a Got> {
    spans.iter().find(|p| p.span_id == s.parent)
}

/// Whether `s` descends from `ancestor` within `spans`.
fn descends(spans: &[Got], s: &Got, ancestor: &Got) -> bool {
    let mut at = s;
    for _ in 0..64 {
        match parent_of(spans, at) {
            Some(p) if p.span_id == ancestor.span_id => return true,
            Some(p) => at = p,
            None => return false,
        }
    }
    false
}

/// The trace as a tree, for the test's output (`--no-capture`).
fn tree(spans: &[Got], parent: &str, depth: usize, out: &mut String) {
    for s in spans.iter().filter(|s| s.parent == parent) {
        out.push_str(&format!(
            "{}{} [{}]\n",
            "  ".repeat(depth),
            s.name,
            s.service
        ));
        tree(spans, &s.span_id, depth + 1, out);
    }
}

fn one<'a>(spans: &'a [Got], service: &str, name: &str) -> &'a Got {
    spans
        .iter()
        .find(|s| s.service == service && s.name.starts_with(name))
        .unwrap_or_else(|| {
            let seen: Vec<String> = spans
                .iter()
                .map(|s| format!("{}: {}", s.service, s.name))
                .collect();
            panic!("no {service} span {name:?} in the trace; it has {seen:#?}")
        })
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The number the trace tests send from.
const OURS: &str = "+12015550100";

fn with_traceparent<T>(message: T, trace_id: &str, span_id: &str) -> tonic::Request<T> {
    let mut r = as_user(message);
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").parse().unwrap(),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_is_one_trace_across_every_service_and_a_cancel_joins_its_caller() {
    let collector = Collector::serve().await;

    // The carrier, apart from this runtime.
    let scratch = Scratch::new("sms-traces");
    let sim = sms_carrier_sim::Sim::new(sms_carrier_sim::SimConfig::new(ACCOUNT_SID, AUTH_TOKEN))
        .unwrap();
    let sim_listener =
        sms_runtime::health::bind_std(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let carrier = sim.clone();
    sms_testkit::cluster::serve_apart("carrier-sim", sim_listener, |l| {
        carrier.serve(l, tokio_util::sync::CancellationToken::new())
    });

    // The services, as processes, with the standard variables only.
    let database = sms_testkit::fresh_database().await;
    let namespace = sms_testkit::fresh_namespace();
    let inbound_port = free_port();
    let grpc_port = free_port();
    let media_port = free_port();
    sim.set_incoming_url(&format!(
        "http://127.0.0.1:{inbound_port}/webhooks/twilio/incoming"
    ));
    let common: Vec<(String, String)> = [
        ("SMS_NATS_URL", sms_testkit::NATS_URL.to_owned()),
        ("SMS_NAMESPACE", namespace.clone()),
        ("SMS_DATABASE_URL", database.clone()),
        ("SMS_DEV_MODE", "true".to_owned()),
        // The default log level: a quieter one once hid that traces broke at this one.
        ("SMS_LOG", "info,sqlx=warn".to_owned()),
        ("SMS_TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("SMS_TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ("SMS_TWILIO_API_URL", sim_url.clone()),
        ("SMS_PUBLIC_URL", format!("http://127.0.0.1:{inbound_port}")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone()),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut procs = Vec::new();
    for (name, extra) in [
        (
            "sms-composer",
            vec![
                ("SMS_GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
                ("SMS_MEDIA_ADDR", format!("127.0.0.1:{media_port}")),
                (
                    "SMS_MEDIA_PUBLIC_URL",
                    format!("http://127.0.0.1:{media_port}"),
                ),
            ],
        ),
        ("sms-dispatcher", Vec::new()),
        (
            "sms-inbound",
            vec![("SMS_INBOUND_ADDR", format!("127.0.0.1:{inbound_port}"))],
        ),
        ("sms-scheduler", Vec::new()),
    ] {
        let mut env = common.clone();
        env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let mut p = Proc::new(name, service_binary(name), Vec::new(), env, scratch.path());
        p.start();
        procs.push(p);
    }
    wait_port(grpc_port).await;
    wait_port(inbound_port).await;
    let names = Names {
        composer: "composer",
        dispatcher: "dispatcher",
        inbound: "inbound",
        scheduler: "scheduler",
    };
    check_send_and_cancel(&collector, grpc_port, &namespace, &names).await;
    drop(procs);
}

/// One send (with the caller's trace context) must be one trace, every span's parent in it,
/// in the tree the README draws; a cancel joins its caller's trace through the scheduler.
async fn check_send_and_cancel(
    collector: &Collector,
    grpc_port: u16,
    namespace: &str,
    names: &Names,
) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut numbers = NumbersServiceClient::new(channel.clone());
    let mut messaging = MessagingServiceClient::new(channel);
    numbers
        .add_number(as_user(AddNumberRequest {
            number: OURS.into(),
            kind: NumberKind::Internal as i32,
            owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
            ..Default::default()
        }))
        .await
        .unwrap();
    // The dispatcher may still be taking its partitions: the send waits in the stream.
    let caller = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    check_send(collector, &mut messaging, namespace, names, Some(caller)).await;
    // A caller without trace context (`smsctl send`): the send's own trace, SendMessage its root.
    check_send(collector, &mut messaging, namespace, names, None).await;

    // A cancel joins the caller's trace, through the scheduler's request/reply.
    let later = sms_proto::v1::SendMessageRequest {
        send_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        ..sms(OURS, "+12015550123", "in an hour")
    };
    let scheduled = messaging
        .send_message(as_user(later))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
        .id;
    let (cancel_trace, cancel_root) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    messaging
        .cancel_message(with_traceparent(
            CancelMessageRequest { id: scheduled },
            cancel_trace,
            cancel_root,
        ))
        .await
        .unwrap();
    let spans = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = collector.trace(cancel_trace);
            let whole = spans
                .iter()
                .all(|s| s.parent == cancel_root || parent_of(&spans, s).is_some());
            if (whole && spans.iter().any(|s| s.service == names.scheduler))
                || Instant::now() > deadline
            {
                break spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let cancel = one(&spans, names.composer, "CancelMessage");
    assert_eq!(cancel.parent, cancel_root);
    let request = one(&spans, names.composer, "send ");
    assert_eq!(request.kind, SpanKind::Client as i32);
    assert!(descends(&spans, request, cancel));
    let served = one(&spans, names.scheduler, "process");
    assert_eq!(
        served.parent, request.span_id,
        "the scheduler answers under the request"
    );
    assert_eq!(served.kind, SpanKind::Server as i32);
}

/// One send must be one trace, every span's parent in it, in the tree the README draws: under
/// the caller's span when it sent its context, else with SendMessage as the trace's root.
async fn check_send(
    collector: &Collector,
    messaging: &mut MessagingServiceClient<tonic::transport::Channel>,
    namespace: &str,
    names: &Names,
    caller: Option<(&str, &str)>,
) {
    let request = sms(OURS, "+12015550123", "trace me");
    let request = match caller {
        Some((trace_id, root)) => with_traceparent(request, trace_id, root),
        None => as_user(request),
    };
    let id = messaging
        .send_message(request)
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
        .id;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = messaging
            .get_message(as_user(GetMessageRequest { id: id.clone() }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        if m.status == MessageStatus::Delivered as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The trace: the caller's, or the one the message's spans are in.
    let (trace_id, root) = match caller {
        Some((trace_id, root)) => (trace_id.to_owned(), root),
        None => (
            eventually_span(collector, |s| {
                s.attributes.get("sms.message_id") == Some(&id)
            })
            .await
            .trace_id,
            "",
        ),
    };
    let trace_id = trace_id.as_str();
    // Wait for the composer's processing of `delivered` to be exported too.
    let spans = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = collector.trace(trace_id);
            let delivered = spans.iter().any(|s| {
                s.service == names.composer
                    && s.name.starts_with("process")
                    && s.attributes
                        .get("messaging.destination.name")
                        .is_some_and(|d| d.ends_with(".status.delivered"))
            });
            // Parents end after their children: wait for every one of them too.
            let whole = spans
                .iter()
                .all(|s| s.parent == root || parent_of(&spans, s).is_some());
            if (delivered && whole) || Instant::now() > deadline {
                break spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    let mut shown = String::new();
    tree(&spans, root, 0, &mut shown);
    eprintln!("the send's trace ({} spans):\n{shown}", spans.len());
    // One trace: every span's parent is the caller's span or another span of the trace.
    for s in &spans {
        assert!(
            s.parent == root || parent_of(&spans, s).is_some(),
            "{}: {} has a parent outside the trace",
            s.service,
            s.name
        );
    }
    let send = one(&spans, names.composer, "SendMessage");
    assert_eq!(send.kind, SpanKind::Server as i32);
    assert_eq!(send.parent, root, "SendMessage is the caller's child");
    let accepted = spans
        .iter()
        .find(|s| {
            s.service == names.composer
                && s.kind == SpanKind::Producer as i32
                && s.name == "create msg.accepted"
        })
        .expect("the composer's producer span for msg.accepted");
    assert!(descends(&spans, accepted, send));
    assert_eq!(accepted.attributes["messaging.system"], "nats");
    let dispatch = spans
        .iter()
        .find(|s| {
            s.service == names.dispatcher
                && s.kind == SpanKind::Consumer as i32
                && s.name
                    .starts_with(&format!("process {namespace}.msg.accepted."))
        })
        .unwrap_or_else(|| panic!("no dispatcher consumer span: {spans:#?}"));
    assert_eq!(
        dispatch.parent, accepted.span_id,
        "consume is publish's child"
    );
    assert_eq!(dispatch.attributes["messaging.operation.type"], "process");
    assert!(
        dispatch.attributes["messaging.consumer.group.name"].starts_with("dispatcher-accepted-")
    );
    assert_eq!(dispatch.attributes["sms.message_id"], id);
    let call = one(&spans, names.dispatcher, "POST Messages");
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert!(descends(&spans, call, dispatch));
    // The carrier's callbacks (status `sent`, `delivered`) come back under the carrier call.
    let hooks: Vec<&Got> = spans
        .iter()
        .filter(|s| s.service == names.inbound && s.name == "twilio_status")
        .collect();
    assert!(hooks.len() >= 2, "{spans:#?}");
    for h in &hooks {
        assert_eq!(
            h.parent, call.span_id,
            "the webhook is the carrier call's child"
        );
    }
    let delivered = spans
        .iter()
        .find(|s| {
            s.service == names.composer
                && s.kind == SpanKind::Consumer as i32
                && s.attributes
                    .get("messaging.destination.name")
                    .is_some_and(|d| d.ends_with(".status.delivered"))
        })
        .unwrap_or_else(|| panic!("no composer span for `delivered`: {spans:#?}"));
    let created = parent_of(&spans, delivered).expect("its producer span");
    assert_eq!(created.service, names.inbound);
    assert_eq!(created.kind, SpanKind::Producer as i32);
    assert!(hooks.iter().any(|h| descends(&spans, delivered, h)));
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id == trace_id && !s.service.is_empty())
    );
}

/// The first span exported that `matches`, waiting up to 20 s for it.
async fn eventually_span(collector: &Collector, matches: impl Fn(&Got) -> bool) -> Got {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = collector.0.lock().unwrap().iter().find(|s| matches(s)) {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "no such span exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The services as the README's first command runs them: every one in `smsd`, one process,
/// each span from service `smsd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_is_one_trace_under_smsd_too() {
    let collector = Collector::serve().await;
    let scratch = Scratch::new("sms-traces-smsd");
    let database = sms_testkit::fresh_database().await;
    let namespace = sms_testkit::fresh_namespace();
    let port = |_| free_port();
    let [grpc, optout, inbound, console, media, sim]: [u16; 6] = [0; 6].map(port);
    let env: Vec<(String, String)> = [
        ("SMS_NATS_URL", sms_testkit::NATS_URL.to_owned()),
        ("SMS_NAMESPACE", namespace.clone()),
        ("SMS_DATABASE_URL", database),
        ("SMS_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
        ("SMS_OPTOUT_GRPC_ADDR", format!("127.0.0.1:{optout}")),
        ("SMS_INBOUND_ADDR", format!("127.0.0.1:{inbound}")),
        ("SMS_CONSOLE_ADDR", format!("127.0.0.1:{console}")),
        ("SMS_MEDIA_ADDR", format!("127.0.0.1:{media}")),
        ("SMS_SIM_ADDR", format!("127.0.0.1:{sim}")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut smsd = Proc::new(
        "smsd",
        service_binary("smsd"),
        vec!["--dev".into()],
        env,
        scratch.path(),
    );
    smsd.start();
    wait_port(grpc).await;
    wait_port(inbound).await;
    let names = Names::all("smsd");
    check_send_and_cancel(&collector, grpc, &namespace, &names).await;
    drop(smsd);
}

/// Which service each part of the platform exports its spans as.
struct Names {
    composer: &'static str,
    dispatcher: &'static str,
    inbound: &'static str,
    scheduler: &'static str,
}

impl Names {
    fn all(name: &'static str) -> Names {
        Names {
            composer: name,
            dispatcher: name,
            inbound: name,
            scheduler: name,
        }
    }
}

impl Collector {
    /// A collector listening on a port of its own, in this runtime.
    async fn serve() -> Served {
        let collector = Collector::default();
        let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", otlp.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(otlp)),
        );
        Served { collector, url }
    }
}

/// A collector and its URL.
struct Served {
    collector: Collector,
    url: String,
}

impl std::ops::Deref for Served {
    type Target = Collector;
    fn deref(&self) -> &Collector {
        &self.collector
    }
}

/// A value of a standard variable this build cannot honour stops a service at once, naming
/// the variable; a standard variable it does not read is reported at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_otel_values_stop_a_service_naming_the_variable() {
    let binary = service_binary("sms-scheduler");
    for (var, value) in [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
    ] {
        let binary = binary.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(binary)
                .env(var, value)
                .env("SMS_DEV_MODE", "true")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && err.contains(value), "{var}: {err}");
    }

    // Read by no one here: the service starts and says so.
    let scratch = Scratch::new("sms-otel-unknown");
    let database = sms_testkit::fresh_database().await;
    let mut p = Proc::new(
        "scheduler",
        binary,
        Vec::new(),
        vec![
            ("SMS_DATABASE_URL".into(), database),
            ("SMS_NAMESPACE".into(), sms_testkit::fresh_namespace()),
            ("SMS_DEV_MODE".into(), "true".into()),
            ("SMS_LOG".into(), "warn".into()),
            ("OTEL_METRICS_EXPORTER".into(), "otlp".into()),
        ],
        scratch.path(),
    );
    p.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.grep("OTEL_METRICS_EXPORTER").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no word of OTEL_METRICS_EXPORTER"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        p.grep("no effect")
            .iter()
            .any(|l| l.contains("OTEL_METRICS_EXPORTER"))
    );
}
