//! The organization's numbers and the groups that share them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use sms_core::text::{self, Lines};
use sms_core::{NumberKind, PhoneNumber};
use sms_proto::events::v1::NumberChanged;
use uuid::Uuid;

use sms_runtime::auth::Caller;
use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::carrier::Carrier;
use crate::error::{Entity, NumbersError, on_constraint};
use crate::store::{self, GroupRow, NumberRow, NumberSource};
use sms_feed::Written;

/// Longest id field (ids are UUIDs; anything longer is not one).
const MAX_ID_FIELD: usize = 64;

/// Parses an id given by a caller in `field`.
fn parse_id(field: &'static str, id: &str) -> Result<Uuid, NumbersError> {
    text::check(field, id, MAX_ID_FIELD, Lines::Single)?;
    Uuid::parse_str(id.trim()).map_err(|_| NumbersError::InvalidId(id.to_owned()))
}

/// Who is to own a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A user (its id, checked when the number is recorded).
    User(String),
    /// A group (its id, checked when the number is recorded).
    Group(String),
    /// Not said: refused (a number needs an owner).
    Unset,
}

/// A number to record, as asked for: its number already parsed.
#[derive(Debug, Clone)]
pub struct NewNumber {
    /// The number.
    pub number: PhoneNumber,
    /// Whether we send from it.
    pub kind: NumberKind,
    /// Its owner.
    pub owner: Owner,
    /// SMS and MMS as the caller says (by default, as its country and type allow).
    pub sms_capable: Option<bool>,
    /// See `sms_capable`.
    pub mms_capable: Option<bool>,
    /// Whether it takes calls (by default, yes).
    pub voice_capable: Option<bool>,
    /// Messages a second from it (0: no limit of its own).
    pub send_rate: f64,
    /// The burst its rate allows.
    pub send_burst: u32,
    /// The carrier connection it sends through (empty: the default).
    pub carrier_connection: String,
}

/// Longest group name.
pub const MAX_GROUP_NAME: usize = 200;

/// Checks a user id given in a request field.
fn user_field(field: &'static str, user: &str) -> Result<(), NumbersError> {
    Ok(text::check(
        field,
        user,
        sms_runtime::auth::MAX_ID_LEN,
        Lines::Single,
    )?)
}

/// Numbers, groups and renting: the organization's numbers (recorded, rented from the
/// carrier, imported), who holds each, its rate and carrier connection, and the groups that
/// share them. Every change is announced to the dispatchers and the feed in its transaction.
#[derive(Clone)]
pub struct Numbers {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) written: Written,
    pub(crate) senders: SenderCache,
    /// The carrier's number API (search, rent, import, release), when an account is set up.
    pub(crate) carrier: Option<Carrier>,
    pub(crate) routes: Routes,
}

