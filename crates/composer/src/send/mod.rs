//! Sending: a [`command::SendCommand`] parsed from the request; its facts gathered (the body,
//! the checked sender ([`policy`]), the organization's settings, a quiet-hours hold, the
//! contact's opt-out); one pure function deciding ([`decide`]); then the message stored and
//! published ([`accept`]).

pub mod accept;
pub mod command;
pub mod decide;
pub mod policy;

use chrono::Utc;
use sms_core::{Direction, Encoding, MessageId, TemplateId};
use uuid::Uuid;

use sms_bus::StateSet;
use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{Entity, SendError};
use crate::fields::user;
use crate::media::Media;
use crate::settings::OrgSettings;
use crate::store::{self, MessageRow};
use accept::{Handoff, Writer};
use command::{Content, Horizon, SendCommand};
use sms_numbers::Routes;

/// What a send returns: the message and notes for the caller.
pub struct Sent {
    /// The message.
    pub message: MessageRow,
    /// E.g. that an ambiguous local time took the earlier instant.
    pub notes: Vec<String>,
    /// Its attachments, described (without their bytes).
    pub attachments: Vec<store::MediaRow>,
}

const REPEATED: &str = "an earlier call with this idempotency key created this message";

/// Sending: a typed command checked against the product's rules and the organization's
/// settings, then stored with its event (group commit) for the dispatcher or the scheduler.
#[derive(Clone)]
pub struct Sending {
    pool: PgPool,
    /// Stores accepted messages, many calls per transaction.
    writer: Writer,
    /// Finds and checks senders (held numbers remembered by sender).
    senders: policy::Senders,
    /// Which numbers send text only.
    routes: Routes,
    settings: OrgSettings,
    /// Contacts that opted out, per organization (a local copy of the registry's state).
    opt_outs: StateSet,
    media: Media,
    horizon: Horizon,
    handoff: Handoff,
}

/// What [`Sending`] is made of.
pub struct SendingParts {
    /// The composer's database.
    pub pool: PgPool,
    /// Stores accepted messages.
    pub writer: Writer,
    /// Finds and checks senders.
    pub senders: policy::Senders,
    /// Which numbers send text only.
    pub routes: Routes,
    /// The organizations' settings.
    pub settings: OrgSettings,
    /// Opted-out contacts.
    pub opt_outs: StateSet,
    /// Attachments.
    pub media: Media,
    /// How far ahead a message may be scheduled.
    pub horizon: Horizon,
    /// Makes the events that hand messages on.
    pub handoff: Handoff,
}

impl Sending {
    /// Sending from its parts.
    pub fn new(p: SendingParts) -> Self {
        Sending {
            pool: p.pool,
            writer: p.writer,
            senders: p.senders,
            routes: p.routes,
            settings: p.settings,
            opt_outs: p.opt_outs,
            media: p.media,
            horizon: p.horizon,
            handoff: p.handoff,
        }
    }

