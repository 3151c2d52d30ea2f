//! Numbers from the carrier: search, rent, import, release, against the simulator's
//! `AvailablePhoneNumbers` and `IncomingPhoneNumbers` (Twilio's wire format).

use std::collections::HashMap;
use std::time::Duration;

use sms_proto::v1::{
    AddNumberRequest, AvailableNumberType, ImportNumberRequest, ListNumbersRequest, NumberKind,
    NumberSource, PhoneNumber, ReleaseNumberRequest, RentNumberRequest,
    SearchAvailableNumbersRequest, SearchAvailableNumbersResponse, add_number_request,
    import_number_request, rent_number_request,
};
use sms_testkit::{
    ACCOUNT_SID, ORG, Options, Stack, USER, as_caller, as_user, eventually, send_ok, sms,
};
use tonic::Code;
use tonic_types::StatusExt;

const CONTACT: &str = "+15105550199";

fn refusal(status: tonic::Status) -> (Code, String, HashMap<String, String>) {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    (status.code(), info.reason, info.metadata)
}

fn search(country: &str, kind: AvailableNumberType, area: &str) -> SearchAvailableNumbersRequest {
    SearchAvailableNumbersRequest {
        country: country.into(),
        r#type: kind as i32,
        area_code: area.into(),
        ..Default::default()
    }
}

async fn search_ok(
    stack: &Stack,
    req: SearchAvailableNumbersRequest,
) -> SearchAvailableNumbersResponse {
    stack
        .numbers()
        .await
        .search_available_numbers(as_user(req))
        .await
        .unwrap()
        .into_inner()
}

fn rent(number: &str, allow_voice_only: bool) -> RentNumberRequest {
    RentNumberRequest {
        number: number.into(),
        owner: Some(rent_number_request::Owner::OwnerUserId(USER.into())),
        allow_voice_only,
    }
}

async fn rent_as(
    stack: &Stack,
    org: &str,
    req: RentNumberRequest,
) -> Result<(PhoneNumber, Vec<String>), (Code, String, HashMap<String, String>)> {
    stack
        .numbers()
        .await
        .rent_number(as_caller(req, org, USER))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.number.unwrap(), r.warnings)
        })
        .map_err(refusal)
}

async fn held_here(stack: &Stack, org: &str) -> Vec<String> {
    stack
        .numbers()
        .await
        .list_numbers(as_caller(ListNumbersRequest {}, org, USER))
        .await
        .unwrap()
        .into_inner()
        .numbers
        .into_iter()
        .map(|n| n.number)
        .collect()
}

