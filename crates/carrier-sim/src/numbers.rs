//! Phone numbers as Twilio sells them: an inventory per country (`AvailablePhoneNumbers`)
//! and the numbers each account holds (`IncomingPhoneNumbers`), with the webhook URL each
//! held number sends its incoming messages to.
//!
//! The inventory is the same on every start. Its mix is the carriers' usual one: in the US and
//! Canada local numbers that text (area codes 415, 510, 212, 416, 604) and toll-free numbers,
//! but voice-only local numbers in area code 907; mobile numbers that text elsewhere, with
//! voice-only local (geographic) numbers beside them; in Germany only voice-only local
//! numbers. MMS only on US, Canadian and Australian numbers.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sms_twilio::numbers::{
    AvailableNumber, AvailablePage, Capabilities, Category, IncomingNumber, IncomingPage,
    NumberSetup, SearchQuery,
};
use sms_twilio::{API_VERSION, ApiError};

use crate::{Sim, api_error, authorized};

/// One number of the inventory.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    country: &'static str,
    category: Category,
    capabilities: Capabilities,
    locality: &'static str,
    region: Option<&'static str>,
}

/// Numbers for sale and numbers held.
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    /// Every number the carrier has (sold or not), by E.164.
    listings: BTreeMap<String, Listing>,
    /// Held numbers: sid → resource.
    held: HashMap<String, IncomingNumber>,
    /// Held numbers: E.164 → sid.
    by_number: HashMap<String, String>,
    /// Successful rents, by number, for tests: a number bought twice shows here.
    rents: HashMap<String, u32>,
}

/// (country, category, E.164 prefix the last two digits are added to, capabilities,
/// locality, state or province).
type Block = (
    &'static str,
    Category,
    &'static str,
    (bool, bool, bool),
    &'static str,
    Option<&'static str>,
);

/// Voice, SMS, MMS.
const ALL: (bool, bool, bool) = (true, true, true);
const TEXT: (bool, bool, bool) = (true, true, false);
const VOICE: (bool, bool, bool) = (true, false, false);

const BLOCKS: &[Block] = &[
    (
        "US",
        Category::Local,
        "+141555503",
        ALL,
        "San Francisco",
        Some("CA"),
    ),
    (
        "US",
        Category::Local,
        "+151055503",
        ALL,
        "Oakland",
        Some("CA"),
    ),
    (
        "US",
        Category::Local,
        "+121255503",
        ALL,
        "New York",
        Some("NY"),
    ),
    (
        "US",
        Category::Local,
        "+190755503",
        VOICE,
        "Anchorage",
        Some("AK"),
    ),
    ("US", Category::TollFree, "+183355503", ALL, "", None),
    (
        "CA",
        Category::Local,
        "+141655503",
        ALL,
        "Toronto",
        Some("ON"),
    ),
    (
        "CA",
        Category::Local,
        "+160455503",
        ALL,
        "Vancouver",
        Some("BC"),
    ),
    ("CA", Category::TollFree, "+185555503", ALL, "", None),
    (
        "PR",
        Category::Local,
        "+178723457",
        TEXT,
        "San Juan",
        Some("PR"),
    ),
    ("AU", Category::Mobile, "+614123457", ALL, "", None),
    ("AU", Category::Local, "+612123457", VOICE, "Sydney", None),
    ("GB", Category::Mobile, "+4474001235", TEXT, "", None),
    (
        "GB",
        Category::Local,
        "+4412123457",
        VOICE,
        "Birmingham",
        None,
    ),
    ("DE", Category::Local, "+49301235", VOICE, "Berlin", None),
    ("FR", Category::Mobile, "+336123457", TEXT, "", None),
    ("FR", Category::Local, "+331234568", VOICE, "Paris", None),
    ("BE", Category::Mobile, "+324701235", TEXT, "", None),
    ("BE", Category::Local, "+32123457", VOICE, "Brussels", None),
    ("DK", Category::Mobile, "+45321235", TEXT, "", None),
    ("IL", Category::Mobile, "+9725023457", TEXT, "", None),
    (
        "IL",
        Category::Local,
        "+972212346",
        VOICE,
        "Jerusalem",
        None,
    ),
    ("ZA", Category::Mobile, "+277112346", TEXT, "", None),
    (
        "ZA",
        Category::Local,
        "+271012346",
        VOICE,
        "Johannesburg",
        None,
    ),
    ("AT", Category::Mobile, "+4366412346", TEXT, "", None),
    ("AT", Category::Local, "+4312345679", VOICE, "Vienna", None),
    ("CH", Category::Mobile, "+417812346", TEXT, "", None),
    ("CH", Category::Local, "+412123457", VOICE, "Lausanne", None),
    ("FI", Category::Mobile, "+3584123457", TEXT, "", None),
    ("FI", Category::Local, "+358131235", VOICE, "Joensuu", None),
    ("NL", Category::Mobile, "+316123457", TEXT, "", None),
    (
        "NL",
        Category::Local,
        "+311012346",
        VOICE,
        "Rotterdam",
        None,
    ),
    ("PL", Category::Mobile, "+485123457", TEXT, "", None),
    ("PL", Category::Local, "+481234568", VOICE, "Kraków", None),
    ("SE", Category::Mobile, "+467012346", TEXT, "", None),
    ("SE", Category::Local, "+4681235", VOICE, "Stockholm", None),
];