impl Numbers {
    /// Numbers kept in `pool`, announced through `outbox` and the feed (`written`), held
    /// numbers remembered in `senders`, rented through `carrier`, routed by `routes`.
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        written: Written,
        senders: SenderCache,
        carrier: Option<Carrier>,
        routes: Routes,
    ) -> Self {
        Numbers {
            pool,
            outbox,
            written,
            senders,
            carrier,
            routes,
        }
    }

    /// Rents a number for the caller's organization; the reply warns when it cannot send SMS.
    pub async fn add_number(
        &self,
        caller: &Caller,
        req: NewNumber,
    ) -> Result<(NumberRow, Vec<String>), NumbersError> {
        let org = caller.organization_id.as_str();
        let NewNumber {
            number: parsed,
            kind,
            ..
        } = &req;
        let kind = *kind;
        let (owner_user_id, owner_group_id) = match &req.owner {
            Owner::User(u) => self.owner(org, Some(u), None),
            Owner::Group(g) => self.owner(org, None, Some(g)),
            Owner::Unset => self.owner(org, None, None),
        }
        .await?;
        let region = parsed.region().map(|r| r.to_string()).unwrap_or_default();
        let sms_capable = req.sms_capable.unwrap_or_else(|| parsed.sms_supported());
        let mms_capable = req.mms_capable.unwrap_or_else(|| parsed.mms_supported()) && sms_capable;
        let mut warnings = Vec::new();
        if !sms_capable {
            let why = if req.sms_capable == Some(false) {
                "SMS was turned off for it".to_owned()
            } else if !parsed.region().is_some_and(|r| r.sms_supported()) {
                format!(
                    "we do not send SMS in {}",
                    if region.is_empty() {
                        "its region"
                    } else {
                        &region
                    }
                )
            } else {
                format!("it is a {} number", parsed.number_type().as_str())
            };
            warnings.push(format!(
                "{} cannot send or receive SMS: {why}",
                parsed.e164()
            ));
        }
        if !kind.can_send() {
            warnings.push(format!(
                "{} is external: it will never be used to send",
                parsed.e164()
            ));
        }
        let rate = send_rate(req.send_rate, req.send_burst)?;
        let carrier_connection = self.routes.carrier_connection(&req.carrier_connection)?;
        let row = NumberRow {
            id: Uuid::now_v7(),
            organization_id: org.to_owned(),
            number: parsed.clone(),
            region,
            number_type: parsed.number_type(),
            sms_capable,
            mms_capable,
            voice_capable: req.voice_capable.unwrap_or(true),
            kind,
            owner_user_id,
            owner_group_id,
            created_at: Utc::now(),
            send_rate: rate.map(|(r, _)| r),
            send_burst: rate.map(|(_, b)| b),
            source: NumberSource::Recorded,
            carrier_sid: None,
            carrier_connection,
        };
        // The number and its state for the dispatchers' copies (which clears a release of the
        // same number by this organization), in one transaction.
        let mut tx = self.pool.begin().await?;
        store::numbers::insert(&mut tx, &row).await.map_err(|e| {
            on_constraint(e, "numbers_number_key", || {
                NumbersError::NumberTaken(row.number.to_string())
            })
        })?;
        self.announce_number(&mut tx, &row, true).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.written.wake();
        Ok((row, warnings))
    }

    /// The owner a request names: a user (checked as an id) or a group of the organization.
    pub(crate) async fn owner(
        &self,
        org: &str,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), NumbersError> {
        match (user.map(str::trim), group.map(str::trim)) {
            (Some(u), _) if !u.is_empty() => {
                user_field("owner_user_id", u)?;
                Ok((Some(u.to_owned()), None))
            }
            (_, Some(g)) if !g.is_empty() => {
                let id = parse_id("owner_group_id", g)?;
                if store::groups::list(&self.pool, org, Some(id))
                    .await?
                    .is_empty()
                {
                    return Err(NumbersError::NotFound(Entity::Group));
                }
                Ok((None, Some(id.to_string())))
            }
            _ => Err(NumbersError::MissingOwner),
        }
    }

    /// The caller's organization's numbers.
    pub async fn list_numbers(&self, caller: &Caller) -> Result<Vec<NumberRow>, NumbersError> {
        Ok(store::numbers::list(&self.pool, &caller.organization_id).await?)
    }

    /// A number of the caller's organization, by E.164 or id.
    pub async fn get_number(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<NumberRow, NumbersError> {
        let org = caller.organization_id.as_str();
        text::check("number", number, MAX_ID_FIELD, Lines::Single)?;
        let found = match Uuid::parse_str(number.trim()) {
            Ok(id) => store::numbers::find_by_id(&self.pool, org, id).await?,
            Err(_) => {
                let n =
                    PhoneNumber::parse_valid(number, None).map_err(NumbersError::InvalidNumber)?;
                store::numbers::find(&self.pool, org, n.e164()).await?
            }
        };
        found.ok_or(NumbersError::NotFound(Entity::Number))
    }

    /// Sets how fast a number may send (a rate of 0: back to its kind's default), with its
    /// state for the dispatchers, in one transaction.
    pub async fn set_number_rate(
        &self,
        caller: &Caller,
        number: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<NumberRow, NumbersError> {
        let rate = send_rate(per_second, burst)?;
        let row = self.get_number(caller, number).await?;
        let mut tx = self.pool.begin().await?;
        let row = store::numbers::set_rate(&mut tx, &row.organization_id, row.id, rate).await?;
        self.changed(tx, row).await
    }

    /// Commits a held number's change (`None`: it is not held any more) with its state for
    /// the dispatchers, and forgets the cached copy: senders are cached here by number, and the
    /// change is read on the next send.
    async fn changed(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        row: Option<NumberRow>,
    ) -> Result<NumberRow, NumbersError> {
        let row = row.ok_or(NumbersError::NotFound(Entity::Number))?;
        self.announce_number(&mut tx, &row, true).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.written.wake();
        self.senders.forget(&row.organization_id, row.number.e164());
        Ok(row)
    }

    /// Sets which carrier connection a number's messages go through (empty: the default), with
    /// its state for the dispatchers, in one transaction.
    pub async fn set_number_carrier(
        &self,
        caller: &Caller,
        number: &str,
        connection: &str,
    ) -> Result<NumberRow, NumbersError> {
        let connection = self.routes.carrier_connection(connection)?;
        let row = self.get_number(caller, number).await?;
        let mut tx = self.pool.begin().await?;
        let row = store::numbers::set_connection(
            &mut tx,
            &row.organization_id,
            row.id,
            connection.as_deref(),
        )
        .await?;
        self.changed(tx, row).await
    }

    /// Releases a number: it no longer sends, and can be rented again.
    pub async fn release_number(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<NumberRow, NumbersError> {
        let row = self.get_number(caller, number).await?;
        // The release and the state that tells every dispatcher, in one transaction.
        let mut tx = self.pool.begin().await?;
        if !store::numbers::release(&mut tx, &caller.organization_id, row.id).await? {
            return Err(NumbersError::NotFound(Entity::Number));
        }
        self.announce_number(&mut tx, &row, false).await?;
        tx.commit().await?;
        self.outbox.wake();
        self.written.wake();
        self.senders.forget(&row.organization_id, row.number.e164());
        // Given back to the carrier now if it answers; otherwise by the next round of
        // `give_back_released` (the release is recorded: nothing is forgotten).
        if row.carrier_sid.is_some()
            && let Err(e) = self.give_back(Some(row.id)).await
        {
            tracing::warn!(number = %row.number, error = %e, "giving the number back to the carrier failed; will retry");
        }
        Ok(row)
    }

    /// Creates a group.
    pub async fn create_group(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<GroupRow, NumbersError> {
        text::check("name", name, MAX_GROUP_NAME, Lines::Single)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(NumbersError::MissingName);
        }
        let id = Uuid::now_v7();
        store::groups::insert(&self.pool, &caller.organization_id, id, name)
            .await
            .map_err(|e| {
                on_constraint(e, "groups_name_key", || {
                    NumbersError::GroupNameTaken(name.to_owned())
                })
            })?;
        Ok(GroupRow {
            id,
            name: name.to_owned(),
            members: Vec::new(),
        })
    }

    /// Adds a user to a group, or removes them.
    pub async fn set_member(
        &self,
        caller: &Caller,
        group_id: &str,
        user_id: &str,
        member: bool,
    ) -> Result<GroupRow, NumbersError> {
        let org = caller.organization_id.as_str();
        let id = parse_id("group_id", group_id)?;
        user_field("user_id", user_id)?;
        let user_id = user_id.trim();
        if user_id.is_empty() {
            return Err(NumbersError::MissingUser);
        }
        if store::groups::list(&self.pool, org, Some(id))
            .await?
            .is_empty()
        {
            return Err(NumbersError::NotFound(Entity::Group));
        }
        store::groups::set_member(&self.pool, org, id, user_id, member).await?;
        store::groups::list(&self.pool, org, Some(id))
            .await?
            .pop()
            .ok_or(NumbersError::NotFound(Entity::Group))
    }

    /// The caller's organization's groups.
    pub async fn list_groups(&self, caller: &Caller) -> Result<Vec<GroupRow>, NumbersError> {
        Ok(store::groups::list(&self.pool, &caller.organization_id, None).await?)
    }
}

/// Held numbers looked up by senders, kept in memory: a send needs no query for its sender.
///
/// A number row never changes while it is held (it is added, then released; a number added
/// again is a new row), so an entry stays right until the number is released. Every release
/// (and add) is published on the number state stream, which every replica follows and which
/// drops the entry; the replica that releases drops it at once. Between a release on another
/// replica and its event arriving (milliseconds), a send may still pass here: the dispatcher
/// checks released numbers again before calling the carrier. Misses are not kept, so a number
/// added elsewhere is seen at once. Entries are also read again after [`SENDER_TTL`], so that
/// a release whose event was lost (NATS down at that moment) still takes effect.
#[derive(Debug, Clone, Default)]
pub struct SenderCache(Arc<RwLock<HashMap<SenderKey, (NumberRow, Instant)>>>);

/// (organization, E.164 number).
type SenderKey = (String, String);

/// How long a held number is trusted from memory.
pub const SENDER_TTL: Duration = Duration::from_secs(60);

impl SenderCache {
    /// The held number `number` of `organization_id`, if known here.
    pub fn get(&self, organization_id: &str, number: &str) -> Option<NumberRow> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(organization_id.to_owned(), number.to_owned()))
            .filter(|(_, at)| at.elapsed() < SENDER_TTL)
            .map(|(row, _)| row.clone())
    }

    /// Remembers a held number.
    pub fn insert(&self, row: NumberRow) {
        let key = (row.organization_id.clone(), row.number.to_string());
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (row, Instant::now()));
    }

    /// Forgets `number` of `organization_id` (it was released, or added anew).
    pub fn forget(&self, organization_id: &str, number: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(organization_id.to_owned(), number.to_owned()));
    }
}

