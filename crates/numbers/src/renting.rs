//! Numbers from the carrier: searching what it has for rent, renting, importing a number the
//! account holds already, and giving released numbers back.
//!
//! Renting spends money, so it is built to be retried: the rent is reserved first (one
//! organization at a time per number), the carrier is asked whether the account already holds
//! the number (a rent whose answer was lost, or that died before recording it) before anything
//! is bought, and the number is recorded only with what the carrier answered, in one
//! transaction with the end of the reservation. A failure halfway leaves no number recorded; a
//! retry finds the number the carrier sold us and records it, without buying it again.

use std::time::Duration;

use chrono::Utc;
use sms_core::phone::Region;
use sms_core::text::{self, Lines};
use sms_core::{NumberKind, PhoneNumber};
use sms_twilio::numbers::{Category, IncomingNumber, SearchQuery};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use sms_runtime::auth::Caller;

use crate::carrier::{CallError, Carrier};
use crate::error::{NumbersError, on_constraint};
use crate::numbers::Numbers;
use crate::store::{self, NumberRow, NumberSource};

/// Most numbers a search returns.
pub const MAX_SEARCH: u32 = 50;
/// Numbers a search returns when the caller does not say.
pub const DEFAULT_SEARCH: u32 = 20;
/// How long an unfinished rent holds its number for its organization alone.
pub const RENT_STALE_AFTER: Duration = Duration::from_secs(120);
/// How often released numbers still held at the carrier are given back, by default.
pub const GIVE_BACK_EVERY: Duration = Duration::from_secs(30);

/// Countries whose numbers have area codes (the North American plan).
pub(crate) const AREA_CODE_COUNTRIES: [&str; 3] = ["US", "CA", "PR"];

/// A search as asked for, checked.
#[derive(Debug)]
pub struct Search {
    /// Where.
    pub country: Region,
    /// Local, mobile or toll-free.
    pub category: Category,
    /// Area code, pattern, capabilities, how many.
    pub query: SearchQuery,
}

/// A number the carrier has for rent.
#[derive(Debug, Clone)]
pub struct Available {
    /// E.164.
    pub number: String,
    /// As the carrier writes it.
    pub friendly_name: String,
    /// ISO country.
    pub country: String,
    /// Its town, if the carrier says.
    pub locality: Option<String>,
    /// Its region (state, province), if the carrier says.
    pub region: Option<String>,
    /// Local, mobile or toll-free (what was searched for).
    pub category: Category,
    /// Whether it can text.
    pub sms: bool,
    /// Whether it can take MMS (only a number that texts can).
    pub mms: bool,
    /// Whether it takes calls.
    pub voice: bool,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    /// SMS-capable numbers first.
    pub numbers: Vec<Available>,
    /// Numbers exist, but none can text.
    pub voice_only: bool,
    /// In words.
    pub warnings: Vec<String>,
}

fn category_words(category: Category) -> &'static str {
    match category {
        Category::Local => "local",
        Category::Mobile => "mobile",
        Category::TollFree => "toll-free",
    }
}

fn carrier_error(e: CallError) -> NumbersError {
    match e {
        CallError::Unavailable(why) => NumbersError::CarrierUnavailable(why),
        CallError::Refused { code, message, .. } => NumbersError::CarrierRefused { code, message },
    }
}

impl Numbers {
    fn carrier(&self) -> Result<&Carrier, NumbersError> {
        self.carrier
            .as_ref()
            .ok_or(NumbersError::CarrierNotConfigured)
    }

    /// Numbers the carrier has for rent, SMS-capable ones first, with the voice-only warning.
    pub async fn search_available(
        &self,
        _caller: &Caller,
        search: Search,
    ) -> Result<Found, NumbersError> {
        let carrier = self.carrier()?;
        let country = search.country.as_str();
        let kind = category_words(search.category);
        let Some(mut numbers) = carrier
            .search(country, search.category, &search.query)
            .await
            .map_err(carrier_error)?
        else {
            return Ok(Found {
                warnings: vec![format!(
                    "the carrier rents no {kind} numbers in {country}; try another type"
                )],
                ..Found::default()
            });
        };
        numbers.sort_by_key(|n| !n.capabilities.sms);
        let mut found = Found::default();
        let texting = numbers.iter().filter(|n| n.capabilities.sms).count();
        if !numbers.is_empty() && texting == 0 && search.query.sms != Some(false) {
            found.voice_only = true;
            found.warnings.push(format!(
                "only voice-only {kind} numbers are available in {country}{}: they cannot send \
                 or receive SMS; rent one only knowingly (allow_voice_only)",
                area_words(&search.query)
            ));
        } else if numbers.is_empty() && search.query.sms == Some(true) {
            // Asked for numbers that text and found none: say whether voice-only ones exist.
            let any = SearchQuery {
                sms: None,
                mms: None,
                ..search.query.clone()
            };
            let others = carrier
                .search(country, search.category, &any)
                .await
                .map_err(carrier_error)?
                .unwrap_or_default();
            if !others.is_empty() {
                found.voice_only = true;
                found.warnings.push(format!(
                    "no {kind} numbers that can send SMS are available in {country}{}; only \
                     voice-only ones are (search without sms to see them; rent one only \
                     knowingly, with allow_voice_only)",
                    area_words(&search.query)
                ));
            }
        }
        if numbers.is_empty() && !found.voice_only {
            found.warnings.push(format!(
                "no {kind} numbers are available in {country}{} now",
                area_words(&search.query)
            ));
        }
        found.numbers = numbers
            .into_iter()
            .map(|n| Available {
                friendly_name: n.friendly_name,
                country: n.iso_country,
                locality: n.locality,
                region: n.region,
                category: search.category,
                sms: n.capabilities.sms,
                mms: n.capabilities.mms && n.capabilities.sms,
                voice: n.capabilities.voice,
                number: n.phone_number,
            })
            .collect();
        Ok(found)
    }