/// Search by country and area code; rent: the number sends, and its incoming messages come to
/// us by the URL the rent set on it (the simulator's general incoming URL points nowhere);
/// release: sends from it are refused, the carrier has it back, and its messages no longer
/// reach us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_rent_send_receive_release() {
    let stack = Stack::start_with(Options {
        carrier_rates: true,
        ..Options::default()
    })
    .await;
    // Only a rented number's own SmsUrl can bring its messages to us.
    stack.sim.set_incoming_url("http://127.0.0.1:9/nowhere");

    let found = search_ok(&stack, search("US", AvailableNumberType::Local, "510")).await;
    assert!(!found.numbers.is_empty());
    assert!(!found.voice_only, "{:?}", found.warnings);
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    for n in &found.numbers {
        assert!(n.number.starts_with("+1510"), "{}", n.number);
        assert!(n.sms_capable && n.mms_capable && n.voice_capable);
        assert_eq!(n.country, "US");
        assert_eq!(n.locality, "Oakland");
        assert_eq!(n.r#type, AvailableNumberType::Local as i32);
    }
    let gb = search_ok(&stack, search("GB", AvailableNumberType::Mobile, "")).await;
    assert!(!gb.numbers.is_empty() && !gb.voice_only);
    assert!(
        gb.numbers
            .iter()
            .all(|n| n.sms_capable && !n.mms_capable && n.number.starts_with("+447"))
    );
    let limited = search_ok(
        &stack,
        SearchAvailableNumbersRequest {
            limit: 3,
            contains: "0303".into(),
            ..search("US", AvailableNumberType::Local, "")
        },
    )
    .await;
    assert!(!limited.numbers.is_empty() && limited.numbers.len() <= 3);
    assert!(limited.numbers.iter().all(|n| n.number.contains("0303")));

    // Rent the first: the carrier's capabilities, its sid, our webhooks on it.
    let number = found.numbers[0].number.clone();
    let (row, warnings) = rent_as(&stack, ORG, rent(&number, false)).await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(row.number, number);
    assert_eq!(row.source, NumberSource::Rented as i32);
    assert!(row.carrier_sid.starts_with("PN"), "{}", row.carrier_sid);
    assert!(row.sms_capable && row.mms_capable && row.voice_capable);
    assert_eq!(row.kind, NumberKind::Internal as i32);
    let at_carrier = stack
        .sim
        .held_number(&number)
        .expect("the carrier holds it");
    assert_eq!(at_carrier.sid, row.carrier_sid);
    assert_eq!(
        at_carrier.sms_url.as_deref(),
        Some(format!("{}/webhooks/twilio/incoming", stack.inbound_url).as_str())
    );
    assert_eq!(stack.sim.rents(&number), 1);
    let again = search_ok(&stack, search("US", AvailableNumberType::Local, "510")).await;
    assert!(
        again.numbers.iter().all(|n| n.number != number),
        "a rented number is no longer for sale"
    );

    // It sends and receives with nothing else set up.
    let mut messaging = stack.messaging().await;
    let sent = send_ok(
        &mut messaging,
        sms(&number, CONTACT, "hello from a rented number"),
    )
    .await;
    let done = stack.wait_final(&mut messaging, &sent.id).await;
    assert_eq!(done.status, sms_proto::v1::MessageStatus::Delivered as i32);
    let (status, _) = stack
        .sim
        .reply(CONTACT, &number, "got it", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the reply on the conversation",
        || async {
            stack
                .conversation(&number, CONTACT)
                .await
                .iter()
                .any(|m| m.body == "got it")
                .then_some(())
        },
    )
    .await;

    // Release: refused sends, back at the carrier, its messages no longer ours.
    let released = stack
        .numbers()
        .await
        .release_number(as_user(ReleaseNumberRequest {
            number: number.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert_eq!(released.number, number);
    assert!(
        stack.sim.held_number(&number).is_none(),
        "given back to the carrier"
    );
    let refused = messaging
        .send_message(as_user(sms(&number, CONTACT, "after the release")))
        .await
        .unwrap_err();
    let (code, reason, _) = refusal(refused);
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "UNKNOWN_SENDER")
    );
    let lost = stack
        .sim
        .reply(CONTACT, &number, "anyone there?", Vec::new())
        .await
        .unwrap_err();
    assert!(lost.contains("not in service"), "{lost}");
    let back = search_ok(&stack, search("US", AvailableNumberType::Local, "510")).await;
    assert!(
        back.numbers.iter().any(|n| n.number == number),
        "for sale again"
    );
    stack.shutdown().await;
}

/// Where the carrier has only voice-only numbers, the search says so; renting one needs
/// allow_voice_only, and the number is recorded as unable to text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_only_numbers_come_with_a_warning() {
    let stack = Stack::start().await;
    let anchorage = search_ok(&stack, search("US", AvailableNumberType::Local, "907")).await;
    assert!(anchorage.voice_only);
    assert!(!anchorage.numbers.is_empty());
    assert!(
        anchorage
            .numbers
            .iter()
            .all(|n| !n.sms_capable && n.voice_capable)
    );
    assert!(
        anchorage
            .warnings
            .iter()
            .any(|w| w.contains("only voice-only") && w.contains("907")),
        "{:?}",
        anchorage.warnings
    );
    // Asked for numbers that text: none, and the answer says voice-only ones exist.
    let texting = search_ok(
        &stack,
        SearchAvailableNumbersRequest {
            sms: Some(true),
            ..search("US", AvailableNumberType::Local, "907")
        },
    )
    .await;
    assert!(
        texting.numbers.is_empty() && texting.voice_only,
        "{texting:?}"
    );
    assert!(
        texting.warnings[0].contains("voice-only"),
        "{:?}",
        texting.warnings
    );
    // Germany: local numbers only, none texts; no mobile numbers at all.
    let de = search_ok(&stack, search("DE", AvailableNumberType::Local, "")).await;
    assert!(de.voice_only && !de.numbers.is_empty());
    let de_mobile = search_ok(&stack, search("DE", AvailableNumberType::Mobile, "")).await;
    assert!(de_mobile.numbers.is_empty() && !de_mobile.voice_only);
    assert!(
        de_mobile.warnings[0].contains("no mobile numbers in DE"),
        "{:?}",
        de_mobile.warnings
    );
    // A search that finds texting numbers warns of nothing.
    let toll_free = search_ok(&stack, search("US", AvailableNumberType::TollFree, "")).await;
    assert!(!toll_free.voice_only && toll_free.warnings.is_empty());

    let voice = anchorage.numbers[0].number.clone();
    let (code, reason, meta) = rent_as(&stack, ORG, rent(&voice, false)).await.unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "VOICE_ONLY_NUMBER")
    );
    assert_eq!(meta["number"], voice);
    assert_eq!(stack.sim.rents(&voice), 0, "nothing bought");
    let (row, warnings) = rent_as(&stack, ORG, rent(&voice, true)).await.unwrap();
    assert!(!row.sms_capable && !row.mms_capable && row.voice_capable);
    assert!(warnings[0].contains("voice-only"), "{warnings:?}");
    // It is not offered as a sender.
    let refused = stack
        .messaging()
        .await
        .send_message(as_user(sms(&voice, "+19075550111", "hi")))
        .await
        .unwrap_err();
    assert_eq!(refusal(refused).1, "SENDER_NOT_SMS_CAPABLE");
    stack.shutdown().await;
}

