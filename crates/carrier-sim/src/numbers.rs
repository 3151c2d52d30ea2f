//! Phone numbers as Twilio sells them: an inventory per country (`AvailablePhoneNumbers`)
//! and the numbers each account holds (`IncomingPhoneNumbers`), with the webhook URL each
//! held number sends its incoming messages to.
//!
//! The inventory is the same on every start. Its mix is the carriers' usual one: in the US and
//! Canada local numbers that text (area codes 415, 510, 212, 416, 604) and toll-free numbers,
//! but voice-only local numbers in area code 907; mobile numbers that text elsewhere, with
//! voice-only local (geographic) numbers beside them; in Germany only voice-only local
//! numbers. MMS only on US, Canadian and Australian numbers.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sms_twilio::numbers::{
    AvailableNumber, AvailablePage, Category, IncomingNumber, IncomingPage, NumberSetup,
    SearchQuery,
};
use sms_twilio::{API_VERSION, ApiError};

use crate::sim::{Sim, api_error, authorized};
use crate::stock::Listing;
use crate::stock::Numbers;

impl Sim {
    fn lock_numbers(&self) -> std::sync::MutexGuard<'_, Numbers> {
        self.inner.numbers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where an incoming message to `number` goes: `Ok(Some(url))` for a held number with a
    /// URL set, `Ok(None)` for a number the carrier does not know (the simulator's general
    /// incoming URL then applies), or why nothing is delivered.
    pub(crate) fn route_incoming(&self, number: &str) -> Result<Option<String>, String> {
        let numbers = self.lock_numbers();
        if let Some(held) = numbers.holder(number) {
            return match held.sms_url.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => Ok(Some(url.to_owned())),
                None => Err(format!(
                    "{number} has no SmsUrl set: the message is dropped"
                )),
            };
        }
        if numbers.knows(number) {
            return Err(format!(
                "{number} is not in service: no account rents it, so nobody receives its messages"
            ));
        }
        Ok(None)
    }

    /// Whether `account_sid` may send from `from`: numbers of the inventory only when the
    /// account holds them and they can text; numbers outside it, always.
    pub(crate) fn may_send_from(&self, account_sid: &str, from: &str) -> bool {
        let numbers = self.lock_numbers();
        match numbers.holder(from) {
            Some(held) => held.account_sid == account_sid && held.capabilities.sms,
            None => !numbers.knows(from),
        }
    }

    /// How many times `number` was rented (for tests: a retry must not buy twice).
    pub fn rents(&self, number: &str) -> u32 {
        self.lock_numbers().rents(number)
    }

    /// The number `number` as its holder configured it, if an account holds it.
    pub fn held_number(&self, number: &str) -> Option<IncomingNumber> {
        self.lock_numbers().holder(number).cloned()
    }

    /// Puts `number` in `account_sid`'s hands as if it had been bought elsewhere (ported in,
    /// or rented through Twilio's console), with no webhook URL set.
    pub fn give_number(&self, account_sid: &str, number: &str) -> Option<IncomingNumber> {
        let mut numbers = self.lock_numbers();
        let listing = numbers.listings.get(number)?.clone();
        if numbers.by_number.contains_key(number) {
            return None;
        }
        let held = incoming(account_sid, number, &listing, &NumberSetup::default());
        numbers
            .by_number
            .insert(number.to_owned(), held.sid.clone());
        numbers.held.insert(held.sid.clone(), held.clone());
        Some(held)
    }
}

fn incoming(
    account_sid: &str,
    number: &str,
    listing: &Listing,
    setup: &NumberSetup,
) -> IncomingNumber {
    let sid = format!("PN{}", uuid::Uuid::new_v4().simple());
    IncomingNumber {
        uri: sms_twilio::numbers::incoming_number_path(account_sid, &sid),
        sid,
        account_sid: account_sid.to_owned(),
        phone_number: number.to_owned(),
        friendly_name: setup
            .friendly_name
            .clone()
            .unwrap_or_else(|| number.to_owned()),
        capabilities: listing.capabilities,
        sms_url: Some(setup.sms_url.clone()),
        sms_method: Some("POST".to_owned()),
        status_callback: Some(setup.status_callback.clone()),
        date_created: chrono::Utc::now().to_rfc2822(),
        api_version: API_VERSION.to_owned(),
    }
}

/// A refused call, when the account's credentials are wrong or the number API is down.
fn refuse(sim: &Sim, account_sid: &str, headers: &HeaderMap) -> Option<Response> {
    if !authorized(sim, account_sid, headers) {
        return Some(crate::sim::unauthorized());
    }
    if sim.behaviour().numbers_unavailable {
        return Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::new(503, 20503, "Service Unavailable"),
        ));
    }
    None
}

fn not_found(what: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        ApiError::new(
            404,
            sms_twilio::numbers::NOT_FOUND,
            format!("The requested resource {what} was not found"),
        ),
    )
}