    /// Rents `number` from the carrier for the caller's organization. Safe to retry: a
    /// number the carrier already sold us is recorded, not bought again.
    pub async fn rent_number(
        &self,
        caller: &Caller,
        number: &str,
        owner: (Option<&str>, Option<&str>),
        allow_voice_only: bool,
    ) -> Result<(NumberRow, Vec<String>), NumbersError> {
        self.take_on(caller, number, owner, Some(allow_voice_only))
            .await
    }

    /// Takes on a number the carrier account holds already, with its capabilities there.
    pub async fn import_number(
        &self,
        caller: &Caller,
        number: &str,
        owner: (Option<&str>, Option<&str>),
    ) -> Result<(NumberRow, Vec<String>), NumbersError> {
        self.take_on(caller, number, owner, None).await
    }

    /// Rent (`rent` is `Some(allow_voice_only)`) or import (`None`).
    async fn take_on(
        &self,
        caller: &Caller,
        number: &str,
        owner: (Option<&str>, Option<&str>),
        rent: Option<bool>,
    ) -> Result<(NumberRow, Vec<String>), NumbersError> {
        let org = caller.organization_id.as_str();
        text::check(
            "number",
            number,
            sms_core::phone::MAX_INPUT_LEN,
            Lines::Single,
        )?;
        let parsed = PhoneNumber::parse_valid(number, None).map_err(NumbersError::InvalidNumber)?;
        let region = parsed.region();
        if !region.is_some_and(|r| r.sms_supported()) {
            return Err(NumbersError::UnsupportedCountry {
                region: region.map(|r| r.to_string()).unwrap_or_default(),
            });
        }
        let (owner_user_id, owner_group_id) = self.owner(org, owner.0, owner.1).await?;
        let carrier = self.carrier()?;
        let e164 = parsed.e164().to_owned();
        if store::numbers::holder(&self.pool, &e164).await?.is_some() {
            return Err(NumbersError::NumberTaken(e164));
        }
        if store::numbers::release_pending(&self.pool, &e164).await? {
            return Err(NumbersError::NumberUnavailable {
                number: e164,
                why: "it is being given back to the carrier; try again in a minute".to_owned(),
            });
        }
        if !store::numbers::reserve(&self.pool, &e164, org, RENT_STALE_AFTER.as_secs_f64()).await? {
            return Err(NumbersError::NumberUnavailable {
                number: e164,
                why: "another organization is renting it".to_owned(),
            });
        }
        let outcome = self
            .take_on_reserved(carrier, org, &parsed, rent, (owner_user_id, owner_group_id))
            .await;
        if let Err(e) = &outcome {
            // A definite failure frees the number; one where the carrier may have acted keeps
            // it for this organization's retry (until it is stale).
            if !matches!(e, NumbersError::CarrierUnavailable(_)) {
                let mut conn = self.pool.acquire().await?;
                store::numbers::unreserve(&mut conn, &e164, org).await?;
            }
        }
        outcome
    }

    async fn take_on_reserved(
        &self,
        carrier: &Carrier,
        org: &str,
        parsed: &PhoneNumber,
        rent: Option<bool>,
        (owner_user_id, owner_group_id): (Option<String>, Option<String>),
    ) -> Result<(NumberRow, Vec<String>), NumbersError> {
        let e164 = parsed.e164();
        let setup = carrier.setup(org, None);
        // Held already: an earlier rent of ours that did not finish, or a number to import.
        let (held, source) = match carrier.held(e164).await.map_err(carrier_error)? {
            Some(held) => (
                carrier
                    .configure(&held.sid, &setup)
                    .await
                    .map_err(carrier_error)?,
                if rent.is_some() {
                    NumberSource::Rented
                } else {
                    NumberSource::Imported
                },
            ),
            None => match rent {
                None => return Err(NumbersError::NotAtCarrier(e164.to_owned())),
                Some(allow_voice_only) => {
                    let Some(listed) = self.listed(carrier, parsed).await? else {
                        return Err(NumbersError::NumberUnavailable {
                            number: e164.to_owned(),
                            why: "the carrier does not list it as available".to_owned(),
                        });
                    };
                    if !listed.sms && !allow_voice_only {
                        return Err(NumbersError::VoiceOnlyNumber(e164.to_owned()));
                    }
                    let bought = carrier
                        .rent(&carrier.setup(org, Some(e164)))
                        .await
                        .map_err(|e| match e.code() {
                            Some(sms_twilio::numbers::UNAVAILABLE) => {
                                NumbersError::NumberUnavailable {
                                    number: e164.to_owned(),
                                    why: "someone else rented it meanwhile".to_owned(),
                                }
                            }
                            _ => carrier_error(e),
                        })?;
                    (bought, NumberSource::Rented)
                }
            },
        };
        let row = record(org, parsed, &held, source, owner_user_id, owner_group_id);
        let mut warnings = Vec::new();
        if !row.sms_capable {
            warnings.push(format!(
                "{e164} cannot send or receive SMS: the carrier lists it as voice-only"
            ));
        }
        let mut tx = self.pool.begin().await?;
        store::numbers::insert(&mut tx, &row).await.map_err(|e| {
            on_constraint(e, "numbers_number_key", || {
                NumbersError::NumberTaken(row.number.to_string())
            })
        })?;
        store::numbers::unreserve(&mut tx, e164, org).await?;
        self.announce_number(&mut tx, &row, true).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.written.wake();
        Ok((row, warnings))
    }

