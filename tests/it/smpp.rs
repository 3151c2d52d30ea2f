//! The SMPP carrier over TCP, against the simulator's SMSC: parts, receipts in any form and on
//! any bind, contacts' messages in parts, throttling, a connection cut mid-window.

use std::time::Duration;

use sms_carrier_sim::ReceiptIds;
use sms_proto::v1::{Message, MessageStatus};
use sms_testkit::{Options, Stack, as_user, eventually, send_ok, sms};
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";

async fn smpp_stack(change: impl FnOnce(&mut Options)) -> Stack {
    let mut options = Options {
        smpp: Some(sms_testkit::smpp_config()),
        ..Options::default()
    };
    change(&mut options);
    let stack = Stack::start_with(options).await;
    stack.add_number(OURS).await;
    eventually(Duration::from_secs(10), "the SMPP bind", || async {
        (stack.sim.smpp_binds() > 0).then_some(())
    })
    .await;
    stack
}

fn status(m: &Message) -> MessageStatus {
    MessageStatus::try_from(m.status).unwrap()
}

fn lifecycle(m: &Message) -> Vec<MessageStatus> {
    m.history
        .iter()
        .map(|h| MessageStatus::try_from(h.status).unwrap())
        .filter(|s| *s != MessageStatus::Sending)
        .collect()
}

