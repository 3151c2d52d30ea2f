//! Inbound messages: stored on their conversation, shown in the owners' inboxes, announced to
//! the CRM; and the registry's keyword answers, sent like any other message.

use chrono::Utc;
use sms_bus::HandleError;
use sms_core::text::{self, Lines};
use sms_core::{Address, Direction, MessageId, PhoneNumber, Status};
use sms_proto::events::v1::{AutoReply, InboundReceived, InboundStored};
use uuid::Uuid;

use sms_runtime::auth::Caller;
use sms_runtime::outbox::Outbox;
use sqlx::PgPool;

use crate::error::{Common, Entity, MessagesError};
use crate::fields::{parse_id, user};
use crate::media::Media;
use crate::messages::Messages;
use crate::send::accept::Handoff;
use crate::settings::OrgSettings;
use crate::store::db_failure;
use crate::store::{self, MessageRow};
use sms_feed::Written;

pub use crate::send::accept::AUTO_REPLY_USER;

/// A text field of an event, as it can be stored: U+FFFD for what cannot be, and how many.
fn storable(value: &str) -> (String, usize) {
    text::sanitize(value, Lines::Multi)
}

/// The inbox: inbound messages stored on their conversation and announced, the registry's
/// keyword answers sent, and conversations and inboxes read.
#[derive(Clone)]
pub struct Inbox {
    pool: PgPool,
    outbox: Outbox,
    written: Written,
    media: Media,
    messages: Messages,
    settings: OrgSettings,
    handoff: Handoff,
}