/// `GET …/AvailablePhoneNumbers/{Country}/{Type}.json`.
pub(crate) async fn search(
    State(sim): State<Sim>,
    Path((account_sid, country, resource)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    let path =
        format!("/{API_VERSION}/Accounts/{account_sid}/AvailablePhoneNumbers/{country}/{resource}");
    let Some(category) = resource
        .strip_suffix(".json")
        .and_then(Category::from_resource)
    else {
        return not_found(&path);
    };
    let Some(query) =
        SearchQuery::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(400, 21452, "Invalid search parameter"),
        );
    };
    let numbers = sim.lock_numbers();
    // Twilio answers 404 for a country or a type it does not sell there.
    if !numbers
        .listings
        .values()
        .any(|l| l.country == country && l.category == category)
    {
        return not_found(&path);
    }
    let found: Vec<AvailableNumber> = numbers
        .listings
        .iter()
        .filter(|(n, l)| {
            l.country == country
                && l.category == category
                && !numbers.by_number.contains_key(*n)
                && query.area_code.as_ref().is_none_or(|a| {
                    n.strip_prefix("+1")
                        .is_some_and(|national| national.starts_with(a.as_str()))
                })
                && query
                    .contains
                    .as_ref()
                    .is_none_or(|c| sms_twilio::numbers::contains_matches(c, n))
                && query.sms.is_none_or(|s| l.capabilities.sms == s)
                && query.mms.is_none_or(|m| l.capabilities.mms == m)
                && query.voice.is_none_or(|v| l.capabilities.voice == v)
        })
        .take(query.page_size.clamp(1, 1000) as usize)
        .map(|(n, l)| AvailableNumber {
            phone_number: n.clone(),
            friendly_name: n.clone(),
            locality: (!l.locality.is_empty()).then(|| l.locality.to_owned()),
            region: l.region.map(str::to_owned),
            iso_country: l.country.to_owned(),
            address_requirements: Some("none".to_owned()),
            capabilities: l.capabilities,
        })
        .collect();
    axum::Json(AvailablePage {
        available_phone_numbers: found,
        uri: path,
    })
    .into_response()
}

/// `POST …/IncomingPhoneNumbers.json`: rents the number in `PhoneNumber`.
pub(crate) async fn rent(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    let setup = NumberSetup::from_form(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let Some(number) = setup.phone_number.clone() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            ApiError::new(400, 21421, "PhoneNumber is required"),
        );
    };
    let held = {
        let mut numbers = sim.lock_numbers();
        let listing = numbers.listings.get(&number).cloned();
        match listing {
            Some(listing) if !numbers.by_number.contains_key(&number) => {
                let held = incoming(&account_sid, &number, &listing, &setup);
                numbers.by_number.insert(number.clone(), held.sid.clone());
                numbers.held.insert(held.sid.clone(), held.clone());
                *numbers.rents.entry(number.clone()).or_default() += 1;
                held
            }
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    ApiError::new(
                        400,
                        sms_twilio::numbers::UNAVAILABLE,
                        format!("+{} is not available", number.trim_start_matches('+')),
                    ),
                );
            }
        }
    };
    // The number is bought; the answer may still be lost on its way back.
    let hang = {
        let b = sim.behaviour();
        b.rent_unanswered
            .then(|| b.hang.max(Duration::from_secs(1)))
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    (StatusCode::CREATED, axum::Json(held)).into_response()
}

/// `GET …/IncomingPhoneNumbers.json[?PhoneNumber=…]`: the account's numbers.
pub(crate) async fn list_held(
    State(sim): State<Sim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    let wanted = params
        .iter()
        .find(|(k, _)| k == "PhoneNumber")
        .map(|(_, v)| v.clone());
    let numbers = sim.lock_numbers();
    let mut held: Vec<IncomingNumber> = numbers
        .held
        .values()
        .filter(|n| n.account_sid == account_sid)
        .filter(|n| wanted.as_ref().is_none_or(|w| &n.phone_number == w))
        .cloned()
        .collect();
    held.sort_by(|a, b| a.phone_number.cmp(&b.phone_number));
    axum::Json(IncomingPage {
        incoming_phone_numbers: held,
        next_page_uri: None,
        uri: sms_twilio::numbers::incoming_numbers_path(&account_sid),
    })
    .into_response()
}

/// The sid in `{Sid}.json`, when the account holds it.
fn held_sid(sim: &Sim, account_sid: &str, file: &str) -> Option<String> {
    let sid = file.strip_suffix(".json")?;
    let numbers = sim.lock_numbers();
    numbers
        .held
        .get(sid)
        .filter(|n| n.account_sid == account_sid)
        .map(|n| n.sid.clone())
}

/// `GET …/IncomingPhoneNumbers/{Sid}.json`.
pub(crate) async fn fetch_held(
    State(sim): State<Sim>,
    Path((account_sid, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    match held_sid(&sim, &account_sid, &file)
        .and_then(|sid| sim.lock_numbers().held.get(&sid).cloned())
    {
        Some(n) => axum::Json(n).into_response(),
        None => not_found(&file),
    }
}

/// `POST …/IncomingPhoneNumbers/{Sid}.json`: sets its webhook URLs and label.
pub(crate) async fn update_held(
    State(sim): State<Sim>,
    Path((account_sid, file)): Path<(String, String)>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    let Some(sid) = held_sid(&sim, &account_sid, &file) else {
        return not_found(&file);
    };
    let mut numbers = sim.lock_numbers();
    let Some(n) = numbers.held.get_mut(&sid) else {
        return not_found(&file);
    };
    for (k, v) in &params {
        match k.as_str() {
            "SmsUrl" => n.sms_url = Some(v.clone()),
            "SmsMethod" => n.sms_method = Some(v.clone()),
            "StatusCallback" => n.status_callback = Some(v.clone()),
            "FriendlyName" => n.friendly_name = v.clone(),
            _ => {}
        }
    }
    axum::Json(n.clone()).into_response()
}

/// `DELETE …/IncomingPhoneNumbers/{Sid}.json`: gives the number back; it is for sale again.
pub(crate) async fn release(
    State(sim): State<Sim>,
    Path((account_sid, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&sim, &account_sid, &headers) {
        return r;
    }
    let Some(sid) = held_sid(&sim, &account_sid, &file) else {
        return not_found(&file);
    };
    let mut numbers = sim.lock_numbers();
    if let Some(n) = numbers.held.remove(&sid) {
        numbers.by_number.remove(&n.phone_number);
    }
    StatusCode::NO_CONTENT.into_response()
}