/// Each message ends delivered.
async fn all_delivered(stack: &Stack, ids: &[String]) {
    let mut client = stack.messaging().await;
    for id in ids {
        let m = stack.wait_final(&mut client, id).await;
        assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_part_ucs2_message_goes_as_three_parts_and_is_delivered_once() {
    let stack = smpp_stack(|_| {}).await;
    let mut client = stack.messaging().await;
    let body = "Привет, Ана! Это Сэм из Acme. ".repeat(5);
    let counted = sms_core::count(&body);
    assert_eq!(
        (counted.encoding, counted.segments),
        (sms_core::encoding::Encoding::Ucs2, 3)
    );
    let id = send_ok(&mut client, sms(OURS, CONTACT, &body)).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    assert_eq!(m.segments, 3);
    let m = eventually(Duration::from_secs(10), "the whole history", || {
        let id = id.clone();
        let stack = &stack;
        async move {
            let m = stack.message(&id).await;
            (lifecycle(&m)
                == [
                    MessageStatus::Accepted,
                    MessageStatus::Queued,
                    MessageStatus::Sent,
                    MessageStatus::Delivered,
                ])
            .then_some(m)
        }
    })
    .await;
    let parts = stack.sim.smpp_parts();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(
        parts
            .iter()
            .all(|p| p.data_coding == 8 && p.command_status == 0)
    );
    let mut seqs: Vec<(u8, &str)> = parts
        .iter()
        .map(|p| (p.part_of.unwrap().2, p.text.as_str()))
        .collect();
    seqs.sort_unstable();
    let whole: String = seqs.iter().map(|(_, t)| *t).collect();
    assert_eq!(whole, body);
    // The carrier's id is the first part's, as the SMSC answered it.
    assert_eq!(Some(m.carrier_sid.clone()), parts[0].message_id);
    let requests = stack.sim.requests();
    assert_eq!(requests.len(), 1, "one message reached the SMSC");
    assert_eq!(requests[0].body, body);
    // Its validity, as a relative validity_period: what is left of the default (at most
    // Twilio's 10 hours' worth, counted down from acceptance).
    let validity = requests[0].validity_period.expect("a validity_period");
    assert!(
        (36_000 - 60..=36_000).contains(&validity),
        "validity {validity}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_match_in_hex_decimal_and_zero_padded_form_and_say_why() {
    let stack = smpp_stack(|_| {}).await;
    let mut client = stack.messaging().await;
    for (i, form) in [
        ReceiptIds::AsAnswered,
        ReceiptIds::Decimal,
        ReceiptIds::ZeroPadded,
    ]
    .into_iter()
    .enumerate()
    {
        stack.sim.update(|b| b.smpp.receipt_ids = form);
        let to = format!("+1201555013{i}");
        let id = send_ok(&mut client, sms(OURS, &to, &format!("form {form:?}")))
            .await
            .id;
        let m = stack.wait_final(&mut client, &id).await;
        assert_eq!(status(&m), MessageStatus::Delivered, "{form:?}: {m:?}");
    }
    // What the receipts say, in our words.
    let (spam, landline, unknown) = ("+12015550141", "+12015550142", "+12015550143");
    stack.sim.update(|b| {
        b.smpp.receipt_ids = ReceiptIds::Decimal;
        b.spam.insert(spam.into());
        b.landlines.insert(landline.into());
        b.unknown_error.insert(unknown.into());
    });
    for (to, expected, reason) in [
        (spam, MessageStatus::Undelivered, "filtered_as_spam"),
        (landline, MessageStatus::Failed, "not_sms_capable"),
        (unknown, MessageStatus::Failed, "unknown_carrier_error"),
    ] {
        let id = send_ok(&mut client, sms(OURS, to, "will it arrive?"))
            .await
            .id;
        let m = stack.wait_final(&mut client, &id).await;
        assert_eq!(
            (status(&m), m.reason.as_str()),
            (expected, reason),
            "{to}: {m:?}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_before_the_answer_and_receipts_on_another_bind_update_their_message() {
    let stack = smpp_stack(|o| {
        if let Some(smpp) = &mut o.smpp {
            smpp.session.binds = 2;
        }
    })
    .await;
    eventually(Duration::from_secs(10), "both binds", || async {
        (stack.sim.smpp_binds() == 2).then_some(())
    })
    .await;
    let mut client = stack.messaging().await;
    let early = "+12015550151";
    stack.sim.update(|b| {
        b.smpp.receipt_first.insert(early.into());
    });
    let id = send_ok(&mut client, sms(OURS, early, "the receipt comes first"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    stack.sim.update(|b| b.smpp.receipts_elsewhere = true);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            send_ok(&mut client, sms(OURS, CONTACT, &format!("elsewhere {i}")))
                .await
                .id,
        );
    }
    all_delivered(&stack, &ids).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mo_stop_opts_out_and_a_two_part_reply_in_reverse_reaches_the_inbox_whole() {
    let stack = smpp_stack(|_| {}).await;
    let (status_code, _) = stack
        .sim
        .reply(CONTACT, OURS, "STOP", Vec::new())
        .await
        .unwrap();
    assert_eq!(status_code, 200);
    eventually(Duration::from_secs(10), "the opt-out", || async {
        let mut client = stack.messaging().await;
        client
            .send_message(as_user(sms(OURS, CONTACT, "still there?")))
            .await
            .err()
            .and_then(|e| e.get_details_error_info())
            .filter(|i| i.reason == "OPTED_OUT")
            .map(|_| ())
    })
    .await;
    stack.sim.update(|b| b.smpp.mo_reversed = true);
    let other = "+12015550161";
    let long = format!("{} the end", "Yes, Tuesday at ten works for me. ".repeat(6));
    assert_eq!(sms_core::count(&long).segments, 2);
    let (status_code, _) = stack
        .sim
        .reply(other, OURS, &long, Vec::new())
        .await
        .unwrap();
    assert_eq!(status_code, 200);
    let conversation = eventually(Duration::from_secs(10), "the reply", || async {
        let c = stack.conversation(OURS, other).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(conversation.len(), 1);
    assert_eq!(conversation[0].body, long);
    // The SMSC sending a message again (our answer lost on the way): delivered once.
    let again = "Did you get this?";
    let part = sms_smpp::parts::parts(again, 0, Default::default())
        .unwrap()
        .remove(0);
    let pdu = sms_smpp::pdu::message_deliver_sm(
        &sms_smpp::pdu::Address::of(other).unwrap(),
        &sms_smpp::pdu::Address::of(OURS).unwrap(),
        &part,
    )
    .unwrap();
    stack.sim.deliver_raw(pdu.clone()).await.unwrap();
    stack.sim.deliver_raw(pdu).await.unwrap();
    eventually(Duration::from_secs(10), "the message", || async {
        let c = stack.conversation(OURS, other).await;
        c.iter().any(|m| m.body == again).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = stack.conversation(OURS, other).await;
    assert_eq!(c.iter().filter(|m| m.body == again).count(), 1, "{c:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_a_burst_down_without_failing_or_reordering_it() {
    let stack = smpp_stack(|_| {}).await;
    // The sender at a rate of its own (20 a second): its messages go out one after another,
    // as a sender's do, not all in the same instant.
    stack
        .numbers()
        .await
        .set_number_rate(as_user(sms_proto::v1::SetNumberRateRequest {
            number: OURS.into(),
            send_rate: 20.0,
            send_burst: 1,
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut client = stack.messaging().await;
    stack.sim.update(|b| {
        b.throttled.insert(CONTACT.into(), 4);
    });
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            send_ok(&mut client, sms(OURS, CONTACT, &format!("burst {i}")))
                .await
                .id,
        );
    }
    all_delivered(&stack, &ids).await;
    let parts = stack.sim.smpp_parts();
    let throttled = parts.iter().filter(|p| p.command_status == 0x58).count();
    assert_eq!(throttled, 4, "the SMSC throttled 4 submissions");
    let taken: Vec<String> = stack.sim.requests().into_iter().map(|r| r.body).collect();
    let sent: Vec<String> = (0..8).map(|i| format!("burst {i}")).collect();
    assert_eq!(taken, sent, "in the order sent, each once");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_window_loses_nothing_and_sends_nothing_twice() {
    let stack = smpp_stack(|o| {
        o.sim.behaviour.api_latency = Duration::from_millis(300);
        // A submit_sm written and never answered is in doubt: with the at-most-once policy
        // it fails once its lease is over.
        o.carrier_timeout = Duration::from_secs(4);
        o.in_doubt_after = Duration::from_secs(10);
    })
    .await;
    let mut client = stack.messaging().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let to = format!("+120155502{i:02}");
        ids.push(
            send_ok(&mut client, sms(OURS, &to, &format!("cut {i}")))
                .await
                .id,
        );
    }
    // Some answers are still held by the SMSC's latency when the connection goes.
    tokio::time::sleep(Duration::from_millis(150)).await;
    stack.sim.cut_smpp();
    let mut outcomes = std::collections::HashMap::new();
    for id in &ids {
        let m = stack.wait_final(&mut client, id).await;
        *outcomes.entry(status(&m)).or_insert(0) += 1;
        if status(&m) == MessageStatus::Failed {
            // Written, unanswered, and the policy is at most once.
            assert_eq!(m.reason, "unknown_carrier_error", "{m:?}");
        }
    }
    let requests = stack.sim.requests();
    let mut bodies: Vec<&str> = requests.iter().map(|r| r.body.as_str()).collect();
    bodies.sort_unstable();
    let before = bodies.len();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        before,
        "nothing reached the SMSC twice: {requests:?}"
    );
    // Delivered or failed as unknown (taken by the SMSC, its answer lost with the
    // connection): each message once, none lost.
    let delivered = outcomes
        .get(&MessageStatus::Delivered)
        .copied()
        .unwrap_or(0);
    let failed = outcomes.get(&MessageStatus::Failed).copied().unwrap_or(0);
    assert_eq!(delivered + failed, ids.len(), "{outcomes:?}");
    assert!(delivered <= bodies.len(), "{outcomes:?}");
    println!("cut mid-window: {outcomes:?}");
    stack.shutdown().await;
}

/// One PDU's bytes, built by hand: what a misbehaving peer can put on the wire.
fn raw_pdu(command_id: u32, status: u32, sequence: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + body.len());
    b.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(&command_id.to_be_bytes());
    b.extend_from_slice(&status.to_be_bytes());
    b.extend_from_slice(&sequence.to_be_bytes());
    b.extend_from_slice(body);
    b
}

type Wire = tokio_util::codec::Framed<tokio::net::TcpStream, sms_smpp::codec::Framing>;

async fn next_command(wire: &mut Wire) -> Option<rusmpp::Command> {
    use futures::StreamExt;
    match tokio::time::timeout(Duration::from_secs(10), wire.next()).await {
        Ok(Some(Ok(sms_smpp::codec::Frame::Command(c)))) => Some(*c),
        _ => None,
    }
}

async fn write_raw(wire: &mut Wire, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    wire.get_mut().write_all(bytes).await.unwrap();
}

/// `(command id, status, sequence)` of an answer.
fn answer_of(c: &rusmpp::Command) -> (u32, u32, u32) {
    (
        u32::from(c.id()),
        u32::from(c.status()),
        c.sequence_number(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_smsc_is_answered_as_the_specification_says_and_the_bind_comes_back() {
    use futures::SinkExt;
    use rusmpp::{Command, CommandStatus, Pdu};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let smsc = tokio::spawn(async move {
        let mut binds = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let mut wire = Wire::new(stream, sms_smpp::codec::Framing::default());
            let bind = next_command(&mut wire).await.unwrap();
            assert!(
                matches!(bind.pdu(), Some(Pdu::BindTransceiver(_))),
                "{bind:?}"
            );
            binds += 1;
            let resp = rusmpp::pdus::BindTransceiverResp::new(
                rusmpp::types::COctetString::from_vec(b"HOSTILE\0".to_vec()).unwrap(),
                None,
            );
            if binds == 1 {
                // The first bind refused (ESME_RBINDFAIL): the adapter binds again later.
                wire.send(Command::new(
                    CommandStatus::from(0x0D),
                    bind.sequence_number(),
                    resp,
                ))
                .await
                .unwrap();
                let _ = seen_tx.send("bind refused");
                continue;
            }
            wire.send(Command::new(
                CommandStatus::EsmeRok,
                bind.sequence_number(),
                resp,
            ))
            .await
            .unwrap();
            if binds == 2 {
                // An enquire_link, a deliver_sm whose body cannot be read, an unknown
                // command, a receipt for an id never sent, the first part of a message whose
                // second never comes, and a message in a coding nobody can read.
                wire.send(Command::new(CommandStatus::EsmeRok, 100, Pdu::EnquireLink))
                    .await
                    .unwrap();
                write_raw(&mut wire, &raw_pdu(0x0000_0005, 0, 101, b"abcde")).await;
                write_raw(&mut wire, &raw_pdu(0x0000_0777, 0, 102, b"")).await;
                let contact = sms_smpp::pdu::Address::of(CONTACT).unwrap();
                let ours = sms_smpp::pdu::Address::of(OURS).unwrap();
                let receipt = sms_smpp::Receipt {
                    id: sms_smpp::SmscId::parse("DEADBEEF").unwrap(),
                    state: sms_smpp::MessageState::Delivered,
                    error: None,
                };
                let text = receipt.text("2612071200", "2612071201", "never sent");
                let pdu =
                    sms_smpp::pdu::receipt_deliver_sm(&contact, &ours, &receipt, &text).unwrap();
                wire.send(Command::new(CommandStatus::EsmeRok, 103, pdu))
                    .await
                    .unwrap();
                let long = "a part of a message whose other part never comes. ".repeat(4);
                let parts = sms_smpp::parts::parts(&long, 9, Default::default()).unwrap();
                let pdu = sms_smpp::pdu::message_deliver_sm(&contact, &ours, &parts[0]).unwrap();
                wire.send(Command::new(CommandStatus::EsmeRok, 104, pdu))
                    .await
                    .unwrap();
                let binary = sms_smpp::parts::Part {
                    data_coding: 0x04,
                    esm_class: 0,
                    short_message: vec![1, 2, 3],
                    sar: None,
                };
                let pdu = sms_smpp::pdu::message_deliver_sm(&contact, &ours, &binary).unwrap();
                wire.send(Command::new(CommandStatus::EsmeRok, 105, pdu))
                    .await
                    .unwrap();
                let mut got = Vec::new();
                while got.len() < 6 {
                    let Some(c) = next_command(&mut wire).await else {
                        break;
                    };
                    if c.sequence_number() >= 100 {
                        got.push(answer_of(&c));
                    }
                }
                got.sort_by_key(|a| a.2);
                answers_tx.send(got).unwrap();
                // Then a length nobody should believe: the adapter must hang up and bind again.
                write_raw(
                    &mut wire,
                    &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 107],
                )
                .await;
                assert!(
                    next_command(&mut wire).await.is_none(),
                    "the adapter kept a stream it cannot read"
                );
                continue;
            }
            // The third bind is served well: each submit_sm taken, its receipt sent.
            let mut id = 0x00AB_C000_u32;
            while let Some(c) = next_command(&mut wire).await {
                match c.pdu() {
                    Some(Pdu::SubmitSm(s)) => {
                        id += 1;
                        let message_id = format!("{id:X}");
                        let resp = rusmpp::pdus::SubmitSmResp::builder()
                            .message_id(
                                rusmpp::types::COctetString::from_vec(
                                    format!("{message_id}\0").into_bytes(),
                                )
                                .unwrap(),
                            )
                            .build();
                        wire.send(Command::new(
                            CommandStatus::EsmeRok,
                            c.sequence_number(),
                            resp,
                        ))
                        .await
                        .unwrap();
                        let submitted = sms_smpp::pdu::submitted(s);
                        let receipt = sms_smpp::Receipt {
                            id: sms_smpp::SmscId::parse(&message_id).unwrap(),
                            state: sms_smpp::MessageState::Delivered,
                            error: None,
                        };
                        let pdu = sms_smpp::pdu::receipt_deliver_sm(
                            &submitted.to,
                            &submitted.from,
                            &receipt,
                            &receipt.text("2612071200", "2612071201", "ok"),
                        )
                        .unwrap();
                        wire.send(Command::new(CommandStatus::EsmeRok, 500 + id, pdu))
                            .await
                            .unwrap();
                    }
                    Some(Pdu::EnquireLink) => {
                        let _ = seen_tx.send("enquire_link");
                        wire.send(Command::new(
                            CommandStatus::EsmeRok,
                            c.sequence_number(),
                            Pdu::EnquireLinkResp,
                        ))
                        .await
                        .unwrap();
                    }
                    Some(Pdu::Unbind) => {
                        let _ = seen_tx.send("unbind");
                        let _ = wire
                            .send(Command::new(
                                CommandStatus::EsmeRok,
                                c.sequence_number(),
                                Pdu::UnbindResp,
                            ))
                            .await;
                    }
                    _ => {}
                }
            }
        }
    });
    let stack = Stack::start_with(Options {
        smpp: Some({
            let mut c = sms_testkit::smpp_config();
            c.session.addr = addr;
            // Idle binds ask whether the SMSC is there.
            c.session.enquire_link = Duration::from_millis(300);
            c
        }),
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let got = tokio::time::timeout(Duration::from_secs(20), answers.recv())
        .await
        .expect("the adapter answered")
        .unwrap();
    assert_eq!(
        got,
        [
            (0x8000_0015, 0x00, 100), // enquire_link_resp
            (0x8000_0000, 0x02, 101), // generic_nack, ESME_RINVCMDLEN
            (0x8000_0000, 0x03, 102), // generic_nack, ESME_RINVCMDID
            (0x8000_0005, 0x00, 103), // deliver_sm_resp: the receipt is kept for its part
            (0x8000_0005, 0x00, 104), // deliver_sm_resp: the part is kept for the rest
            (0x8000_0005, 0x65, 105), // deliver_sm_resp, ESME_RX_P_APPN: never readable
        ]
    );
    // After the absurd length: bound again, and sending works.
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(OURS, CONTACT, "after the storm"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    // What was kept: the receipt for an id never sent, and the lone part.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&stack.database_url)
        .await
        .unwrap();
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM dispatcher.smpp_receipts WHERE id_text = 'deadbeef'),
                (SELECT count(*) FROM dispatcher.smpp_mo_parts)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(kept, (1, 1));
    // Idle, the adapter asks (enquire_link); stopping, it unbinds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stack.shutdown().await;
    let mut said = Vec::new();
    while let Ok(Some(what)) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await {
        said.push(what);
    }
    assert_eq!(said.first(), Some(&"bind refused"), "{said:?}");
    assert!(said.contains(&"enquire_link"), "{said:?}");
    assert_eq!(said.last(), Some(&"unbind"), "{said:?}");
    smsc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_smsc_refuses_bad_binds_and_bad_pdus_and_survives_them() {
    use futures::SinkExt;
    use rusmpp::{Command, CommandStatus, Pdu};
    let sim = sms_carrier_sim::Sim::new(sms_carrier_sim::SimConfig::new("AC1", "t")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sim.clone().serve_smpp(listener, stop.clone()));
    let connect = || async {
        Wire::new(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            sms_smpp::codec::Framing::default(),
        )
    };
    let bind = |password: &str| {
        rusmpp::pdus::BindTransceiver::builder()
            .system_id(rusmpp::types::COctetString::from_vec(b"sim\0".to_vec()).unwrap())
            .password(
                rusmpp::types::COctetString::from_vec(format!("{password}\0").into_bytes())
                    .unwrap(),
            )
            .build()
    };
    // Anything before a bind.
    let mut wire = connect().await;
    wire.send(Command::new(CommandStatus::EsmeRok, 1, Pdu::EnquireLink))
        .await
        .unwrap();
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0000, 0x04, 1)
    );
    // A wrong password.
    let mut wire = connect().await;
    wire.send(Command::new(CommandStatus::EsmeRok, 1, bind("nope")))
        .await
        .unwrap();
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0009, 0x0E, 1)
    );
    assert!(
        next_command(&mut wire).await.is_none(),
        "closed after a refused bind"
    );
    // Bound: a PDU that cannot be read and an unknown command are refused, and the bind lives.
    let mut wire = connect().await;
    wire.send(Command::new(
        CommandStatus::EsmeRok,
        1,
        bind(sms_carrier_sim::DEFAULT_SMPP_PASSWORD),
    ))
    .await
    .unwrap();
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0009, 0, 1)
    );
    write_raw(&mut wire, &raw_pdu(0x0000_0004, 0, 2, b"\x00\x01")).await;
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0000, 0x02, 2)
    );
    write_raw(&mut wire, &raw_pdu(0x0001_2345, 0, 3, b"xyz")).await;
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0000, 0x03, 3)
    );
    wire.send(Command::new(CommandStatus::EsmeRok, 4, Pdu::EnquireLink))
        .await
        .unwrap();
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0015, 0, 4)
    );
    // An absurd length: the SMSC hangs up; a new bind is taken as before.
    write_raw(
        &mut wire,
        &[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5],
    )
    .await;
    assert!(next_command(&mut wire).await.is_none());
    let mut wire = connect().await;
    wire.send(Command::new(
        CommandStatus::EsmeRok,
        1,
        bind(sms_carrier_sim::DEFAULT_SMPP_PASSWORD),
    ))
    .await
    .unwrap();
    assert_eq!(
        answer_of(&next_command(&mut wire).await.unwrap()),
        (0x8000_0009, 0, 1)
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_binds_the_smsc_allows_and_take_over_those_of_one_that_stops() {
    let mut stack = smpp_stack(|o| {
        o.dispatchers = 2;
        if let Some(smpp) = &mut o.smpp {
            smpp.session.binds = 2;
        }
    })
    .await;
    // Two replicas, two binds allowed: one each, never more in all.
    eventually(Duration::from_secs(15), "two binds", || async {
        (stack.sim.smpp_binds() == 2).then_some(())
    })
    .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            stack.sim.smpp_binds() <= 2,
            "{} binds",
            stack.sim.smpp_binds()
        );
    }
    // A third replica joins: still two binds in all.
    stack.start_dispatcher();
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            stack.sim.smpp_binds() <= 2,
            "{} binds",
            stack.sim.smpp_binds()
        );
    }
    // Two stop: the one left takes both slots, and sends.
    stack.stop_dispatcher(0).await;
    stack.stop_dispatcher(0).await;
    eventually(
        Duration::from_secs(20),
        "both binds on the replica left",
        || async { (stack.sim.smpp_binds() == 2).then_some(()) },
    )
    .await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(OURS, CONTACT, "still bound"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_number_sends_through_its_own_carrier_connection() {
    use sms_proto::v1::{AddNumberRequest, SetNumberCarrierRequest, add_number_request};
    let (twilio_number, smpp_number) = ("+12015550100", "+12015550104");
    // Twilio is the default; the SMPP connection serves the numbers routed to it.
    let stack = smpp_stack(|o| o.smpp_default = false).await;
    stack.add_number(smpp_number).await;
    stack.sim.update(|b| {
        b.smpp.all_numbers = false;
        b.smpp.numbers.insert(smpp_number.into());
    });
    let mut numbers = stack.numbers().await;
    // A connection the platform does not have is refused by name.
    let refused = numbers
        .set_number_carrier(as_user(SetNumberCarrierRequest {
            number: smpp_number.into(),
            carrier_connection: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let info = refused.get_details_error_info().unwrap();
    assert_eq!(info.reason, "UNKNOWN_CARRIER_CONNECTION");
    assert_eq!(info.metadata["known"], "twilio,smpp-sim");
    let refused = numbers
        .add_number(as_user(AddNumberRequest {
            number: "+12015550105".into(),
            kind: sms_proto::v1::NumberKind::Internal as i32,
            owner: Some(add_number_request::Owner::OwnerUserId(
                sms_testkit::USER.into(),
            )),
            carrier_connection: "smpp-elsewhere".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "UNKNOWN_CARRIER_CONNECTION"
    );
    let routed = numbers
        .set_number_carrier(as_user(SetNumberCarrierRequest {
            number: smpp_number.into(),
            carrier_connection: "smpp-sim".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(routed.carrier_connection, "smpp-sim");
    // The dispatcher follows the route from the number's state.
    let mut client = stack.messaging().await;
    let via_smpp = eventually(Duration::from_secs(10), "the route", || {
        let mut client = client.clone();
        let stack = &stack;
        async move {
            let id = send_ok(&mut client, sms(smpp_number, CONTACT, "which way?"))
                .await
                .id;
            stack.wait_final(&mut client, &id).await;
            let over_smpp = stack.sim.smpp_parts().iter().any(|p| p.from == smpp_number);
            over_smpp.then_some(id)
        }
    })
    .await;
    let m = stack.message(&via_smpp).await;
    assert_eq!(status(&m), MessageStatus::Delivered);
    let id = send_ok(&mut client, sms(twilio_number, CONTACT, "the usual way"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered);
    let twilio_request = stack
        .sim
        .requests()
        .into_iter()
        .find(|r| r.body == "the usual way")
        .unwrap();
    assert!(
        !twilio_request.status_callback.is_empty(),
        "through the Messages API, with a status callback"
    );
    assert!(
        !stack
            .sim
            .smpp_parts()
            .iter()
            .any(|p| p.text == "the usual way")
    );
    // An MMS cannot go over SMPP: refused at the API, by name.
    let png = {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.resize(200, 0);
        v
    };
    let refused = client
        .send_message(as_user(sms_proto::v1::SendMessageRequest {
            attachments: vec![sms_proto::v1::NewAttachment {
                file_name: "a.png".into(),
                content_type: "image/png".into(),
                data: png,
                url: String::new(),
            }],
            ..sms(smpp_number, CONTACT, "a picture")
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "SENDER_NOT_MMS_CAPABLE"
    );
    assert!(
        refused.message().contains("text only"),
        "{}",
        refused.message()
    );
    // Contacts' messages come the way their number's carrier delivers them.
    stack
        .sim
        .reply(CONTACT, smpp_number, "over SMPP", Vec::new())
        .await
        .unwrap();
    stack
        .sim
        .reply(CONTACT, twilio_number, "over the webhook", Vec::new())
        .await
        .unwrap();
    for (ours, body) in [
        (smpp_number, "over SMPP"),
        (twilio_number, "over the webhook"),
    ] {
        eventually(Duration::from_secs(10), body, || async {
            stack
                .conversation(ours, CONTACT)
                .await
                .iter()
                .any(|m| m.body == body)
                .then_some(())
        })
        .await;
    }
    // Back to the default: the next message goes through Twilio.
    numbers
        .set_number_carrier(as_user(SetNumberCarrierRequest {
            number: smpp_number.into(),
            carrier_connection: String::new(),
        }))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the default route", || {
        let mut client = client.clone();
        let stack = &stack;
        async move {
            let body = format!("back {}", uuid::Uuid::new_v4());
            let id = send_ok(&mut client, sms(smpp_number, CONTACT, &body))
                .await
                .id;
            stack.wait_final(&mut client, &id).await;
            stack
                .sim
                .requests()
                .iter()
                .any(|r| r.body == body && !r.status_callback.is_empty())
                .then_some(())
        }
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_over_tls_trust_the_named_ca_and_send() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/smpp-tls");
    let server =
        sms_smpp::tls::server_config(&fixtures.join("server.pem"), &fixtures.join("server.key"))
            .unwrap();
    let sim = sms_carrier_sim::Sim::new(sms_carrier_sim::SimConfig::new("AC1", "t")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sim.clone().serve_smpp_tls(listener, server, stop.clone()));
    // A client that does not trust the CA (the platform's roots) gets no bind.
    let untrusting = sms_smpp::tls::client_config(None).unwrap();
    let name = sms_smpp::tls::server_name("localhost").unwrap();
    let handshake = sms_smpp::tls::connect(&addr.to_string(), Some((&untrusting, &name))).await;
    assert!(
        handshake.is_err(),
        "a certificate no root vouches for was taken"
    );
    // The adapter, trusting the CA, binds and sends.
    let mut config = sms_testkit::smpp_config();
    config.session.addr = format!("localhost:{}", addr.port());
    config.session.tls = Some(sms_dispatcher::smpp::SessionTls {
        config: sms_smpp::tls::client_config(Some(&fixtures.join("ca.pem"))).unwrap(),
        name,
    });
    let stack = Stack::start_with(Options {
        smpp: Some(config),
        ..Options::default()
    })
    .await;
    stack.add_number(OURS).await;
    let mut client = stack.messaging().await;
    let id = send_ok(&mut client, sms(OURS, CONTACT, "over TLS"))
        .await
        .id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    assert!(sim.smpp_parts().iter().any(|p| p.text == "over TLS"));
    stop.cancel();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_all_the_parts_at_once_settle_every_message() {
    // Each part's receipt at the same moment, on two binds: applied concurrently, they must
    // still settle their message (the last one applied sees the others).
    let stack = smpp_stack(|o| {
        o.sim.behaviour.callback_delay = Duration::from_millis(300);
        if let Some(smpp) = &mut o.smpp {
            smpp.session.binds = 2;
        }
    })
    .await;
    let mut client = stack.messaging().await;
    let body = "Four parts of UCS-2 text — каждый. ".repeat(6);
    assert_eq!(sms_core::count(&body).segments, 4);
    let mut ids = Vec::new();
    for i in 0..12 {
        let to = format!("+120155503{i:02}");
        ids.push(send_ok(&mut client, sms(OURS, &to, &body)).await.id);
    }
    all_delivered(&stack, &ids).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transmitter_and_receiver_pair_with_sar_and_packed_gsm7_carries_both_ways() {
    let stack = smpp_stack(|o| {
        o.sim.smpp_gsm7 = sms_smpp::parts::Gsm7Packing::Packed;
        if let Some(smpp) = &mut o.smpp {
            smpp.session.mode = sms_dispatcher::smpp::BindMode::Pair;
            smpp.session.gsm7 = sms_smpp::parts::Gsm7Packing::Packed;
            smpp.parts = sms_smpp::parts::PartSettings {
                concatenation: sms_smpp::parts::Concatenation::Sar,
                gsm7: sms_smpp::parts::Gsm7Packing::Packed,
            };
        }
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "a transmitter and a receiver",
        || async { (stack.sim.smpp_binds() == 2).then_some(()) },
    )
    .await;
    let mut client = stack.messaging().await;
    let body = "Hello Ana, {this} costs 5€ [today] only; see you ~10am. ".repeat(4);
    let counted = sms_core::count(&body);
    assert_eq!(counted.encoding, sms_core::encoding::Encoding::Gsm7);
    let id = send_ok(&mut client, sms(OURS, CONTACT, &body)).await.id;
    let m = stack.wait_final(&mut client, &id).await;
    assert_eq!(status(&m), MessageStatus::Delivered, "{m:?}");
    let parts = stack.sim.smpp_parts();
    assert_eq!(parts.len(), counted.segments);
    assert!(
        parts
            .iter()
            .all(|p| p.data_coding == 0 && p.esm_class & 0x40 == 0)
    );
    assert_eq!(stack.sim.requests()[0].body, body);
    // A long reply comes back on the receiver, in packed parts.
    let reply = "Sure: {Tuesday} at 10 works; bring the €50 deposit. ".repeat(4);
    let (code, _) = stack
        .sim
        .reply(CONTACT, OURS, &reply, Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 200);
    eventually(Duration::from_secs(10), "the reply", || async {
        let c = stack.conversation(OURS, CONTACT).await;
        c.iter().any(|m| m.body == reply).then_some(())
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reply_missing_a_part_is_delivered_with_the_gap_marked() {
    let stack = smpp_stack(|o| o.mo_part_timeout = Duration::from_secs(1)).await;
    let contact = sms_smpp::pdu::Address::of(CONTACT).unwrap();
    let ours = sms_smpp::pdu::Address::of(OURS).unwrap();
    let text = "the first part arrives, the second never does. ".repeat(4);
    let parts = sms_smpp::parts::parts(&text, 77, Default::default()).unwrap();
    assert_eq!(parts.len(), 2);
    // Only the first part, straight from the SMSC.
    stack
        .sim
        .deliver_raw(sms_smpp::pdu::message_deliver_sm(&contact, &ours, &parts[0]).unwrap())
        .await
        .unwrap();
    let got = eventually(Duration::from_secs(15), "the incomplete reply", || async {
        let c = stack.conversation(OURS, CONTACT).await;
        c.into_iter().find(|m| m.body.ends_with("[…]"))
    })
    .await;
    assert!(
        got.body.starts_with("the first part arrives"),
        "{}",
        got.body
    );
    stack.shutdown().await;
}
