//! `submit_sm` throughput through the SMPP adapter to the simulator's SMSC (run with
//! `cargo bench -p sms-e2e --bench smpp`).
//!
//! The raw baseline, in the same run: a bare client on one bind writing the same PDUs with the
//! same window, matching answers by sequence number and nothing else. Then the adapter
//! (`sms_dispatcher::smpp::Smpp`, the carrier the dispatcher calls): one message per call, from
//! many senders at once, on one bind with the same window. Receipts are held back by the SMSC
//! (a long delay) so both runs measure submissions alone. Reported: messages a second for each,
//! and the adapter's as a ratio of the raw client's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rusmpp::{Command, CommandStatus, Pdu};
use sms_dispatcher::Carrier;
use sms_smpp::codec::{Frame, Framing};
use sms_smpp::pdu::{Address, Submit};
use tokio_util::codec::Framed;

const MESSAGES: usize = 40_000;
const WINDOW: usize = 64;
const SENDERS: usize = 256;

fn sender(i: usize) -> String {
    format!("+1201555{:04}", i % SENDERS)
}

fn recipient(i: usize) -> String {
    format!("+1201666{:04}", i % 10_000)
}

fn body(i: usize) -> String {
    format!("bench message {i}: see you at 10")
}

/// The bare client: bind, then keep WINDOW submit_sm in flight until every one is answered.
async fn raw(addr: &str) -> Duration {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut wire = Framed::new(stream, Framing::default());
    let bind = rusmpp::pdus::BindTransceiver::builder()
        .system_id(rusmpp::types::COctetString::from_vec(b"sim\0".to_vec()).unwrap())
        .password(rusmpp::types::COctetString::from_vec(b"simpass\0".to_vec()).unwrap())
        .build();
    wire.send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .unwrap();
    let _ = wire.next().await.unwrap().unwrap();
    // The PDUs built before the clock starts, as the adapter's are built from the message.
    let pdus: VecDeque<Pdu> = (0..MESSAGES)
        .map(|i| {
            let (from, to) = (
                Address::of(&sender(i)).unwrap(),
                Address::of(&recipient(i)).unwrap(),
            );
            let part = sms_smpp::parts::parts(&body(i), 0, Default::default())
                .unwrap()
                .remove(0);
            Pdu::SubmitSm(
                sms_smpp::pdu::submit_sm(Submit {
                    from: &from,
                    to: &to,
                    part: &part,
                    validity_seconds: Some(3600),
                })
                .unwrap(),
            )
        })
        .collect();
    let mut pdus = pdus;
    let start = Instant::now();
    let (mut in_flight, mut answered, mut sequence) = (0usize, 0usize, 1u32);
    while answered < MESSAGES {
        while in_flight < WINDOW
            && let Some(pdu) = pdus.pop_front()
        {
            sequence += 1;
            wire.feed(Command::new(CommandStatus::EsmeRok, sequence, pdu))
                .await
                .unwrap();
            in_flight += 1;
        }
        wire.flush().await.unwrap();
        match wire.next().await.unwrap().unwrap() {
            Frame::Command(c) if matches!(c.pdu(), Some(Pdu::SubmitSmResp(_))) => {
                assert_eq!(c.status(), CommandStatus::EsmeRok);
                answered += 1;
                in_flight -= 1;
            }
            _ => {}
        }
    }
    start.elapsed()
}

struct Nothing;

#[async_trait::async_trait]
impl sms_dispatcher::Deliveries for Nothing {
    async fn delivered(
        &self,
        _: &str,
        _: sms_smpp::pdu::Delivered,
        _: Option<sms_core::Reason>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The adapter: every message through `Carrier::send`, SENDERS senders at once.
async fn adapter(addr: &str) -> Duration {
    let mut config = sms_testkit::smpp_config();
    config.session.addr = addr.to_owned();
    config.session.window = WINDOW;
    let smpp = Arc::new(sms_dispatcher::smpp::Smpp::new(
        config,
        Duration::from_secs(30),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = smpp
        .start(sms_dispatcher::CarrierContext {
            deliveries: Arc::new(Nothing),
            slots: None,
            shutdown: stop.clone(),
        })
        .unwrap();
    // Bound before the clock starts.
    let probe = sms_dispatcher::CarrierMessage {
        from: sender(0),
        to: recipient(0),
        body: "warm-up".into(),
        status_callback: None,
        media_urls: Vec::new(),
        validity_seconds: 3600,
        traceparent: None,
    };
    smpp.send(&probe).await.unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (smpp, next) = (smpp.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= MESSAGES {
                    return;
                }
                let m = sms_dispatcher::CarrierMessage {
                    from: sender(i),
                    to: recipient(i),
                    body: body(i),
                    status_callback: None,
                    media_urls: Vec::new(),
                    validity_seconds: 3600,
                    traceparent: None,
                };
                smpp.send(&m).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    stop.cancel();
    let _ = running.await;
    elapsed
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = sms_carrier_sim::SimConfig::new("ACbench", "token");
        // Receipts after the runs: submissions alone are measured.
        config.behaviour.callback_delay = Duration::from_secs(3600);
        let sim = sms_carrier_sim::Sim::new(config).unwrap();
        let listener =
            sms_runtime::health::bind_std(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // The SMSC on its own runtime, as it would be on its own host.
        let smsc = sim.clone();
        sms_testkit::cluster::serve_apart("smsc", listener, move |l| {
            smsc.serve_smpp(l, tokio_util::sync::CancellationToken::new())
        });
        println!(
            "smpp: {MESSAGES} single-part messages, window {WINDOW}, one transceiver bind, {SENDERS} senders"
        );
        for round in 1..=2 {
            let raw = raw(&addr).await;
            let through = adapter(&addr).await;
            let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
            println!(
                "smpp: round {round}: raw client {:.0} submit_sm/s; adapter {:.0} messages/s = {:.2}x raw",
                rate(raw),
                rate(through),
                rate(through) / rate(raw)
            );
        }
    });
}
