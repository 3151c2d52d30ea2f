//! The proof by killing processes: the real service binaries run as separate processes (two
//! composers, two dispatchers, the inbound receiver, the scheduler, the opt-out registry, two
//! feed services) on a
//! 3-node NATS cluster with R3 streams and on a PostgreSQL cluster of their own. While sends
//! flow (some scheduled, some to landlines and spam-filtered numbers, some to contacts who text
//! STOP), each service is killed with SIGKILL in turn and started again, the events stream's
//! leader node is killed, and PostgreSQL is crashed and restarted. Then, for every accepted
//! message: it reached a final status that matches what the carrier did with it, the carrier
//! got it at most once (exactly once unless it failed before the carrier for a stated reason),
//! and every STOP is recorded and blocks the next send. And a webhook endpoint registered
//! before the load got, at least once, every accepted message's final status (a feed service
//! that delivers webhooks is killed too, and the composers that write the feed).
//!
//! The short run is part of `scripts/test`; `scripts/chaos` runs the long one (set by
//! `SMS_CHAOS_MESSAGES`, `SMS_CHAOS_RATE` and `SMS_CHAOS_ROUNDS`) and prints its figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sms_carrier_sim::{Incoming, Sim, SimConfig};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::{
    AddNumberRequest, CheckOptOutRequest, GetMessageRequest, Message, MessageStatus, NumberKind,
    SendMessageRequest, add_number_request,
};
use sms_testkit::cluster::{
    NatsCluster, PgCluster, Proc, Procs, free_port, service_binary, wait_ready,
};
use sms_testkit::{ACCOUNT_SID, AUTH_TOKEN, ORG, USER, as_caller};
use tonic::transport::Channel;

const SENDERS: [&str; 4] = [
    "+12015550100",
    "+12015550101",
    "+12015550102",
    "+12015550103",
];
/// How the carrier is asked to call the inbound receiver for incoming messages (as a number's
/// webhook URL would be configured at Twilio).
const INCOMING_OVERRIDES: &str = "#rc=5&rp=5xx,ct,rt";

/// What a run does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    messages: usize,
    rate: f64,
    rounds: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(default)
        };
        Plan {
            messages: var("SMS_CHAOS_MESSAGES", 360.0) as usize,
            rate: var("SMS_CHAOS_RATE", 15.0),
            rounds: var("SMS_CHAOS_ROUNDS", 1.0) as usize,
        }
    }
}

/// What message `i` is, and so what the carrier will do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Normal,
    Scheduled,
    Landline,
    Spam,
    /// To a contact who texts STOP during the run.
    ToStopper(usize),
}

fn kind(i: usize, stoppers: usize) -> Kind {
    match i % 10 {
        1 => Kind::Scheduled,
        3 => Kind::Landline,
        5 => Kind::ToStopper((i / 10) % stoppers),
        7 => Kind::Spam,
        _ => Kind::Normal,
    }
}

fn recipient(i: usize, kind: Kind) -> String {
    match kind {
        Kind::Normal | Kind::Scheduled => format!("+1201555{:04}", 2000 + i % 8000),
        Kind::Landline => format!("+1201556{:04}", i % 10000),
        Kind::Spam => format!("+1201557{:04}", i % 10000),
        Kind::ToStopper(k) => stopper(k),
    }
}

fn stopper(k: usize) -> String {
    format!("+1201558{:04}", k)
}

fn body(i: usize) -> String {
    format!("chaos-{i} hello from the load")
}

/// What the webhook endpoint received: per `webhook-id`, how many times, and per message the
/// statuses it was told.
#[derive(Default)]
struct Hooks {
    deliveries: HashMap<String, usize>,
    statuses: HashMap<String, HashSet<String>>,
}

/// A webhook endpoint, served apart from the harness's runtime.
fn hook_receiver() -> (String, Arc<Mutex<Hooks>>) {
    let hooks: Arc<Mutex<Hooks>> = Arc::default();
    let seen = hooks.clone();
    let listener =
        sms_runtime::health::bind_std(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let mut h = seen.lock().unwrap();
                    *h.deliveries.entry(id).or_default() += 1;
                    if let (Some(m), Some(s)) = (
                        event["data"]["message_id"].as_str(),
                        event["data"]["status"].as_str(),
                    ) {
                        h.statuses
                            .entry(m.to_owned())
                            .or_default()
                            .insert(s.to_owned());
                    }
                    "ok"
                }
            },
        ),
    );
    sms_testkit::cluster::serve_apart("webhook-endpoint", listener, |l| async move {
        axum::serve(l, app).await
    });
    (addr, hooks)
}