/// A send rate as asked for: `None` for a rate of 0 (the default for the number's kind);
/// otherwise checked, with the burst defaulting to the rate rounded up.
fn send_rate(per_second: f64, burst: u32) -> Result<Option<(f64, i32)>, NumbersError> {
    if per_second == 0.0 && burst == 0 {
        return Ok(None);
    }
    let burst = if burst == 0 {
        per_second.ceil().max(1.0)
    } else {
        f64::from(burst)
    };
    let rate = sms_core::rate::Rate::new(per_second, burst)?;
    Ok(Some((
        rate.per_second(),
        i32::try_from(rate.burst() as i64).unwrap_or(i32::MAX),
    )))
}

impl Numbers {
    /// The number's state for the dispatchers' copies and its entry in the event feed, in the
    /// caller's transaction.
    pub(crate) async fn announce_number(
        &self,
        tx: &mut sqlx::PgConnection,
        row: &NumberRow,
        active: bool,
    ) -> Result<(), NumbersError> {
        let state = number_state(row, active);
        self.outbox.add_event(&mut *tx, &state).await?;
        let event_id = state
            .meta
            .as_ref()
            .map(|m| m.event_id.as_str())
            .unwrap_or("");
        sms_feed::store::feed::append(
            tx,
            &[number_entry(
                &row.organization_id,
                event_id,
                row.number.e164(),
                active,
            )],
        )
        .await?;
        Ok(())
    }
}