    /// Validates and accepts a message: stored `accepted` (or `scheduled`), then published.
    pub async fn send(&self, caller: &Caller, cmd: SendCommand) -> Result<Sent, SendError> {
        let user = user(caller)?;
        let org = caller.organization_id.as_str();
        if let Some(key) = &cmd.idempotency_key
            && let Some(sent) = self.repeated(org, key, &cmd.fingerprint).await?
        {
            return Ok(sent);
        }
        let mut notes = Vec::new();
        let send_at = self.horizon.send_time(&cmd.when, &mut notes)?;
        let (body, template_id) = self.body(caller, user, &cmd.content).await?;
        let body = if cmd.smart_encoding {
            smart_encode(body, &mut notes)
        } else {
            body
        };
        // An MMS may be all pictures; everything else needs text.
        if cmd.attachments.is_empty() || !body.trim().is_empty() {
            sms_core::validate_body(&body)?;
        }
        policy::check_recipient(&cmd.to)?;
        let from = self
            .senders
            .sender(caller, user, cmd.from.as_ref(), &cmd.to)
            .await?;
        // The facts, gathered; then one pure decision; then what it decided, done.
        let settings = self.settings.of(org).await?;
        let now = Utc::now();
        let hold = self
            .settings
            .quiet_hold(
                &settings,
                org,
                &from.number,
                &cmd.to,
                send_at.unwrap_or(now),
            )
            .await?;
        let counted = sms_core::count(&body);
        let decided = decide::decide(decide::Facts {
            organization_id: org,
            to: &cmd.to,
            sender: &from.number,
            sender_mms_capable: from.mms_capable,
            text_only: self.routes.text_only(&from),
            attachments: !cmd.attachments.is_empty(),
            segments: u32::try_from(counted.segments).unwrap_or(u32::MAX),
            opted_out: self.opt_outs.contains(org, cmd.to.e164()),
            settings,
            hold,
            send_at,
            now,
            validity_seconds: cmd.validity_seconds,
            validity_given: cmd.validity_given,
        });
        let mut accepted = match decided {
            Ok(accepted) => accepted,
            Err(decide::Refused::Rule(e)) => return Err(e),
            Err(decide::Refused::OverCap { cap, count }) => {
                return Err(self.cap_reached(&count, cap).await);
            }
        };
        notes.append(&mut accepted.notes);
        let send_at = accepted.send_at;
        let id = MessageId::from(Uuid::now_v7());
        // Attachments are fetched only for a message that will be sent.
        let media = if cmd.attachments.is_empty() {
            Vec::new()
        } else {
            self.media.prepare_media(org, id, &cmd.attachments).await?
        };
        let row = MessageRow {
            id,
            organization_id: org.to_owned(),
            user_id: user.to_owned(),
            direction: Direction::Outbound,
            from_number: from.number.into(),
            to_number: cmd.to.clone().into(),
            body,
            status: accepted.status(),
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding,
            segments: i32::try_from(counted.segments).unwrap_or(i32::MAX),
            characters: i32::try_from(counted.units).unwrap_or(i32::MAX),
            carrier_sid: None,
            lead_id: cmd.lead_id.clone(),
            contact_id: cmd.contact_id.clone(),
            created_at: now,
            updated_at: now,
            send_at,
            done: false,
            media_count: i32::try_from(media.len()).unwrap_or(i32::MAX),
        };
        let media_count = media.len();
        let attachments = media.iter().map(store::MediaRow::described).collect();
        let held = accepted.held.is_some();
        let stored = self
            .writer
            .insert(accept::NewSend {
                message: row.clone(),
                idempotency_key: cmd.idempotency_key.clone(),
                request_hash: cmd
                    .idempotency_key
                    .as_ref()
                    .map(|_| cmd.fingerprint.to_vec()),
                to_region: cmd.to.region().map(|r| r.to_string()).unwrap_or_default(),
                template_id,
                event: self.handoff.accepted_event(
                    &row,
                    &media,
                    cmd.validity_seconds,
                    accept::valid_from(
                        &row,
                        accepted.held.as_ref().map(|h| h.from),
                        cmd.validity_given,
                    ),
                ),
                media,
                event_id: accept::accepted_event_id(&row),
                note: accepted.held.map(|h| h.note),
                count: accepted.count.clone(),
            })
            .await;
        if let Err(e) = stored {
            // A concurrent call with the same key won the race: its message, if it was the
            // same request.
            let key_taken = e
                .as_database_error()
                .and_then(|d| d.constraint())
                .is_some_and(|c| c == "messages_idempotency_key");
            if key_taken
                && let Some(key) = &cmd.idempotency_key
                && let Some(sent) = self.repeated(org, key, &cmd.fingerprint).await?
            {
                return Ok(sent);
            }
            let over_cap = e
                .as_database_error()
                .and_then(|d| d.constraint())
                .is_some_and(|c| c == store::settings::OVER_CAP);
            if over_cap
                && let Some(count) = &accepted.count
                && let Some(cap) = count.cap
            {
                return Err(self.cap_reached(count, cap).await);
            }
            return Err(e.into());
        }
        metrics::counter!(
            sms_runtime::metrics::MESSAGES_ACCEPTED,
            "kind" => if media_count == 0 { "sms" } else { "mms" },
            "when" => match (held, send_at) {
                (true, _) => "held",
                (false, Some(_)) => "later",
                (false, None) => "now",
            },
        )
        .increment(1);
        Ok(Sent {
            message: row,
            notes,
            attachments,
        })
    }