impl Inbox {
    /// The inbox over `pool`, announcing through `outbox` and the feed (`written`), inbound
    /// attachments downloaded by `media`, replies handed on by `handoff`.
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        written: Written,
        media: Media,
        messages: Messages,
        settings: OrgSettings,
        handoff: Handoff,
    ) -> Self {
        Inbox {
            pool,
            outbox,
            written,
            media,
            messages,
            settings,
            handoff,
        }
    }

    /// Stores an inbound message on its conversation and announces it. A message is never
    /// lost for its text: what cannot be stored is replaced with U+FFFD and a note says so.
    pub async fn on_inbound(&self, e: &InboundReceived) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("inbound event without meta".into()));
        };
        text::check("carrier_sid", &e.carrier_sid, 64, Lines::Single)
            .map_err(|err| HandleError::Permanent(err.to_string()))?;
        text::check("to", &e.to, sms_core::phone::MAX_INPUT_LEN, Lines::Single)
            .map_err(|err| HandleError::Permanent(err.to_string()))?;
        let Some(number) = store::numbers::holder(&self.pool, &e.to)
            .await
            .map_err(db_failure)?
        else {
            tracing::warn!(to = %e.to, "inbound message to a number nobody holds; dropped");
            return Ok(());
        };
        if !meta.organization_id.is_empty() && meta.organization_id != number.organization_id {
            tracing::warn!(to = %e.to, "inbound message for another organization's number; dropped");
            return Ok(());
        }
        let (body, replaced_here) = storable(&e.body);
        let replaced = replaced_here + e.replaced_characters as usize;
        let (from, _) = storable(&e.from);
        let note = (replaced > 0).then(|| {
            format!(
                "{replaced} character(s) of the carrier's text could not be stored (NUL or other \
                 control characters) and were replaced with U+FFFD"
            )
        });
        let counted = sms_core::count(&body);
        let now = Utc::now();
        let row = MessageRow {
            id: Uuid::now_v7().into(),
            organization_id: number.organization_id.clone(),
            user_id: number.owner_user_id.clone().unwrap_or_default(),
            direction: Direction::Inbound,
            from_number: Address::read(&from),
            to_number: number.number.clone().into(),
            body,
            status: Status::Received,
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding,
            segments: i32::try_from(counted.segments).unwrap_or(i32::MAX),
            characters: i32::try_from(counted.units).unwrap_or(i32::MAX),
            carrier_sid: Some(e.carrier_sid.clone()),
            lead_id: None,
            contact_id: None,
            created_at: now,
            updated_at: now,
            send_at: None,
            done: false,
            media_count: 0,
        };
        let users = match &number.owner_user_id {
            Some(user) => vec![user.clone()],
            None => store::groups::members(
                &self.pool,
                &number.organization_id,
                number.owner_group_id.as_deref().unwrap_or(""),
            )
            .await
            .map_err(db_failure)?,
        };
        let stored = InboundStored {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[&e.carrier_sid, "stored"]),
                &row.organization_id,
                &row.id.to_string(),
            )),
            from: row.from_number.to_string(),
            to: row.to_number.to_string(),
            body: row.body.clone(),
            inbox_user_ids: users,
            carrier_sid: e.carrier_sid.clone(),
            ..Default::default()
        };
        // The message and its announcement, in one transaction: a redelivered event finds the
        // message stored and its announcement in the outbox or on the bus already.
        let mut tx = self.pool.begin().await.map_err(db_failure)?;
        // The reply belongs to the conversation's lead (or the contact the CRM registered).
        let (lead_id, contact_id) = store::inbound::lead_of(
            &mut tx,
            &row.organization_id,
            row.to_number.as_str(),
            row.from_number.as_str(),
        )
        .await
        .map_err(db_failure)?;
        let row = MessageRow {
            lead_id,
            contact_id,
            ..row
        };
        let stored = InboundStored {
            lead_id: row.lead_id.clone().unwrap_or_default(),
            contact_id: row.contact_id.clone().unwrap_or_default(),
            ..stored
        };
        let new = store::inbound::insert(&mut tx, &row, &meta.event_id, note.as_deref())
            .await
            .map_err(db_failure)?;
        if !new {
            return Ok(());
        }
        self.outbox
            .add_event(&mut tx, &stored)
            .await
            .map_err(db_failure)?;
        let event_id = stored
            .meta
            .as_ref()
            .map(|m| m.event_id.as_str())
            .unwrap_or("");
        sms_feed::store::feed::append(
            &mut tx,
            &[crate::feed::inbound_entry(
                &row,
                event_id,
                &stored.inbox_user_ids,
            )],
        )
        .await
        .map_err(db_failure)?;
        tx.commit().await.map_err(db_failure)?;
        self.outbox.wake();
        self.written.wake();
        // The text is stored first; attachments follow, and one that cannot be downloaded (or
        // is refused) is recorded on the message as failed rather than losing it.
        if !e.media.is_empty() {
            let wanted: Vec<(String, String)> = e
                .media
                .iter()
                .map(|m| (m.url.clone(), m.content_type.clone()))
                .collect();
            let media = self
                .media
                .download_inbound_media(&row.organization_id, row.id, &e.account_sid, &wanted)
                .await;
            if let Err(err) = store::media::add_to_message(&self.pool, row.id, &media).await {
                // The message is stored, so a redelivery would skip it: record the loss.
                tracing::error!(message_id = %row.id, error = %err, "inbound attachments not stored");
            }
        }
        Ok(())
    }

    /// Sends a keyword answer from the number that received the keyword.
    pub async fn on_auto_reply(&self, e: &AutoReply) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("auto-reply without meta".into()));
        };
        let (from, to) = match (
            PhoneNumber::parse_valid(&e.from, None),
            PhoneNumber::parse_valid(&e.to, None),
        ) {
            (Ok(from), Ok(to)) => (from, to),
            _ => {
                return Err(HandleError::Permanent(
                    "auto-reply with an invalid number".into(),
                ));
            }
        };
        let (body, _) = storable(&e.body);
        sms_core::validate_body(&body).map_err(|err| HandleError::Permanent(err.to_string()))?;
        let kind = match sms_bus::auto_reply_kind(e) {
            sms_proto::events::v1::AutoReplyKind::Unspecified => {
                return Err(HandleError::Permanent("auto-reply of no known kind".into()));
            }
            k => sms_bus::auto_reply_kind_name(k),
        };
        let counted = sms_core::count(&body);
        let now = Utc::now();
        // The id follows from the event, so a redelivered event cannot send a second reply.
        let id = MessageId::from(Uuid::new_v5(&Uuid::NAMESPACE_OID, meta.event_id.as_bytes()));
        let region = to.region().map(|r| r.to_string()).unwrap_or_default();
        let row = MessageRow {
            id,
            organization_id: meta.organization_id.clone(),
            user_id: format!("{AUTO_REPLY_USER}:{kind}"),
            direction: Direction::Outbound,
            from_number: from.into(),
            to_number: to.into(),
            body,
            status: Status::Accepted,
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding,
            segments: i32::try_from(counted.segments).unwrap_or(i32::MAX),
            characters: i32::try_from(counted.units).unwrap_or(i32::MAX),
            carrier_sid: None,
            lead_id: None,
            contact_id: None,
            created_at: now,
            updated_at: now,
            send_at: None,
            done: false,
            media_count: 0,
        };
        let extra = store::NewMessage {
            to_region: &region,
            ..Default::default()
        };
        // The reply and its event for the dispatcher, in one transaction; a redelivered event
        // finds the reply stored (its id follows from the event) and does nothing more.
        let capped = match self.settings.of(&row.organization_id).await {
            Ok(s) => s.daily_segment_cap.is_some(),
            Err(Common::Database(e)) => return Err(db_failure(e)),
            Err(e) => return Err(HandleError::Permanent(e.to_string())),
        };
        let event = self.handoff.accepted_event(
            &row,
            &[],
            sms_core::MAX_VALIDITY_SECS,
            Some(row.created_at),
        );
        let mut tx = self.pool.begin().await.map_err(db_failure)?;
        let stored = store::messages::insert(&mut tx, &row, &extra, &meta.event_id).await;
        let already = stored
            .as_ref()
            .err()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.constraint())
            .is_some_and(|c| c == "messages_pkey");
        if already {
            return Ok(());
        }
        stored.map_err(db_failure)?;
        // Counted against the day's cap (when there is one), never refused by it.
        if capped {
            store::settings::count(
                &mut tx,
                &[store::settings::DayCount {
                    organization_id: row.organization_id.clone(),
                    day: store::settings::day_of(now),
                    segments: i64::from(row.segments),
                    cap: None,
                }],
            )
            .await
            .map_err(db_failure)?;
        }
        self.outbox
            .add(&mut tx, &[event])
            .await
            .map_err(db_failure)?;
        tx.commit().await.map_err(db_failure)?;
        self.outbox.wake();
        Ok(())
    }

    /// Both directions between one of the organization's numbers and a contact.
    pub async fn conversation(
        &self,
        caller: &Caller,
        ours: &PhoneNumber,
        contact: &PhoneNumber,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<MessageRow>, String), MessagesError> {
        let org = caller.organization_id.as_str();
        let after = crate::fields::decode_page_token(page_token)?;
        if store::numbers::find(&self.pool, org, ours.e164())
            .await?
            .is_none()
        {
            return Err(MessagesError::from(Entity::Number));
        }
        let size = crate::fields::page_size(page_size, 100);
        let rows = store::inbound::conversation(
            &self.pool,
            org,
            ours.e164(),
            contact.e164(),
            after,
            i64::from(size) + 1,
        )
        .await?;
        Ok(crate::fields::paginate(
            rows,
            size,
            crate::fields::message_token,
        ))
    }

    /// The organization's conversations, the most recently active first, each with its
    /// newest message.
    pub async fn conversations(
        &self,
        caller: &Caller,
        ours: Option<&PhoneNumber>,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<(store::inbound::ConversationRow, MessageRow)>, String), MessagesError> {
        let org = caller.organization_id.as_str();
        let size = crate::fields::page_size(page_size, 50);
        let before = crate::fields::decode_page_token(page_token)?;
        let heads = store::inbound::conversations(
            &self.pool,
            org,
            ours.map(PhoneNumber::e164),
            before,
            i64::from(size) + 1,
        )
        .await?;
        let (heads, next) = crate::fields::paginate(heads, size, |c| {
            crate::fields::encode_page_token(c.last_at, c.last_id)
        });
        let ids: Vec<MessageId> = heads.iter().map(|c| c.last_id).collect();
        let mut last: std::collections::HashMap<MessageId, MessageRow> =
            store::messages::by_ids(&self.pool, org, &ids)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect();
        let rows = heads
            .into_iter()
            .filter_map(|c| last.remove(&c.last_id).map(|m| (c, m)))
            .collect();
        Ok((rows, next))
    }

    /// The user's inbox, newest first.
    pub async fn inbox(
        &self,
        caller: &Caller,
        include_done: bool,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<MessageRow>, String), MessagesError> {
        let user = user(caller)?;
        let size = crate::fields::page_size(page_size, 50);
        let before = crate::fields::decode_page_token(page_token)?;
        let rows = store::inbound::inbox(
            &self.pool,
            &caller.organization_id,
            user,
            include_done,
            before,
            i64::from(size) + 1,
        )
        .await?;
        Ok(crate::fields::paginate(
            rows,
            size,
            crate::fields::message_token,
        ))
    }

    /// Marks an inbound message done or not done.
    pub async fn mark_done(
        &self,
        caller: &Caller,
        id: &str,
        done: bool,
    ) -> Result<MessageRow, MessagesError> {
        let uuid = parse_id("id", id)?;
        if !store::inbound::set_done(&self.pool, &caller.organization_id, uuid, done).await? {
            return Err(MessagesError::from(Entity::Message));
        }
        self.messages.get(caller, id).await.map(|(m, _)| m)
    }
}