/// A number the account already holds is imported with the carrier's capabilities: a US
/// landline the numbering plan cannot tell from a mobile is recorded as voice-only (AddNumber
/// would have guessed it texts), and its incoming messages are pointed at us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_records_the_carriers_capabilities() {
    let stack = Stack::start().await;
    let anchorage = search_ok(&stack, search("US", AvailableNumberType::Local, "907")).await;
    let landline = anchorage.numbers[0].number.clone();
    let guessed = anchorage.numbers[1].number.clone();
    let gb = search_ok(&stack, search("GB", AvailableNumberType::Mobile, "")).await;
    let mobile = gb.numbers[0].number.clone();
    stack.sim.give_number(ACCOUNT_SID, &landline).unwrap();
    stack.sim.give_number(ACCOUNT_SID, &mobile).unwrap();
    assert_eq!(
        stack.sim.held_number(&mobile).unwrap().sms_url.as_deref(),
        Some("")
    );

    let import = |number: &str| ImportNumberRequest {
        number: number.into(),
        owner: Some(import_number_request::Owner::OwnerUserId(USER.into())),
    };
    let mut client = stack.numbers().await;
    let got = client
        .import_number(as_user(import(&landline)))
        .await
        .unwrap()
        .into_inner();
    let row = got.number.unwrap();
    assert_eq!(row.source, NumberSource::Imported as i32);
    assert!(!row.sms_capable && row.voice_capable, "{row:?}");
    assert_eq!(row.number_type, "fixed_line_or_mobile");
    assert!(got.warnings[0].contains("voice-only"));
    let row = client
        .import_number(as_user(import(&mobile)))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert!(
        row.sms_capable && !row.mms_capable && row.voice_capable,
        "{row:?}"
    );
    assert_eq!(row.carrier_sid, stack.sim.held_number(&mobile).unwrap().sid);
    assert_eq!(
        stack.sim.held_number(&mobile).unwrap().sms_url.as_deref(),
        Some(format!("{}/webhooks/twilio/incoming", stack.inbound_url).as_str())
    );
    assert_eq!(stack.sim.rents(&mobile), 0, "imported, not bought");
    // The numbering plan alone guesses the same kind of US number texts.
    let added = client
        .add_number(as_user(AddNumberRequest {
            number: guessed.clone(),
            kind: NumberKind::Internal as i32,
            owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .number
        .unwrap();
    assert!(added.sms_capable);
    assert_eq!(added.source, NumberSource::Recorded as i32);
    // A number the account does not hold cannot be imported.
    let (code, reason, _) = refusal(
        client
            .import_number(as_user(import(&gb.numbers[1].number)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "NUMBER_NOT_AT_CARRIER")
    );
    stack.shutdown().await;
}

/// Every bad search and rent gets its own reason; nothing is bought or recorded by a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_and_rents_are_refused_with_reasons() {
    let stack = Stack::start().await;
    let mut client = stack.numbers().await;
    let cases: Vec<(SearchAvailableNumbersRequest, Code, &str)> = vec![
        (
            search("XX", AvailableNumberType::Local, ""),
            Code::InvalidArgument,
            "INVALID_COUNTRY",
        ),
        (
            search("", AvailableNumberType::Local, ""),
            Code::InvalidArgument,
            "INVALID_COUNTRY",
        ),
        (
            search("JP", AvailableNumberType::Local, ""),
            Code::InvalidArgument,
            "UNSUPPORTED_COUNTRY",
        ),
        (
            SearchAvailableNumbersRequest {
                r#type: 9,
                ..search("US", AvailableNumberType::Local, "")
            },
            Code::InvalidArgument,
            "UNKNOWN_NUMBER_TYPE",
        ),
        (
            search("US", AvailableNumberType::Local, "51a"),
            Code::InvalidArgument,
            "INVALID_AREA_CODE",
        ),
        (
            search("US", AvailableNumberType::Local, "5101"),
            Code::InvalidArgument,
            "INVALID_AREA_CODE",
        ),
        (
            search("GB", AvailableNumberType::Local, "207"),
            Code::InvalidArgument,
            "INVALID_AREA_CODE",
        ),
        (
            search("US", AvailableNumberType::TollFree, "833"),
            Code::InvalidArgument,
            "INVALID_AREA_CODE",
        ),
        (
            SearchAvailableNumbersRequest {
                contains: "5-1".into(),
                ..search("US", AvailableNumberType::Local, "")
            },
            Code::InvalidArgument,
            "INVALID_PATTERN",
        ),
        (
            SearchAvailableNumbersRequest {
                contains: "***".into(),
                ..search("US", AvailableNumberType::Local, "")
            },
            Code::InvalidArgument,
            "INVALID_PATTERN",
        ),
    ];
    for (req, code, reason) in cases {
        let what = format!("{req:?}");
        let got = refusal(
            client
                .search_available_numbers(as_user(req))
                .await
                .unwrap_err(),
        );
        assert_eq!((got.0, got.1.as_str()), (code, reason), "{what}");
    }

    let found = search_ok(&stack, search("US", AvailableNumberType::Local, "415")).await;
    let number = found.numbers[0].number.clone();
    let not_for_sale = "+12015550100";
    let rents: Vec<(RentNumberRequest, Code, &str)> = vec![
        (
            rent("not a number", false),
            Code::InvalidArgument,
            "INVALID_NUMBER",
        ),
        (
            rent("+81312345678", false),
            Code::InvalidArgument,
            "UNSUPPORTED_COUNTRY",
        ),
        (
            rent(not_for_sale, false),
            Code::FailedPrecondition,
            "NUMBER_UNAVAILABLE",
        ),
        (
            RentNumberRequest {
                owner: None,
                ..rent(&number, false)
            },
            Code::InvalidArgument,
            "MISSING_OWNER",
        ),
        (
            RentNumberRequest {
                owner: Some(rent_number_request::Owner::OwnerGroupId(
                    uuid::Uuid::nil().to_string(),
                )),
                ..rent(&number, false)
            },
            Code::NotFound,
            "GROUP_NOT_FOUND",
        ),
    ];
    for (req, code, reason) in rents {
        let what = format!("{req:?}");
        let got = rent_as(&stack, ORG, req).await.unwrap_err();
        assert_eq!((got.0, got.1.as_str()), (code, reason), "{what}");
    }
    assert_eq!(stack.sim.rents(&number), 0);
    assert!(held_here(&stack, ORG).await.is_empty(), "nothing recorded");

    // Rented by one organization: another is told it is taken, and cannot release it.
    rent_as(&stack, ORG, rent(&number, false)).await.unwrap();
    let (code, reason, _) = rent_as(&stack, "org-b", rent(&number, false))
        .await
        .unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::AlreadyExists, "NUMBER_ALREADY_EXISTS")
    );
    let (code, reason, _) = refusal(
        client
            .release_number(as_caller(
                ReleaseNumberRequest {
                    number: number.clone(),
                },
                "org-b",
                USER,
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "NUMBER_NOT_FOUND")
    );
    assert!(stack.sim.held_number(&number).is_some(), "still held");
    // Taken at the carrier by someone else since the search: no longer available.
    let gone = found.numbers[1].number.clone();
    stack
        .sim
        .give_number("ACsomeoneelse00000000000000000000", &gone)
        .unwrap();
    let (code, reason, meta) = rent_as(&stack, ORG, rent(&gone, false)).await.unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "NUMBER_UNAVAILABLE")
    );
    assert_eq!(meta["number"], gone);
    assert_eq!(held_here(&stack, ORG).await, vec![number]);
    stack.shutdown().await;
}