    /// The refusal of a message over the organization's daily cap, with the day's count.
    async fn cap_reached(&self, count: &store::settings::DayCount, cap: i64) -> SendError {
        match store::settings::counted(&self.pool, &count.organization_id, count.day).await {
            Ok(used) => SendError::DailyCapReached {
                cap,
                used,
                segments: count.segments,
                day: count.day,
            },
            Err(e) => e.into(),
        }
    }

    /// The message an earlier call with `key` created, when it was this same request; an
    /// error when the key was used for another.
    async fn repeated(
        &self,
        org: &str,
        key: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<Sent>, SendError> {
        let Some((message, hash)) =
            store::messages::by_idempotency_key(&self.pool, org, key).await?
        else {
            return Ok(None);
        };
        // Messages stored before fingerprints were kept have none: taken as the same request.
        if hash.is_some_and(|h| h.as_slice() != fingerprint.as_slice()) {
            return Err(SendError::IdempotencyKeyReused {
                key: key.to_owned(),
                message_id: message.id.to_string(),
            });
        }
        let attachments = store::media::of_messages(&self.pool, &[message.id]).await?;
        Ok(Some(Sent {
            message,
            notes: vec![REPEATED.into()],
            attachments,
        }))
    }

    /// The body to send: the raw body, or the template rendered against the request's context.
    async fn body(
        &self,
        caller: &Caller,
        user: &str,
        content: &Content,
    ) -> Result<(String, Option<TemplateId>), SendError> {
        match content {
            Content::Body(body) => Ok((body.clone(), None)),
            Content::Template { id, context } => {
                let row = store::templates::visible(&self.pool, &caller.organization_id, user, *id)
                    .await?
                    .ok_or(SendError::from(Entity::Template))?;
                let body = crate::templates::render(&row.body, context)?;
                Ok((body, Some(*id)))
            }
        }
    }
}

/// The body with look-alike characters replaced (Twilio's table), when that makes it all
/// GSM-7, saves segments and stays within the length limit, as Twilio's own smart encoding
/// does only for text that becomes GSM-7 (a note says what it saved); otherwise the body as
/// written: a user's text is never altered for nothing.
fn smart_encode(body: String, notes: &mut Vec<String>) -> String {
    let smart = sms_core::smart::smart_encoded(&body);
    if smart.after.encoding != Encoding::Gsm7
        || smart.segments_saved() == 0
        || sms_core::validate_body(&smart.text).is_err()
    {
        return body;
    }
    notes.push(format!(
        "smart encoding replaced look-alike characters: {} ({} segments) instead of {} ({} segments)",
        smart.after.encoding.as_str(),
        smart.after.segments,
        smart.before.encoding.as_str(),
        smart.before.segments,
    ));
    smart.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_encoding_only_when_it_becomes_gsm7_and_saves() {
        let mut notes = Vec::new();
        let typed = format!("{}’", "a".repeat(100));
        assert_eq!(
            smart_encode(typed, &mut notes),
            format!("{}'", "a".repeat(100))
        );
        assert_eq!(notes.len(), 1);
        // Still UCS-2 (an emoji): left as typed, even though a zero-width space could go.
        let typed = format!("{}\u{200b}😀", "a".repeat(68));
        assert_eq!(smart_encode(typed.clone(), &mut notes), typed);
        // Already one segment: left as typed.
        assert_eq!(smart_encode("it’s".into(), &mut notes), "it’s");
        assert_eq!(notes.len(), 1);
    }
}