/// Numbers per block.
const PER_BLOCK: usize = 12;

impl Numbers {
    /// The inventory: every valid number of each block, the first [`PER_BLOCK`] of them.
    pub(crate) fn stocked() -> Numbers {
        let mut listings = BTreeMap::new();
        for &(country, category, prefix, (voice, sms, mms), locality, region) in BLOCKS {
            let numbers = (0..100)
                .map(|i| format!("{prefix}{i:02}"))
                .filter(|n| {
                    sms_core::PhoneNumber::parse_valid(n, None).is_ok_and(|p| {
                        if category == Category::TollFree {
                            // North American toll-free numbers belong to no one country.
                            p.number_type() == sms_core::NumberType::TollFree
                        } else {
                            p.region().is_some_and(|r| r.as_str() == country)
                        }
                    })
                })
                .take(PER_BLOCK);
            for n in numbers {
                listings.insert(
                    n,
                    Listing {
                        country,
                        category,
                        capabilities: Capabilities { voice, sms, mms },
                        locality,
                        region,
                    },
                );
            }
        }
        Numbers {
            listings,
            ..Numbers::default()
        }
    }

    /// Whether the carrier knows `number` at all (numbers outside its inventory are someone
    /// else's, and the simulator lets them through as it always did).
    pub(crate) fn knows(&self, number: &str) -> bool {
        self.listings.contains_key(number)
    }

    /// The held number `number`, if an account holds it.
    pub(crate) fn holder(&self, number: &str) -> Option<&IncomingNumber> {
        self.by_number
            .get(number)
            .and_then(|sid| self.held.get(sid))
    }

    /// Times `number` was rented.
    pub(crate) fn rents(&self, number: &str) -> u32 {
        self.rents.get(number).copied().unwrap_or(0)
    }
}

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
        return Some(crate::unauthorized());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every supported country has numbers; the blocks' numbers are all valid and where they
    /// say they are.
    #[test]
    fn the_inventory_covers_every_supported_country() {
        let numbers = Numbers::stocked();
        let mut short = Vec::new();
        for &(country, category, prefix, ..) in BLOCKS {
            let n = numbers
                .listings
                .iter()
                .filter(|(num, l)| {
                    l.country == country && l.category == category && num.starts_with(prefix)
                })
                .count();
            if n != PER_BLOCK {
                short.push(format!("{country} {category:?} {prefix}: {n}"));
            }
        }
        assert!(short.is_empty(), "{short:#?}");
        for country in sms_core::phone::SMS_COUNTRIES {
            let n = numbers
                .listings
                .values()
                .filter(|l| l.country == country)
                .count();
            assert!(n >= PER_BLOCK, "{country}: {n} numbers");
        }
        // Germany: only voice-only numbers; Anchorage too.
        assert!(
            numbers
                .listings
                .iter()
                .filter(|(n, l)| l.country == "DE" || n.starts_with("+1907"))
                .all(|(_, l)| !l.capabilities.sms)
        );
    }
}