fn number_state(row: &NumberRow, active: bool) -> NumberChanged {
    NumberChanged {
        meta: Some(sms_bus::meta(
            sms_bus::new_event_id(),
            &row.organization_id,
            "",
        )),
        number: row.number.to_string(),
        active,
        send_rate: row.send_rate.unwrap_or(0.0),
        send_burst: row
            .send_burst
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(0),
        carrier_connection: row.carrier_connection.clone().unwrap_or_default(),
    }
}

/// The longest carrier connection name.
const MAX_CONNECTION_NAME: usize = 32;

/// The name of the Twilio connection numbers may be routed to.
pub const TWILIO_CONNECTION: &str = "twilio";

/// Whether `name` may name a carrier connection.
pub fn is_connection_name(name: &str) -> bool {
    (1..=MAX_CONNECTION_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The carrier connections numbers may be routed to, and whether numbers with no route of
/// their own send over SMPP (text only).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// The connections' names.
    pub connections: Vec<String>,
    /// `SMS_CARRIER=smpp`.
    pub smpp_default: bool,
}

impl Routes {
    /// A carrier connection named in a request: `None` for empty (the default), refused when
    /// the platform has no such connection.
    pub(crate) fn carrier_connection(&self, name: &str) -> Result<Option<String>, NumbersError> {
        text::check(
            "carrier_connection",
            name,
            MAX_CONNECTION_NAME,
            Lines::Single,
        )?;
        let name = name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if !self.connections.iter().any(|c| c == name) {
            return Err(NumbersError::UnknownCarrierConnection {
                name: name.chars().take(64).collect(),
                known: self.connections.clone(),
            });
        }
        Ok(Some(name.to_owned()))
    }

    /// The SMPP connection `number` sends through (text only), if it does: any connection but
    /// Twilio's, or the default when that is SMPP.
    pub fn text_only(&self, number: &NumberRow) -> Option<String> {
        match number.carrier_connection.as_deref() {
            Some(TWILIO_CONNECTION) => None,
            Some(other) => Some(other.to_owned()),
            None if self.smpp_default => Some("the default carrier".to_owned()),
            None => None,
        }
    }
}

/// One of the organization's numbers changed.
fn number_entry(
    organization_id: &str,
    event_id: &str,
    number: &str,
    active: bool,
) -> sms_feed::NewEntry {
    sms_feed::entries::entry(
        organization_id,
        event_id,
        Utc::now(),
        "number.changed",
        sms_proto::v1::feed_event::Event::Number(sms_proto::v1::FeedNumber {
            number: number.to_owned(),
            active,
        }),
    )
}
