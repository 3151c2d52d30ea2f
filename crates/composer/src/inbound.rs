//! Inbound messages: stored on their conversation, shown in the owners' inboxes, announced to
//! the CRM; and the registry's keyword answers, sent like any other message.

use std::time::Duration;

use chrono::Utc;
use sms_bus::HandleError;
use sms_core::{PhoneNumber, Status};
use sms_proto::events::v1::{AutoReply, InboundReceived, InboundStored};
use uuid::Uuid;

use crate::app::{App, Caller, parse_id};
use crate::error::{ComposerError, Entity};
use crate::store::{self, MessageRow};

/// User id recorded on automatic replies; the kind tells whether it may reach an opted-out
/// contact (only the opt-out confirmation may).
pub const AUTO_REPLY_USER: &str = "system";

fn retry(e: impl std::fmt::Display) -> HandleError {
    HandleError::Retry {
        reason: e.to_string(),
        delay: Duration::from_millis(500),
    }
}

impl App {
    /// Whether `contact` opted out of `organization_id`'s messages.
    pub fn opted_out(&self, organization_id: &str, contact: &str) -> bool {
        self.opt_outs.contains(organization_id, contact)
    }

    /// Stores an inbound message on its conversation and announces it.
    pub async fn on_inbound(&self, e: &InboundReceived) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("inbound event without meta".into()));
        };
        let Some(number) = store::number_holder(&self.pool, &e.to)
            .await
            .map_err(retry)?
        else {
            tracing::warn!(to = %e.to, "inbound message to a number nobody holds; dropped");
            return Ok(());
        };
        if !meta.organization_id.is_empty() && meta.organization_id != number.organization_id {
            tracing::warn!(to = %e.to, "inbound message for another organization's number; dropped");
            return Ok(());
        }
        let counted = sms_core::count(&e.body);
        let now = Utc::now();
        let row = MessageRow {
            id: Uuid::now_v7(),
            organization_id: number.organization_id.clone(),
            user_id: number.owner_user_id.clone().unwrap_or_default(),
            direction: "inbound".into(),
            from_number: PhoneNumber::parse_valid(&e.from, None)
                .map(|p| p.e164().to_owned())
                .unwrap_or_else(|_| e.from.clone()),
            to_number: number.number.clone(),
            body: e.body.clone(),
            status: Status::Received.as_str().into(),
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding.as_str().into(),
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
        if !store::insert_inbound(&self.pool, &row, &meta.event_id)
            .await
            .map_err(retry)?
        {
            return Ok(()); // Already stored: the carrier retried.
        }
        // The text is stored first; attachments follow, and one that cannot be downloaded is
        // recorded on the message as failed rather than losing the message.
        if !e.media.is_empty() {
            let wanted: Vec<(String, String)> = e
                .media
                .iter()
                .map(|m| (m.url.clone(), m.content_type.clone()))
                .collect();
            let media = self
                .download_inbound_media(&row.organization_id, row.id, &e.account_sid, &wanted)
                .await;
            if let Err(err) = store::add_media(&self.pool, row.id, &media).await {
                // The message is stored, so a redelivery would skip it: record the loss loudly.
                tracing::error!(message_id = %row.id, error = %err, "inbound attachments not stored");
            }
        }
        let users = store::inbox_users(&self.pool, &number)
            .await
            .map_err(retry)?;
        let stored = InboundStored {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[&e.carrier_sid, "stored"]),
                &row.organization_id,
                &row.id.to_string(),
            )),
            from: row.from_number.clone(),
            to: row.to_number.clone(),
            body: row.body.clone(),
            inbox_user_ids: users,
            carrier_sid: e.carrier_sid.clone(),
        };
        self.bus.publish_durably(&stored).await.map_err(retry)
    }

    /// Sends a keyword answer from the number that received the keyword.
    pub async fn on_auto_reply(&self, e: &AutoReply) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("auto-reply without meta".into()));
        };
        let counted = sms_core::count(&e.body);
        let now = Utc::now();
        // The id follows from the event, so a redelivered event cannot send a second reply.
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, meta.event_id.as_bytes());
        let row = MessageRow {
            id,
            organization_id: meta.organization_id.clone(),
            user_id: format!("{AUTO_REPLY_USER}:{}", e.kind),
            direction: "outbound".into(),
            from_number: e.from.clone(),
            to_number: e.to.clone(),
            body: e.body.clone(),
            status: Status::Accepted.as_str().into(),
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding.as_str().into(),
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
        let region = PhoneNumber::parse_valid(&e.to, None)
            .ok()
            .and_then(|p| p.region())
            .map(|r| r.to_string())
            .unwrap_or_default();
        let extra = store::NewMessage {
            to_region: &region,
            ..Default::default()
        };
        let stored = store::insert_message(&self.pool, &row, &extra, &meta.event_id).await;
        let already = stored
            .as_ref()
            .err()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.constraint())
            .is_some_and(|c| c == "messages_pkey");
        if !already {
            stored.map_err(retry)?;
        }
        self.publish_accepted(&row).await.map_err(retry)
    }

    /// Both directions between one of the organization's numbers and a contact.
    pub async fn conversation(
        &self,
        caller: &Caller,
        ours: &str,
        contact: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<MessageRow>, String), ComposerError> {
        let org = caller.organization_id.as_str();
        let ours = PhoneNumber::parse_valid(ours, None).map_err(ComposerError::InvalidNumber)?;
        let contact =
            PhoneNumber::parse_valid(contact, None).map_err(ComposerError::InvalidRecipient)?;
        if store::find_number(&self.pool, org, ours.e164())
            .await?
            .is_none()
        {
            return Err(ComposerError::NotFound(Entity::Number));
        }
        let size = crate::app::page_size(page_size, 100);
        let after = crate::app::decode_page_token(page_token)?;
        let rows = store::conversation(
            &self.pool,
            org,
            ours.e164(),
            contact.e164(),
            after,
            i64::from(size) + 1,
        )
        .await?;
        Ok(crate::app::paginate(rows, size, crate::app::message_token))
    }

    /// The user's inbox, newest first.
    pub async fn inbox(
        &self,
        caller: &Caller,
        include_done: bool,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<MessageRow>, String), ComposerError> {
        let user = caller
            .user_id
            .as_deref()
            .ok_or(ComposerError::MissingUser)?;
        let size = crate::app::page_size(page_size, 50);
        let before = crate::app::decode_page_token(page_token)?;
        let rows = store::inbox(
            &self.pool,
            &caller.organization_id,
            user,
            include_done,
            before,
            i64::from(size) + 1,
        )
        .await?;
        Ok(crate::app::paginate(rows, size, crate::app::message_token))
    }

    /// Attachments of messages, grouped by message.
    pub async fn attachments(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Vec<store::MediaRow>>, ComposerError> {
        let mut by_message: std::collections::HashMap<Uuid, Vec<store::MediaRow>> =
            std::collections::HashMap::new();
        for m in store::media_of(&self.pool, ids).await? {
            by_message.entry(m.message_id).or_default().push(m);
        }
        Ok(by_message)
    }

    /// One attachment with its bytes.
    pub async fn get_media(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<store::MediaRow, ComposerError> {
        store::media(&self.pool, Some(&caller.organization_id), parse_id(id)?)
            .await?
            .ok_or(ComposerError::NotFound(Entity::Message))
    }

    /// Marks an inbound message done or not done.
    pub async fn mark_done(
        &self,
        caller: &Caller,
        id: &str,
        done: bool,
    ) -> Result<MessageRow, ComposerError> {
        let id_str = id;
        let id = parse_id(id)?;
        if !store::set_done(&self.pool, &caller.organization_id, id, done).await? {
            return Err(ComposerError::NotFound(Entity::Message));
        }
        self.get(caller, id_str).await.map(|(m, _)| m)
    }
}