    /// The carrier's listing of `number` among the numbers for rent, if it has it: searched
    /// by its national digits in the categories its type may be.
    async fn listed(
        &self,
        carrier: &Carrier,
        parsed: &PhoneNumber,
    ) -> Result<Option<sms_twilio::numbers::Capabilities>, NumbersError> {
        let Some(region) = parsed.region() else {
            return Ok(None);
        };
        let categories: &[Category] = match parsed.number_type() {
            sms_core::NumberType::TollFree => &[Category::TollFree],
            sms_core::NumberType::Mobile => &[Category::Mobile, Category::Local],
            _ => &[Category::Local, Category::Mobile],
        };
        let national = parsed.national_digits();
        let query = SearchQuery {
            contains: Some(national),
            page_size: 5,
            ..SearchQuery::default()
        };
        for category in categories {
            let found = carrier
                .search(region.as_str(), *category, &query)
                .await
                .map_err(carrier_error)?
                .unwrap_or_default();
            if let Some(n) = found.into_iter().find(|n| n.phone_number == parsed.e164()) {
                return Ok(Some(n.capabilities));
            }
        }
        Ok(None)
    }

    /// Gives released numbers back to the carrier (only `id`, or a batch): each is locked
    /// while its call is made, so one replica gives each back. A number held again meanwhile
    /// stays with the carrier.
    pub(crate) async fn give_back(&self, id: Option<Uuid>) -> Result<usize, NumbersError> {
        let carrier = self.carrier()?;
        let mut tx = self.pool.begin().await?;
        let pending = store::numbers::lock_pending_releases(&mut tx, id, 20).await?;
        let mut done = 0;
        let mut failed = None;
        for p in pending {
            if !p.held_again {
                if let Err(e) = carrier.release(&p.carrier_sid).await {
                    tracing::warn!(number = %p.number, error = %e, "the carrier did not take the number back; will retry");
                    failed = Some(carrier_error(e));
                    continue;
                }
                tracing::info!(number = %p.number, sid = %p.carrier_sid, "number given back to the carrier");
            }
            store::numbers::release_done(&mut tx, p.id).await?;
            done += 1;
        }
        tx.commit().await?;
        match failed {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Now and then (`SMS_CARRIER_RELEASE_RETRY_MS`), gives back released numbers whose
    /// first try failed.
    pub async fn run_give_backs(self, shutdown: CancellationToken) {
        let Some(every) = self.carrier.as_ref().map(Carrier::release_retry) else {
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.give_back(None).await {
                tracing::warn!(error = %e, "giving released numbers back to the carrier");
            }
        }
    }
}

fn area_words(q: &SearchQuery) -> String {
    match (&q.area_code, &q.contains) {
        (Some(a), _) => format!(" in area code {a}"),
        (None, Some(c)) => format!(" matching {c}"),
        (None, None) => String::new(),
    }
}

/// The row of a number the carrier holds for us: its capabilities are the carrier's.
fn record(
    org: &str,
    parsed: &PhoneNumber,
    held: &IncomingNumber,
    source: NumberSource,
    owner_user_id: Option<String>,
    owner_group_id: Option<String>,
) -> NumberRow {
    let sms_capable = held.capabilities.sms;
    NumberRow {
        id: Uuid::now_v7(),
        organization_id: org.to_owned(),
        number: parsed.clone(),
        region: parsed.region().map(|r| r.to_string()).unwrap_or_default(),
        number_type: parsed.number_type(),
        sms_capable,
        mms_capable: sms_capable && held.capabilities.mms,
        voice_capable: held.capabilities.voice,
        kind: NumberKind::Internal,
        owner_user_id,
        owner_group_id,
        created_at: Utc::now(),
        send_rate: None,
        send_burst: None,
        source,
        carrier_sid: Some(held.sid.clone()),
        // Rented from the Twilio account: its messages go through it.
        carrier_connection: Some(crate::numbers::TWILIO_CONNECTION.to_owned()),
    }
}