/// The carrier takes the rent but its answer never arrives: nothing is recorded, the number
/// stays reserved for this organization, and the retry records the number the carrier sold
/// without buying it again. A release the carrier cannot take at once stops the number here
/// at once and is given back when the carrier answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rent_whose_answer_is_lost_is_recorded_by_the_retry_and_bought_once() {
    let stack = Stack::start_with(Options {
        carrier_timeout: Duration::from_millis(800),
        ..Options::default()
    })
    .await;
    let found = search_ok(&stack, search("CA", AvailableNumberType::Local, "604")).await;
    let number = found.numbers[0].number.clone();
    stack.sim.update(|b| {
        b.rent_unanswered = true;
        b.hang = Duration::from_secs(3);
    });
    let (code, reason, _) = rent_as(&stack, ORG, rent(&number, false))
        .await
        .unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unavailable, "CARRIER_UNAVAILABLE")
    );
    assert_eq!(stack.sim.rents(&number), 1, "the carrier sold it");
    assert!(
        held_here(&stack, ORG).await.is_empty(),
        "nothing half-recorded"
    );
    // Another organization cannot take it while this one's rent may resume.
    let (code, reason, _) = rent_as(&stack, "org-b", rent(&number, false))
        .await
        .unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "NUMBER_UNAVAILABLE")
    );

    stack.sim.update(|b| b.rent_unanswered = false);
    let (row, _) = rent_as(&stack, ORG, rent(&number, false)).await.unwrap();
    assert_eq!(row.source, NumberSource::Rented as i32);
    assert_eq!(row.carrier_sid, stack.sim.held_number(&number).unwrap().sid);
    assert_eq!(stack.sim.rents(&number), 1, "bought once");
    assert_eq!(held_here(&stack, ORG).await, vec![number.clone()]);

    // The carrier's number API down: searches say so; a release still takes effect here.
    stack.sim.update(|b| b.numbers_unavailable = true);
    let (code, reason, _) = refusal(
        stack
            .numbers()
            .await
            .search_available_numbers(as_user(search("US", AvailableNumberType::Local, "")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unavailable, "CARRIER_UNAVAILABLE")
    );
    stack
        .numbers()
        .await
        .release_number(as_user(ReleaseNumberRequest {
            number: number.clone(),
        }))
        .await
        .unwrap();
    assert!(held_here(&stack, ORG).await.is_empty());
    assert!(
        stack.sim.held_number(&number).is_some(),
        "the carrier did not answer"
    );
    let (code, reason, _) = rent_as(&stack, "org-b", rent(&number, false))
        .await
        .unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "NUMBER_UNAVAILABLE")
    );
    stack.sim.update(|b| b.numbers_unavailable = false);
    eventually(Duration::from_secs(10), "the number given back", || async {
        stack.sim.held_number(&number).is_none().then_some(())
    })
    .await;
    // Now another organization can rent it.
    let (row, _) = rent_as(&stack, "org-b", rent(&number, false))
        .await
        .unwrap();
    assert_eq!(row.organization_id, "org-b");
    assert_eq!(stack.sim.rents(&number), 2);
    stack.shutdown().await;
}