/// Which carrier protocol the dispatchers speak to the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Its Messages API and webhooks.
    Twilio,
    /// Its SMSC: binds, submit_sm, receipts and contacts' messages as deliver_sm.
    Smpp,
}

/// Everything one run starts.
struct Platform {
    sim: Sim,
    nats: NatsCluster,
    pg: PgCluster,
    procs: Procs,
    composers: Vec<MessagingServiceClient<Channel>>,
    numbers: NumbersServiceClient<Channel>,
    optouts: OptOutsServiceClient<Channel>,
    /// Health (or, for the inbound receiver, its own) address per process.
    health: HashMap<String, String>,
    inbound_url: String,
    events_stream: String,
    /// What the webhook endpoint received.
    hooks: Arc<Mutex<Hooks>>,
    _scratch: sms_testkit::cluster::Scratch,
}

fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

impl Platform {
    async fn start(protocol: Protocol) -> Platform {
        let scratch = sms_testkit::cluster::Scratch::new("sms-chaos-logs");
        let nats = NatsCluster::start(3).await;
        let pg = PgCluster::start().await;
        let namespace = sms_testkit::fresh_namespace();

        let mut sim_config = SimConfig::new(ACCOUNT_SID, AUTH_TOKEN);
        sim_config.behaviour.callback_delay = Duration::from_millis(40);
        // A little latency, so that some kills land while a carrier call is in flight.
        sim_config.behaviour.api_latency = Duration::from_millis(25);
        for i in 0..10_000 {
            sim_config
                .behaviour
                .landlines
                .insert(recipient(i, Kind::Landline));
            sim_config.behaviour.spam.insert(recipient(i, Kind::Spam));
        }
        // Over SMPP, contacts' messages come on the binds too.
        sim_config.behaviour.smpp.all_numbers = protocol == Protocol::Smpp;
        let sim = Sim::new(sim_config).unwrap();
        // The carrier runs apart from the harness, whose fault loop blocks in pg_ctl and waits
        // for killed children: a carrier stalled by its caller's runtime would take calls late
        // (after their lease), which no real carrier's host does to it.
        let sim_listener =
            sms_runtime::health::bind_std(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
        let carrier = sim.clone();
        sms_testkit::cluster::serve_apart("carrier-sim", sim_listener, |l| {
            carrier.serve(l, tokio_util::sync::CancellationToken::new())
        });

        let smsc_listener =
            sms_runtime::health::bind_std(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let smsc_addr = smsc_listener.local_addr().unwrap().to_string();
        let smsc = sim.clone();
        sms_testkit::cluster::serve_apart("carrier-sim-smsc", smsc_listener, |l| {
            smsc.serve_smpp(l, tokio_util::sync::CancellationToken::new())
        });

        let inbound_addr = format!("127.0.0.1:{}", free_port());
        let inbound_url = format!("http://{inbound_addr}");
        let common: Vec<(String, String)> = [
            ("SMS_NATS_URL", nats.urls()),
            ("SMS_NAMESPACE", namespace.clone()),
            ("SMS_DATABASE_URL", pg.url("sms")),
            ("SMS_STREAM_REPLICAS", "3".into()),
            ("SMS_DEV_MODE", "true".into()),
            ("SMS_LOG", "warn,sms_dispatcher=info".into()),
            ("SMS_ACK_WAIT_MS", "5000".into()),
            ("SMS_DB_MAX_CONNECTIONS", "8".into()),
            ("SMS_TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("SMS_TWILIO_AUTH_TOKEN", AUTH_TOKEN.into()),
            ("SMS_TWILIO_API_URL", sim_url.clone()),
            ("SMS_PUBLIC_URL", inbound_url.clone()),
            ("SMS_CARRIER_TIMEOUT_MS", "2000".into()),
            ("SMS_IN_DOUBT_AFTER_MS", "6000".into()),
            ("SMS_STATUS_CHECK_AFTER_MS", "4000".into()),
            ("SMS_STATUS_CHECKS", "30".into()),
            ("RUST_BACKTRACE", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut common = common;
        if protocol == Protocol::Smpp {
            common.extend(
                [
                    ("SMS_CARRIER", "smpp".to_owned()),
                    ("SMS_SMPP_ADDR", smsc_addr.clone()),
                    (
                        "SMS_SMPP_SYSTEM_ID",
                        sms_carrier_sim::DEFAULT_SMPP_SYSTEM_ID.to_owned(),
                    ),
                    (
                        "SMS_SMPP_PASSWORD",
                        sms_carrier_sim::DEFAULT_SMPP_PASSWORD.to_owned(),
                    ),
                    ("SMS_SMPP_ERRORS", sms_testkit::SIM_SMPP_ERRORS.to_owned()),
                    ("SMS_SMPP_RESPONSE_TIMEOUT_MS", "2000".to_owned()),
                    // A bind per replica: the SMSC allows two for the system id.
                    ("SMS_SMPP_BINDS", "2".to_owned()),
                    ("SMS_SMPP_ENQUIRE_LINK_MS", "2000".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
            );
        }
        let mut procs = Procs::default();
        let mut health = HashMap::new();
        let mut composer_addrs = Vec::new();
        let mut add = |name: &str, binary: &str, extra: Vec<(&str, String)>, ready: String| {
            let mut env = common.clone();
            env.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let p = Proc::new(
                name,
                service_binary(binary),
                Vec::new(),
                env,
                scratch.path(),
            );
            procs.0.insert(name.to_owned(), p);
            health.insert(name.to_owned(), ready);
        };
        let (hook_addr, hooks) = hook_receiver();
        for name in ["composer-a", "composer-b"] {
            let grpc = format!("127.0.0.1:{}", free_port());
            let media = format!("127.0.0.1:{}", free_port());
            let h = format!("127.0.0.1:{}", free_port());
            add(
                name,
                "sms-composer",
                vec![
                    ("SMS_GRPC_ADDR", grpc.clone()),
                    ("SMS_MEDIA_ADDR", media.clone()),
                    ("SMS_MEDIA_PUBLIC_URL", format!("http://{media}")),
                    ("SMS_HEALTH_ADDR", h.clone()),
                    // The webhook endpoint is on loopback, over http (development).
                    ("SMS_FETCH_ALLOW_HTTP", "true".into()),
                    ("SMS_FETCH_ALLOW_PRIVATE", hook_addr.clone()),
                ],
                h,
            );
            composer_addrs.push(grpc);
        }
        // Webhook delivery: two replicas of the feed service sharing the work.
        let mut feed_addrs = Vec::new();
        for name in ["feed-a", "feed-b"] {
            let grpc = format!("127.0.0.1:{}", free_port());
            let h = format!("127.0.0.1:{}", free_port());
            add(
                name,
                "sms-feed",
                vec![
                    ("SMS_GRPC_ADDR", grpc.clone()),
                    ("SMS_HEALTH_ADDR", h.clone()),
                    ("SMS_FETCH_ALLOW_HTTP", "true".into()),
                    ("SMS_FETCH_ALLOW_PRIVATE", hook_addr.clone()),
                    // Retries within the run: the database is down for 10 s at a time.
                    (
                        "SMS_WEBHOOK_RETRY_MS",
                        "200,500,1000,2000,5000,10000,20000,30000".into(),
                    ),
                ],
                h,
            );
            feed_addrs.push(grpc);
        }
        for name in ["dispatcher-a", "dispatcher-b", "scheduler"] {
            let h = format!("127.0.0.1:{}", free_port());
            let binary = if name == "scheduler" {
                "sms-scheduler"
            } else {
                "sms-dispatcher"
            };
            add(name, binary, vec![("SMS_HEALTH_ADDR", h.clone())], h);
        }
        let optout_grpc = format!("127.0.0.1:{}", free_port());
        let h = format!("127.0.0.1:{}", free_port());
        add(
            "optout",
            "sms-optout",
            vec![
                ("SMS_OPTOUT_GRPC_ADDR", optout_grpc.clone()),
                ("SMS_HEALTH_ADDR", h.clone()),
            ],
            h,
        );
        add(
            "inbound",
            "sms-inbound",
            vec![("SMS_INBOUND_ADDR", inbound_addr.clone())],
            inbound_addr.clone(),
        );
        // The composers first: they create the database and the streams the others use.
        let mut platform = Platform {
            sim,
            nats,
            pg,
            procs,
            composers: composer_addrs
                .iter()
                .map(|a| MessagingServiceClient::new(channel(a)))
                .collect(),
            numbers: NumbersServiceClient::new(channel(&composer_addrs[0])),
            optouts: OptOutsServiceClient::new(channel(&optout_grpc)),
            health,
            inbound_url,
            events_stream: format!(
                "{}_EVENTS",
                namespace
                    .to_uppercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            ),
            hooks,
            _scratch: scratch,
        };
        platform.up("composer-a").await;
        let names: Vec<String> = platform.procs.0.keys().cloned().collect();
        for name in names {
            if !platform.procs.get(&name).running() {
                platform.up(&name).await;
            }
        }
        for number in SENDERS {
            let request = AddNumberRequest {
                number: number.into(),
                kind: NumberKind::Internal as i32,
                owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
                // The load is about faults, not rates: four senders carry it all.
                send_rate: Some(1_000.0),
                send_burst: Some(1_000),
                ..Default::default()
            };
            platform
                .numbers
                .add_number(as_caller(request, ORG, USER))
                .await
                .unwrap();
        }
        // The CRM's endpoint, for every message status.
        sms_proto::v1::webhooks_service_client::WebhooksServiceClient::new(channel(&feed_addrs[0]))
            .create_webhook_endpoint(as_caller(
                sms_proto::v1::CreateWebhookEndpointRequest {
                    url: format!("http://{hook_addr}/hook"),
                    event_types: vec!["message.status".into()],
                    description: "chaos".into(),
                },
                ORG,
                USER,
            ))
            .await
            .expect("the webhook endpoint");
        platform
    }

    /// Starts `name` and waits until it is ready.
    async fn up(&mut self, name: &str) {
        self.procs.get(name).start();
        let addr = self.health[name].clone();
        if !wait_ready(&addr, Duration::from_secs(60)).await {
            panic!(
                "{name} not ready after 60 s:\n{}",
                self.procs.get(name).tail(40)
            );
        }
    }

    /// Kills `name` with SIGKILL, waits `down`, and starts it again.
    async fn bounce(&mut self, name: &str, down: Duration) {
        tokio::task::block_in_place(|| self.procs.get(name).kill());
        tokio::time::sleep(down).await;
        self.up(name).await;
    }
}

/// The dispatcher's row for message `id`, for a report.
async fn dispatcher_row(platform: &Platform, id: &str) -> String {
    let Ok(mut db) =
        <sqlx::PgConnection as sqlx::Connection>::connect(&platform.pg.url("sms")).await
    else {
        return "(database unreachable)".into();
    };
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT format('%s, attempts %s, checks %s, sid %s, first call %s, check_at %s, \
                        updated %s, error %s', state, attempts, checks, carrier_sid,
                       first_call_at, check_at, updated_at, last_error)
         FROM dispatcher.sends WHERE message_id = $1::uuid",
    )
    .bind(id)
    .fetch_optional(&mut db)
    .await
    .ok()
    .flatten();
    row.map_or_else(|| "(no row)".into(), |(r,)| r)
}

/// A send as the load made it.
#[derive(Debug, Clone)]
struct Sent {
    i: usize,
    kind: Kind,
    id: String,
}

/// Sends message `i`, through the composers in turn, with the same idempotency key until one
/// answers; `Err` with the code for a refusal.
async fn send_until_answered(
    composers: &[MessagingServiceClient<Channel>],
    request: SendMessageRequest,
    start: usize,
) -> Result<Message, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut attempt = start;
    loop {
        let mut client = composers[attempt % composers.len()].clone();
        attempt += 1;
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.send_message(as_caller(request.clone(), ORG, USER)),
        )
        .await;
        match answer {
            Ok(Ok(response)) => return Ok(response.into_inner().message.unwrap()),
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                        | tonic::Code::PermissionDenied
                ) =>
            {
                return Err(status);
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "message {:?} not accepted in 180 s",
            request.idempotency_key
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The contact `from` texts `body` to our number, retrying as a carrier would until the
/// receiver takes it.
async fn text_us(protocol: Protocol, sim: &Sim, inbound_url: &str, from: &str, body: &str) {
    let url = format!("{inbound_url}/webhooks/twilio/incoming{INCOMING_OVERRIDES}");
    // The same sid on every try: a repeat is the same message.
    let message = Incoming {
        from: from.into(),
        to: SENDERS[0].into(),
        body: body.into(),
        media: Vec::new(),
        sid: Some(format!("SM{}", uuid::Uuid::new_v4().simple())),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let taken = match protocol {
            // A deliver_sm, offered until a bind answers it (the SMSC keeps it meanwhile).
            Protocol::Smpp => sim.reply(from, SENDERS[0], body, Vec::new()).await,
            Protocol::Twilio => sim.send_incoming(&url, ACCOUNT_SID, &message).await,
        };
        if let Ok((200, _)) = taken {
            return;
        }
        assert!(Instant::now() < deadline, "{from}'s {body} never taken");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The faults of one round, in order.
const FAULTS: [&str; 10] = [
    "composer-a",
    "dispatcher-a",
    "inbound",
    "nats-leader",
    "scheduler",
    "optout",
    "feed-a",
    "postgres",
    "composer-b",
    "dispatcher-b",
];

/// The faults of one round over SMPP: the same, with the SMSC cutting every bind.
const SMPP_FAULTS: [&str; 11] = [
    "composer-a",
    "dispatcher-a",
    "smsc",
    "nats-leader",
    "scheduler",
    "optout",
    "feed-a",
    "postgres",
    "composer-b",
    "dispatcher-b",
    "smsc",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_killed_one_at_a_time_lose_nothing_and_send_nothing_twice() {
    run(Protocol::Twilio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_smpp_services_killed_and_binds_cut_lose_nothing_and_send_nothing_twice() {
    run(Protocol::Smpp).await;
}

async fn run(protocol: Protocol) {
    let plan = Plan::from_env();
    let stoppers = (plan.messages / 60).max(4);
    let mut platform = Platform::start(protocol).await;
    println!("chaos: carrier protocol {protocol:?}");
    let started = Instant::now();
    let load_time = Duration::from_secs_f64(plan.messages as f64 / plan.rate);
    println!(
        "chaos: {} messages at {}/s (~{:.0} s), {} fault round(s), {stoppers} contacts who text STOP",
        plan.messages,
        plan.rate,
        load_time.as_secs_f64(),
        plan.rounds
    );

    // The load: message i at i / rate, through the composers in turn.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let refused: Arc<Mutex<Vec<(usize, Kind, tonic::Status)>>> = Arc::default();
    let composers = platform.composers.clone();
    let load = {
        let (sent, refused) = (sent.clone(), refused.clone());
        let sim = platform.sim.clone();
        let inbound_url = platform.inbound_url.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut stopped = 0;
            for i in 0..plan.messages {
                let at = started + Duration::from_secs_f64(i as f64 / plan.rate);
                tokio::time::sleep_until(at.into()).await;
                // Contact k texts STOP once the load is (k+1)/(stoppers+1) of the way.
                while stopped < stoppers && i * (stoppers + 1) >= (stopped + 1) * plan.messages {
                    let (sim, url) = (sim.clone(), inbound_url.clone());
                    let who = stopper(stopped);
                    tasks.push(tokio::spawn(async move {
                        text_us(protocol, &sim, &url, &who, "STOP").await;
                    }));
                    stopped += 1;
                }
                let kind = kind(i, stoppers);
                let mut request = SendMessageRequest {
                    to: recipient(i, kind),
                    from: SENDERS[i % SENDERS.len()].into(),
                    body: body(i),
                    idempotency_key: format!("chaos-{i}"),
                    ..Default::default()
                };
                if kind == Kind::Scheduled {
                    // Far enough ahead that a call retried through a composer's restart or the
                    // database's outage still names a future time.
                    let at =
                        std::time::SystemTime::now() + Duration::from_secs(30 + (i % 11) as u64);
                    request.send_at = Some(prost_types::Timestamp::from(at));
                }
                let composers = composers.clone();
                let (sent, refused) = (sent.clone(), refused.clone());
                tasks.push(tokio::spawn(async move {
                    match send_until_answered(&composers, request, i).await {
                        Ok(m) => sent.lock().unwrap().push(Sent { i, kind, id: m.id }),
                        Err(status) => refused.lock().unwrap().push((i, kind, status)),
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };

    // The faults, one at a time, spread over the load.
    let round_faults: &[&str] = match protocol {
        Protocol::Twilio => &FAULTS,
        Protocol::Smpp => &SMPP_FAULTS,
    };
    let spacing =
        (load_time / (round_faults.len() * plan.rounds + 1) as u32).max(Duration::from_secs(1));
    let mut faults = Vec::new();
    for round in 0..plan.rounds {
        for &fault in round_faults {
            tokio::time::sleep(spacing).await;
            let at = started.elapsed().as_secs_f64();
            let what = match fault {
                "nats-leader" => {
                    let leader = platform.nats.stream_leader(&platform.events_stream).await;
                    match leader {
                        Some(n) => {
                            let name = platform.nats.nodes[n].name.clone();
                            tokio::task::block_in_place(|| platform.nats.nodes[n].kill());
                            tokio::time::sleep(Duration::from_secs(4)).await;
                            platform.nats.nodes[n].start();
                            format!(
                                "NATS node {name} (leader of the events stream) killed, back after 4 s"
                            )
                        }
                        None => "NATS stream leader not found (skipped)".to_owned(),
                    }
                }
                "smsc" => {
                    platform.sim.cut_smpp();
                    "the SMSC cut every bind".to_owned()
                }
                "postgres" => {
                    // Down for longer than five deliveries' back-off: events wait for the
                    // database instead of being dead-lettered.
                    tokio::task::block_in_place(|| platform.pg.crash());
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    tokio::task::block_in_place(|| platform.pg.up());
                    "PostgreSQL crashed (immediate stop), restarted after 10 s".to_owned()
                }
                service => {
                    platform.bounce(service, Duration::from_millis(500)).await;
                    format!("{service} killed (SIGKILL), restarted")
                }
            };
            println!("chaos: round {} at {at:.1} s: {what}", round + 1);
            faults.push(what);
        }
    }
    let faults_done = Instant::now();
    load.await.unwrap();
    let load_done = Instant::now();
    // Anything that died on its own comes back (a fault may have stopped a service's start).
    let names: Vec<String> = platform.procs.0.keys().cloned().collect();
    for name in names {
        if !platform.procs.get(&name).running() {
            println!(
                "chaos: {name} had exited; starting it again. Its log ends:\n{}",
                platform.procs.get(&name).tail(20)
            );
            platform.up(&name).await;
        }
    }

    // Every accepted message reaches a final status.
    let sent = sent.lock().unwrap().clone();
    // A send refused at once is right only for a contact who had texted STOP.
    let refused = refused.lock().unwrap().clone();
    let mut problems = Vec::new();
    let mut refused_opted_out = 0;
    for (i, kind, status) in &refused {
        let opted_out = tonic_types::StatusExt::get_details_error_info(status)
            .is_some_and(|info| info.reason == "OPTED_OUT");
        if matches!(kind, Kind::ToStopper(_)) && opted_out {
            refused_opted_out += 1;
        } else {
            problems.push(format!("message {i} ({kind:?}) refused: {status}"));
        }
    }
    let mut client = platform.composers[0].clone();
    let mut finals: HashMap<String, Message> = HashMap::new();
    let wanted: HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    let converge_deadline = Instant::now() + Duration::from_secs(240);
    loop {
        // Every message of the organization, 500 a page: a pass takes a few calls.
        let mut token = String::new();
        loop {
            let request = sms_proto::v1::ListMessagesRequest {
                page_size: 500,
                page_token: token.clone(),
                ..Default::default()
            };
            let Ok(page) = client.list_messages(as_caller(request, ORG, USER)).await else {
                break;
            };
            let page = page.into_inner();
            for m in page.messages {
                let status = MessageStatus::try_from(m.status).unwrap_or_default();
                let done = sms_bus::status_from_proto(status).is_some_and(|s| s.is_final());
                if done && wanted.contains(m.id.as_str()) {
                    finals.insert(m.id.clone(), m);
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        if finals.len() == sent.len() || Instant::now() > converge_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged_in = load_done.elapsed();
    let after_faults = faults_done.elapsed();

    // The webhook endpoint: every final status, at least once (retries may take a while after
    // the last fault).
    let final_status = |m: &Message| sms_proto::feed_json::status_name(m.status);
    let hooks_deadline = Instant::now() + Duration::from_secs(120);
    let missing_hooks: Vec<String> = loop {
        let missing: Vec<String> = {
            let h = platform.hooks.lock().unwrap();
            finals
                .values()
                .filter(|m| {
                    !h.statuses
                        .get(&m.id)
                        .is_some_and(|s| s.contains(&final_status(m)))
                })
                .map(|m| m.id.clone())
                .collect()
        };
        if missing.is_empty() || Instant::now() > hooks_deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    {
        let h = platform.hooks.lock().unwrap();
        let events = h.deliveries.len();
        let posts: usize = h.deliveries.values().sum();
        println!(
            "chaos: webhooks: {posts} deliveries of {events} events ({} repeated); final status delivered for {} of {} messages",
            posts - events,
            finals.len() - missing_hooks.len(),
            finals.len()
        );
    }
    for id in missing_hooks.iter().take(10) {
        problems.push(format!(
            "{id}: its final status never reached the webhook endpoint"
        ));
    }

    // What the carrier did: requests taken (201) by body.
    let requests = platform.sim.requests();
    let mut taken: HashMap<String, Vec<String>> = HashMap::new();
    for r in &requests {
        if r.http_status == 201 {
            taken
                .entry(r.body.clone())
                .or_default()
                .push(r.sid.clone().unwrap_or_default());
        }
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut carrier = [0usize; 3];
    // Over SMPP, a submit_sm written and never answered (its dispatcher killed, or its bind
    // cut, before the answer was stored) fails as unknown: the documented at-most-once policy.
    let mut failed_by_policy = 0;
    let by_policy = |m: &Message| {
        protocol == Protocol::Smpp
            && MessageStatus::try_from(m.status) == Ok(MessageStatus::Failed)
            && m.reason == "unknown_carrier_error"
    };
    // Messages the carrier took more than once: what it saw and what the dispatcher recorded.
    let mut twice: Vec<(String, String)> = Vec::new();
    let mut unsent: Vec<String> = Vec::new();
    for s in &sent {
        let sids = taken.get(&body(s.i)).cloned().unwrap_or_default();
        carrier[sids.len().min(2)] += 1;
        let Some(m) = finals.get(&s.id) else {
            problems.push(format!("{} ({:?}) stuck", s.id, s.kind));
            continue;
        };
        let status = MessageStatus::try_from(m.status).unwrap();
        *statuses
            .entry(format!("{status:?} {}", m.reason).trim().to_owned())
            .or_default() += 1;
        match sids.len() {
            0 if by_policy(m) => failed_by_policy += 1,
            1 if by_policy(m) => failed_by_policy += 1,
            0 => {
                // Never reached the carrier: only for a stated reason it may not have.
                let stated = matches!(s.kind, Kind::ToStopper(_)) && m.reason == "opted_out";
                if !(status == MessageStatus::Failed && stated) {
                    unsent.push(s.id.clone());
                    problems.push(format!(
                        "{} ({:?}) never reached the carrier but is {status:?} {}",
                        s.id, s.kind, m.reason
                    ));
                }
            }
            1 => {
                let expected = match s.kind {
                    Kind::Landline => (MessageStatus::Failed, "not_sms_capable"),
                    Kind::Spam => (MessageStatus::Undelivered, "filtered_as_spam"),
                    _ => (MessageStatus::Delivered, ""),
                };
                if (status, m.reason.as_str()) != expected || m.carrier_sid != sids[0] {
                    problems.push(format!(
                        "{} ({:?}) is {status:?} {} under sid {:?}; the carrier did {expected:?} under {}",
                        s.id, s.kind, m.reason, m.carrier_sid, sids[0]
                    ));
                }
            }
            n => {
                problems.push(format!(
                    "{} ({:?}) reached the carrier {n} times",
                    s.id, s.kind
                ));
                twice.push((s.id.clone(), body(s.i)));
            }
        }
    }
    // Every STOP is recorded and blocks the next send.
    let mut stops_honoured = 0;
    for k in 0..stoppers {
        let who = stopper(k);
        let status = platform
            .optouts
            .check_opt_out(as_caller(
                CheckOptOutRequest {
                    contact_number: who.clone(),
                },
                ORG,
                USER,
            ))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if !status.opted_out {
            problems.push(format!("{who}'s STOP was not recorded"));
            continue;
        }
        let after = SendMessageRequest {
            to: who.clone(),
            from: SENDERS[0].into(),
            body: format!("chaos-after-stop-{k}"),
            idempotency_key: format!("chaos-after-stop-{k}"),
            ..Default::default()
        };
        match send_until_answered(&platform.composers, after, k).await {
            Err(status) if status.code() == tonic::Code::FailedPrecondition => stops_honoured += 1,
            Err(status) => problems.push(format!("the send after {who}'s STOP got {status}")),
            Ok(m) => {
                let m =
                    sms_testkit::eventually(Duration::from_secs(60), "the send after STOP", || {
                        let mut client = client.clone();
                        let id = m.id.clone();
                        async move {
                            let m = client
                                .get_message(as_caller(GetMessageRequest { id }, ORG, USER))
                                .await
                                .ok()?
                                .into_inner()
                                .message?;
                            let s = sms_bus::status_from_proto(
                                MessageStatus::try_from(m.status).ok()?,
                            )?;
                            s.is_final().then_some(m)
                        }
                    })
                    .await;
                if m.reason == "opted_out" {
                    stops_honoured += 1;
                } else {
                    problems.push(format!("the send after {who}'s STOP ended {}", m.reason));
                }
            }
        }
        let reached = platform
            .sim
            .requests()
            .iter()
            .filter(|r| r.body == format!("chaos-after-stop-{k}") && r.http_status == 201)
            .count();
        if reached > 0 {
            problems.push(format!("the send after {who}'s STOP reached the carrier"));
        }
    }
    // Confirmations of the STOPs: at most one each.
    let confirmations: HashSet<String> = requests
        .iter()
        .filter(|r| r.http_status == 201 && !r.body.starts_with("chaos-"))
        .map(|r| r.to.clone())
        .collect();
    let confirmation_count = requests
        .iter()
        .filter(|r| r.http_status == 201 && !r.body.starts_with("chaos-"))
        .count();
    if confirmation_count > confirmations.len() {
        problems.push(format!(
            "{confirmation_count} STOP confirmations for {} contacts",
            confirmations.len()
        ));
    }

    println!("chaos: faults: {}", faults.len());
    // The slowest to settle (from acceptance to the final status, by the message's own
    // history), and how the dispatcher saw them: what the tail of convergence is made of.
    let span = |m: &Message| {
        let at = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
        };
        ((at(&m.updated_at) - at(&m.created_at)) * 10.0).round() as i64
    };
    let mut slowest: Vec<(i64, &Sent)> = sent
        .iter()
        .filter(|s| s.kind != Kind::Scheduled)
        .filter_map(|s| finals.get(&s.id).map(|m| (span(m), s)))
        .collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut spans: Vec<i64> = slowest.iter().map(|(d, _)| *d).collect();
    spans.sort_unstable();
    let pct = |q: f64| {
        spans
            .get(((spans.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "chaos: acceptance to final status (not scheduled): p50 {:.1} s, p99 {:.1} s, max {:.1} s",
        pct(0.5) as f64 / 10.0,
        pct(0.99) as f64 / 10.0,
        pct(1.0) as f64 / 10.0
    );
    for (d, s) in slowest.iter().take(3) {
        let full = client
            .get_message(as_caller(GetMessageRequest { id: s.id.clone() }, ORG, USER))
            .await
            .ok()
            .and_then(|m| m.into_inner().message)
            .unwrap_or_default();
        let history: Vec<String> = full
            .history
            .iter()
            .map(|h| {
                let status = MessageStatus::try_from(h.status).unwrap_or_default();
                let when = h.at.as_ref().map_or(0, |t| t.seconds);
                format!(
                    "{status:?}@{when} {}",
                    h.detail.chars().take(60).collect::<String>()
                )
            })
            .collect();
        println!(
            "chaos: settled in {:.1} s: {} ({:?}): {history:?}",
            *d as f64 / 10.0,
            s.id,
            s.kind
        );
        println!(
            "chaos:   dispatcher: {}",
            dispatcher_row(&platform, &s.id).await
        );
    }
    for id in unsent.iter().take(5) {
        println!("chaos: never reached the carrier {id}");
        println!(
            "chaos:   dispatcher: {}",
            dispatcher_row(&platform, id).await
        );
        for line in platform.procs.grep(id) {
            println!("chaos:   {line}");
        }
    }
    for (id, text) in twice.iter().take(5) {
        let calls: Vec<(u64, Option<String>)> = requests
            .iter()
            .filter(|r| r.http_status == 201 && &r.body == text)
            .map(|r| (r.received_at_ms, r.sid.clone()))
            .collect();
        println!("chaos: sent twice {id}: carrier took {calls:?}");
        println!(
            "chaos:   dispatcher: {}",
            dispatcher_row(&platform, id).await
        );
        // What the services said of it (the dispatcher logs each call in doubt and resolution).
        for line in platform.procs.grep(id) {
            println!("chaos:   {line}");
        }
    }
    println!(
        "chaos: accepted {} (refused {}, {refused_opted_out} of them as opted out); final {} of {}; converged {:.1} s after the load ended, {:.1} s after the last fault",
        sent.len(),
        refused.len(),
        finals.len(),
        sent.len(),
        converged_in.as_secs_f64(),
        after_faults.as_secs_f64()
    );
    println!(
        "chaos: carrier got 0: {}, 1: {}, >1: {}; statuses: {statuses:?}",
        carrier[0], carrier[1], carrier[2]
    );
    if protocol == Protocol::Smpp {
        let (acknowledged, waiting) = platform.sim.smpp_deliveries();
        println!(
            "chaos: SMPP: {failed_by_policy} failed as unknown by the at-most-once policy (answer never stored); deliver_sm acknowledged {acknowledged}, receipts still waiting for a bind {waiting}"
        );
    }
    println!(
        "chaos: STOPs honoured {stops_honoured} of {stoppers}; confirmations {confirmation_count}; wall {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !problems.is_empty() {
        println!("{}", platform.procs.tails(30));
    }
    assert!(
        problems.is_empty(),
        "{} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(40)]
    );
    assert_eq!(stops_honoured, stoppers);
}
