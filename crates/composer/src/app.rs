//! The composer's logic: who may send what from which number to whom, and the message store.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use prost::Message as _;
use sms_bus::Bus;
use sms_core::schedule::{self, ScheduleError};
use sms_core::{PhoneNumber, Status, Transition, phone};
use sms_proto::events::v1::{
    MessageAccepted, MessageScheduled, OutboundMessage, ScheduleCommand, ScheduleCommandReply,
    StatusChanged, schedule_command,
};
use sms_proto::v1::{
    Direction, ListErroredLeadsRequest, ListMessagesRequest, LocalDateTime, MessageStatus,
    SendMessageRequest,
};
use sqlx::PgPool;
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::error::{ComposerError, Entity};
use crate::store::{self, ListFilter, MessageRow, NumberRow};

pub use sms_runtime::auth::Caller;

/// The calling user, which sends need.
fn user(caller: &Caller) -> Result<&str, ComposerError> {
    caller.user_id.as_deref().ok_or(ComposerError::MissingUser)
}

/// Shared state of the composer.
pub struct App {
    pub(crate) pool: PgPool,
    pub(crate) bus: Bus,
    /// Bearer token → calling system. Empty: no authentication (development only).
    pub(crate) tokens: HashMap<String, String>,
    /// How far ahead a message may be scheduled.
    pub(crate) horizon_days: i64,
    /// Contacts that opted out, per organization (a local copy of the registry's state).
    pub(crate) opt_outs: sms_bus::StateSet,
    /// Attachment URLs, fetching and downloads.
    pub(crate) media: crate::media::MediaConfig,
    /// For attachment URLs and inbound media.
    pub(crate) http: reqwest::Client,
    /// Stores accepted messages, many calls per transaction.
    pub(crate) writer: crate::writer::Writer,
    /// Held numbers by sender, so that a send needs no query for its sender.
    pub(crate) senders: crate::numbers::SenderCache,
}

/// What a send returns: the message and notes for the caller.
pub struct Sent {
    /// The message.
    pub message: MessageRow,
    /// E.g. that an ambiguous local time took the earlier instant.
    pub notes: Vec<String>,
}

impl App {
    /// Authenticates the call and reads the organization and user it acts for.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, ComposerError> {
        Ok(sms_runtime::auth::authenticate(&self.tokens, metadata)?)
    }

    /// Validates and accepts a message: stored `accepted`, then published for the dispatcher.
    pub async fn send(
        &self,
        caller: &Caller,
        req: SendMessageRequest,
    ) -> Result<Sent, ComposerError> {
        let user = user(caller)?;
        let org = caller.organization_id.as_str();
        let idempotency_key = Some(req.idempotency_key.trim()).filter(|k| !k.is_empty());
        if let Some(key) = idempotency_key
            && let Some(existing) = store::find_by_idempotency_key(&self.pool, org, key).await?
        {
            return Ok(Sent {
                message: existing,
                notes: vec![
                    "an earlier call with this idempotency key created this message".into(),
                ],
            });
        }
        let mut notes = Vec::new();
        let send_at =
            self.send_time(req.send_at.as_ref(), req.send_at_local.as_ref(), &mut notes)?;
        let (body, template_id) = self.body(caller, user, &req).await?;
        let body = if req.smart_encoding {
            smart_encode(body, &mut notes)
        } else {
            body
        };
        // An MMS may be all pictures; everything else needs text.
        if req.attachments.is_empty() || !body.trim().is_empty() {
            sms_core::validate_body(&body)?;
        }
        let (from, to) = self.route(caller, user, &req.from, &req.to).await?;
        let id = Uuid::now_v7();
        let media = if req.attachments.is_empty() {
            Vec::new()
        } else {
            if !from.mms_capable {
                return Err(ComposerError::SenderNotMmsCapable(from.number.clone()));
            }
            let sender = PhoneNumber::parse_valid(&from.number, None)
                .map_err(ComposerError::InvalidSender)?;
            sms_core::mms::check_route(&sender, &to)?;
            self.prepare_media(org, id, &req.attachments).await?
        };
        if self.opted_out(&caller.organization_id, to.e164()) {
            return Err(ComposerError::OptedOut(to.e164().to_owned()));
        }
        let counted = sms_core::count(&body);
        let now = Utc::now();
        let row = MessageRow {
            id,
            organization_id: org.to_owned(),
            user_id: user.to_owned(),
            direction: "outbound".into(),
            from_number: from.number,
            to_number: to.e164().to_owned(),
            body,
            status: if send_at.is_some() {
                Status::Scheduled
            } else {
                Status::Accepted
            }
            .as_str()
            .into(),
            reason: None,
            carrier_error_code: None,
            encoding: counted.encoding.as_str().into(),
            segments: i32::try_from(counted.segments).unwrap_or(i32::MAX),
            characters: i32::try_from(counted.units).unwrap_or(i32::MAX),
            carrier_sid: None,
            lead_id: Some(req.lead_id).filter(|s| !s.is_empty()),
            contact_id: Some(req.contact_id).filter(|s| !s.is_empty()),
            created_at: now,
            updated_at: now,
            send_at,
            done: false,
            media_count: i32::try_from(media.len()).unwrap_or(i32::MAX),
        };
        let media_count = media.len();
        let stored = self
            .writer
            .insert(crate::writer::NewSend {
                message: row.clone(),
                idempotency_key: idempotency_key.map(str::to_owned),
                to_region: to.region().map(|r| r.to_string()).unwrap_or_default(),
                template_id,
                media,
                event_id: accepted_event_id(&row),
            })
            .await;
        if let Err(e) = stored {
            // A concurrent call with the same key won the race: return its message.
            let key_taken = e
                .as_database_error()
                .and_then(|d| d.constraint())
                .is_some_and(|c| c == "messages_idempotency_key");
            if key_taken
                && let Some(key) = idempotency_key
                && let Some(existing) = store::find_by_idempotency_key(&self.pool, org, key).await?
            {
                return Ok(Sent {
                    message: existing,
                    notes,
                });
            }
            return Err(e.into());
        }
        metrics::counter!(
            sms_runtime::metrics::MESSAGES_ACCEPTED,
            "kind" => if media_count == 0 { "sms" } else { "mms" },
            "when" => if send_at.is_some() { "later" } else { "now" },
        )
        .increment(1);
        // Stored is accepted: if this publish fails, the re-publisher sends it later.
        if let Err(e) = self.publish_accepted(&row).await {
            tracing::warn!(message_id = %row.id, error = %e, "publish failed; the re-publisher will retry");
        }
        Ok(Sent {
            message: row,
            notes,
        })
    }

    /// The send time asked for, checked; `None` to send now.
    fn send_time(
        &self,
        at: Option<&prost_types::Timestamp>,
        local: Option<&LocalDateTime>,
        notes: &mut Vec<String>,
    ) -> Result<Option<DateTime<Utc>>, ComposerError> {
        let local = local.filter(|l| !l.date_time.is_empty() || !l.time_zone.is_empty());
        let instant = match (at, local) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err(ComposerError::TwoSendTimes),
            (Some(t), None) => jiff::Timestamp::new(t.seconds, t.nanos).map_err(|_| {
                ComposerError::Schedule(ScheduleError::InvalidDateTime(format!("{t:?}")))
            })?,
            (None, Some(l)) => {
                let resolved = schedule::resolve_local(&l.date_time, &l.time_zone)?;
                if resolved.ambiguous {
                    notes.push(format!(
                        "{} happens twice in {} (clocks go back); the earlier one, {}, was taken",
                        l.date_time, l.time_zone, resolved.at
                    ));
                }
                resolved.at
            }
        };
        schedule::check_window(instant, jiff::Timestamp::now(), self.horizon_days)?;
        DateTime::from_timestamp(
            instant.as_second(),
            instant.subsec_nanosecond().max(0) as u32,
        )
        .map(Some)
        .ok_or_else(|| ComposerError::Schedule(ScheduleError::InvalidDateTime(instant.to_string())))
    }

    /// Cancels a scheduled message that has not fired.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<MessageRow, ComposerError> {
        let m = self.scheduled_message(caller, id).await?;
        self.schedule_command(&m, schedule_command::Action::Cancel(true))
            .await?;
        // The scheduler publishes the same event (same id); applying it here as well makes the
        // reply show the canceled message without waiting for the bus.
        let event = StatusChanged {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[&m.id.to_string(), "canceled"]),
                &m.organization_id,
                &m.id.to_string(),
            )),
            status: sms_bus::status_to_proto(Status::Canceled) as i32,
            ..Default::default()
        };
        self.apply_status(&event)
            .await
            .map_err(|e| ComposerError::SchedulerUnavailable(e.to_string()))?;
        self.get(caller, id).await.map(|(m, _)| m)
    }

    /// Moves a scheduled message that has not fired.
    pub async fn reschedule(
        &self,
        caller: &Caller,
        id: &str,
        at: Option<&prost_types::Timestamp>,
        local: Option<&LocalDateTime>,
    ) -> Result<Sent, ComposerError> {
        let m = self.scheduled_message(caller, id).await?;
        let mut notes = Vec::new();
        let Some(send_at) = self.send_time(at, local, &mut notes)? else {
            return Err(ComposerError::Schedule(ScheduleError::InvalidDateTime(
                "a new send time is required".into(),
            )));
        };
        let to = prost_types::Timestamp {
            seconds: send_at.timestamp(),
            nanos: i32::try_from(send_at.timestamp_subsec_nanos()).unwrap_or(0),
        };
        self.schedule_command(&m, schedule_command::Action::RescheduleTo(to))
            .await?;
        store::set_send_at(&self.pool, m.id, send_at).await?;
        let (message, _) = self.get(caller, id).await?;
        Ok(Sent { message, notes })
    }

    async fn scheduled_message(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<MessageRow, ComposerError> {
        let (m, _) = self.get(caller, id).await?;
        if m.status != Status::Scheduled.as_str() {
            return Err(ComposerError::NotScheduled { status: m.status });
        }
        Ok(m)
    }

    /// Asks a scheduler replica to carry out a command; it alone knows whether it is too late.
    async fn schedule_command(
        &self,
        m: &MessageRow,
        action: schedule_command::Action,
    ) -> Result<(), ComposerError> {
        let command = ScheduleCommand {
            meta: Some(sms_bus::meta(
                sms_bus::new_event_id(),
                &m.organization_id,
                &m.id.to_string(),
            )),
            action: Some(action),
        };
        let request = self.bus.client().request(
            self.bus.subjects().scheduler_command(),
            command.encode_to_vec().into(),
        );
        let reply = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .map_err(|_| ComposerError::SchedulerUnavailable("no answer within 5 s".into()))?
            .map_err(|e| ComposerError::SchedulerUnavailable(e.to_string()))?;
        let reply = ScheduleCommandReply::decode(reply.payload)
            .map_err(|e| ComposerError::SchedulerUnavailable(format!("undecodable reply: {e}")))?;
        if !reply.error.is_empty() {
            return Err(ComposerError::SchedulerUnavailable(reply.error));
        }
        if !reply.done {
            return Err(ComposerError::AlreadyFired { state: reply.state });
        }
        Ok(())
    }

    /// The body to send: the raw body, or the template rendered against the request's context.
    async fn body(
        &self,
        caller: &Caller,
        user: &str,
        req: &SendMessageRequest,
    ) -> Result<(String, Option<Uuid>), ComposerError> {
        let template_id = req.template_id.trim();
        if template_id.is_empty() {
            return Ok((req.body.clone(), None));
        }
        if !req.body.is_empty() {
            return Err(ComposerError::BodyAndTemplate);
        }
        let id = parse_id(template_id)?;
        let row = store::visible_template(&self.pool, &caller.organization_id, user, id)
            .await?
            .ok_or(ComposerError::NotFound(Entity::Template))?;
        let body = crate::templates::render(&row.body, req.context.as_ref())?;
        Ok((body, Some(id)))
    }

    /// Picks and checks the sender and the recipient.
    async fn route(
        &self,
        caller: &Caller,
        user: &str,
        from: &str,
        to: &str,
    ) -> Result<(NumberRow, PhoneNumber), ComposerError> {
        let org = caller.organization_id.as_str();
        if !from.trim().is_empty() {
            let from =
                PhoneNumber::parse_valid(from, None).map_err(ComposerError::InvalidSender)?;
            let number = match self.senders.get(org, from.e164()) {
                Some(number) => number,
                None => {
                    let number = store::find_number(&self.pool, org, from.e164())
                        .await?
                        .ok_or_else(|| ComposerError::UnknownSender(from.e164().to_owned()))?;
                    self.senders.insert(number.clone());
                    number
                }
            };
            if number.kind != "internal" {
                return Err(ComposerError::ExternalSender(number.number));
            }
            if !number.sms_capable {
                return Err(ComposerError::SenderNotSmsCapable(number.number));
            }
            let owns = number.owner_user_id.as_deref() == Some(user);
            let member = match &number.owner_group_id {
                Some(group) if !owns => store::is_member(&self.pool, org, group, user).await?,
                _ => false,
            };
            if !owns && !member {
                return Err(ComposerError::SenderNotOwned(number.number));
            }
            let to = recipient(to, from.region())?;
            if !phone::same_calling_code(&from, &to) {
                return Err(ComposerError::InternationalNotAllowed {
                    from: from.calling_code(),
                    to: to.calling_code(),
                });
            }
            return Ok((number, to));
        }
        // No sender given: the recipient must be international format, then the user's number
        // with the same calling code is used (the one last used with this contact first).
        let to = recipient(to, None)?;
        let candidates = store::usable_numbers(&self.pool, org, user, to.e164()).await?;
        let number = candidates
            .into_iter()
            .find(|n| {
                PhoneNumber::parse_valid(&n.number, None)
                    .is_ok_and(|p| phone::same_calling_code(&p, &to))
            })
            .ok_or(ComposerError::NoSenderAvailable {
                calling_code: to.calling_code(),
            })?;
        Ok((number, to))
    }

    pub(crate) async fn publish_accepted(&self, m: &MessageRow) -> Result<(), sms_bus::BusError> {
        let mut message = outbound(m);
        if m.media_count > 0 {
            let from = m.send_at.unwrap_or(m.created_at).timestamp();
            message.media_urls = match self.media_urls(m.id, from).await {
                Ok(urls) => urls,
                Err(e) => {
                    // Not published: the re-publisher tries again.
                    tracing::warn!(message_id = %m.id, error = %e, "attachment URLs unavailable");
                    return Ok(());
                }
            };
        }
        if let Some(send_at) = m.send_at {
            let event = MessageScheduled {
                meta: Some(sms_bus::meta(
                    sms_bus::stable_event_id(&[&m.id.to_string(), "scheduled"]),
                    &m.organization_id,
                    &m.id.to_string(),
                )),
                message: Some(message),
                send_at: Some(prost_types::Timestamp {
                    seconds: send_at.timestamp(),
                    nanos: i32::try_from(send_at.timestamp_subsec_nanos()).unwrap_or(0),
                }),
            };
            self.bus.publish_durably(&event).await?;
            if let Err(e) = store::mark_schedule_published(&self.pool, m.id).await {
                // Harmless: the re-publisher sends it again and the scheduler ignores repeats.
                tracing::warn!(message_id = %m.id, error = %e, "could not mark the schedule published");
            }
            return Ok(());
        }
        let event = MessageAccepted {
            meta: Some(sms_bus::meta(
                accepted_event_id(m),
                &m.organization_id,
                &m.id.to_string(),
            )),
            message: Some(message),
        };
        self.bus.publish_durably(&event).await
    }

    /// A message of the caller's organization, with its history.
    pub async fn get(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(MessageRow, Vec<store::HistoryRow>), ComposerError> {
        let id = parse_id(id)?;
        let m = store::get_message(&self.pool, &caller.organization_id, id)
            .await?
            .ok_or(ComposerError::NotFound(Entity::Message))?;
        let history = store::history(&self.pool, id).await?;
        Ok((m, history))
    }

    /// A page of the caller's organization's messages and the token of the next page.
    pub async fn list(
        &self,
        caller: &Caller,
        req: &ListMessagesRequest,
    ) -> Result<(Vec<MessageRow>, String), ComposerError> {
        let page_size = page_size(req.page_size, 50);
        let contact = match req.contact_number.trim() {
            "" => None,
            n => Some(
                PhoneNumber::parse_valid(n, None)
                    .map_err(ComposerError::InvalidRecipient)?
                    .e164()
                    .to_owned(),
            ),
        };
        let status = match req.status() {
            MessageStatus::Unspecified => None,
            s => sms_bus::status_from_proto(s).map(Status::as_str),
        };
        let direction = match req.direction() {
            Direction::Unspecified => None,
            Direction::Outbound => Some("outbound"),
            Direction::Inbound => Some("inbound"),
        };
        let filter = ListFilter {
            status,
            errors_only: req.errors_only,
            contact_number: contact.as_deref(),
            direction,
            lead_id: Some(req.lead_id.trim()).filter(|l| !l.is_empty()),
            created_after: req.created_after.as_ref().and_then(datetime),
            created_before: req.created_before.as_ref().and_then(datetime),
            before: decode_page_token(&req.page_token)?,
        };
        let rows = store::list_messages(
            &self.pool,
            &caller.organization_id,
            &filter,
            i64::from(page_size) + 1,
        )
        .await?;
        Ok(paginate(rows, page_size, message_token))
    }

    /// Applies a status event to its message (older and repeated statuses change nothing).
    pub async fn apply_status(&self, e: &StatusChanged) -> Result<(), sms_bus::HandleError> {
        match self.apply_batch(std::slice::from_ref(e)).await {
            Ok(mut outcomes) => outcomes.pop().unwrap_or(Ok(())),
            Err(e) => Err(database_retry(e)),
        }
    }

    /// Applies a batch of status events in one transaction, in the order given (the bus's);
    /// returns one outcome per event. Should the transaction fail, each event is applied on
    /// its own, so one bad event costs only itself.
    pub async fn apply_statuses(
        &self,
        events: &[StatusChanged],
    ) -> Vec<Result<(), sms_bus::HandleError>> {
        match self.apply_batch(events).await {
            Ok(outcomes) => outcomes,
            Err(e) if events.len() > 1 => {
                tracing::warn!(events = events.len(), error = %e, "batch of statuses failed; applying one by one");
                let mut outcomes = Vec::with_capacity(events.len());
                for event in events {
                    outcomes.push(self.apply_status(event).await);
                }
                outcomes
            }
            Err(e) => vec![Err(database_retry(e))],
        }
    }

    async fn apply_batch(
        &self,
        events: &[StatusChanged],
    ) -> Result<Vec<Result<(), sms_bus::HandleError>>, sqlx::Error> {
        let mut outcomes: Vec<Result<(), sms_bus::HandleError>> = Vec::with_capacity(events.len());
        let mut valid = Vec::with_capacity(events.len());
        for (index, e) in events.iter().enumerate() {
            match parse_status_event(e) {
                Ok(parsed) => {
                    valid.push((index, e, parsed));
                    outcomes.push(Ok(()));
                }
                Err(why) => outcomes.push(Err(why)),
            }
        }
        if valid.is_empty() {
            return Ok(outcomes);
        }
        let mut ids: Vec<Uuid> = valid.iter().map(|(_, _, (_, id, _))| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        let mut current: HashMap<Uuid, (String, Result<Status, String>)> = HashMap::new();
        for (id, org, status) in store::lock_statuses(&mut tx, &ids).await? {
            let status = status.parse::<Status>().map_err(|e| e.to_string());
            current.insert(id, (org, status));
        }
        let mut updates: HashMap<Uuid, store::StatusUpdate> = HashMap::new();
        let mut history = Vec::new();
        let mut billable = Vec::new();
        let mut advanced = Vec::new();
        for (index, e, (org, id, to)) in valid {
            let Some((_, status)) = current.get_mut(&id).filter(|(owner, _)| *owner == org) else {
                tracing::warn!(%id, "status for a message we do not have; ignored");
                continue;
            };
            let status = match status {
                Ok(status) => status,
                Err(why) => {
                    outcomes[index] = Err(sms_bus::HandleError::Permanent(format!(
                        "stored status: {why}"
                    )));
                    continue;
                }
            };
            let sid = Some(e.carrier_sid.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            let update = updates.entry(id).or_default();
            match transition(e, *status, to) {
                Transition::Advance => {
                    let fact = status_fact(e, to);
                    update.status = Some(to.as_str().to_owned());
                    if fact.reason.is_some() {
                        update.reason.clone_from(&fact.reason);
                    }
                    if fact.carrier_error_code.is_some() {
                        update.carrier_error_code = fact.carrier_error_code;
                    }
                    if sid.is_some() {
                        update.carrier_sid = sid;
                    }
                    history.push(store::NewHistory {
                        message_id: id,
                        entry: fact,
                        event_id: e
                            .meta
                            .as_ref()
                            .map(|m| m.event_id.clone())
                            .unwrap_or_default(),
                    });
                    // The carrier took it: this is what the customer is billed for.
                    if matches!(to, Status::Sent | Status::Delivered | Status::Undelivered) {
                        billable.push(id);
                    }
                    advanced.push(to);
                    *status = to;
                }
                Transition::Stale => {
                    if update.carrier_sid_if_none.is_none() {
                        update.carrier_sid_if_none = sid;
                    }
                }
                // A carrier's word about a message the composer has not yet seen handed on:
                // the dispatcher's `queued` may still be on its way (events of one message can
                // be applied out of order across batches), so try again shortly; a callback
                // for a message that never went out ends in the dead-letter stream.
                Transition::Illegal if matches!(*status, Status::Accepted | Status::Scheduled) => {
                    outcomes[index] = Err(sms_bus::HandleError::Retry {
                        reason: format!("{to} for a message still {status}"),
                        delay: Duration::from_secs(1),
                    });
                }
                Transition::Illegal => {
                    tracing::warn!(%id, from = %status, to = %to, "illegal status change ignored");
                }
            }
        }
        let updates: Vec<(Uuid, store::StatusUpdate)> = updates.into_iter().collect();
        store::set_statuses(&mut tx, &updates).await?;
        store::insert_histories(&mut tx, &history).await?;
        billable.sort_unstable();
        billable.dedup();
        let billed = store::record_usages(&mut tx, &billable).await?;
        tx.commit().await?;
        for to in advanced {
            metrics::counter!(sms_runtime::metrics::MESSAGE_STATUSES, "status" => to.as_str())
                .increment(1);
        }
        for (encoding, segments) in billed {
            metrics::counter!(sms_runtime::metrics::SEGMENTS_BILLED, "encoding" => encoding)
                .increment(u64::try_from(segments).unwrap_or(0));
        }
        Ok(outcomes)
    }

    /// Leads with errored messages, most recent error first, and the next page's token.
    pub async fn errored_leads(
        &self,
        caller: &Caller,
        req: &ListErroredLeadsRequest,
    ) -> Result<(Vec<store::ErroredLeadRow>, String), ComposerError> {
        let page_size = page_size(req.page_size, 50);
        let before = match req.page_token.as_str() {
            "" => None,
            token => {
                let raw = URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(ComposerError::InvalidPageToken)?;
                let (micros, lead) = raw.split_once(':').ok_or(ComposerError::InvalidPageToken)?;
                let at = micros
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or(ComposerError::InvalidPageToken)?;
                Some((at, lead.to_owned()))
            }
        };
        let rows = store::errored_leads(
            &self.pool,
            &caller.organization_id,
            before,
            i64::from(page_size) + 1,
        )
        .await?;
        Ok(paginate(rows, page_size, |r| {
            URL_SAFE_NO_PAD.encode(format!(
                "{}:{}",
                r.last_error_at.timestamp_micros(),
                r.lead_id
            ))
        }))
    }

    /// Usage totals between two months (inclusive), by month, country, kind and encoding.
    pub async fn usage(
        &self,
        caller: &Caller,
        from_month: &str,
        to_month: &str,
    ) -> Result<Vec<store::UsageRow>, ComposerError> {
        let from = match from_month.trim() {
            "" => {
                let today = Utc::now().date_naive();
                chrono::NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
                    .ok_or_else(|| ComposerError::InvalidMonth(from_month.to_owned()))?
            }
            m => parse_month(m)?,
        };
        let to = match to_month.trim() {
            "" => from,
            m => parse_month(m)?,
        };
        if to < from {
            return Err(ComposerError::InvalidMonth(format!(
                "{from_month}..{to_month}"
            )));
        }
        Ok(store::usage(&self.pool, &caller.organization_id, from, to).await?)
    }

    /// Re-publishes messages stuck in `accepted`, and schedules whose publish is not confirmed
    /// (the publish failed, or the process died between storing and publishing). Same event
    /// id: JetStream, the dispatcher or the scheduler drop repeats.
    pub async fn republish_stale(&self, older_than: Duration) -> Result<usize, sqlx::Error> {
        let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stale = store::claim_unpublished(&self.pool, cutoff, 500).await?;
        for m in &stale {
            if let Err(e) = self.publish_accepted(m).await {
                tracing::warn!(message_id = %m.id, error = %e, "re-publish failed");
            }
        }
        Ok(stale.len())
    }
}

/// The body with look-alike characters replaced, when that saves segments and stays within the
/// length limit (a note says so); otherwise the body as written.
fn smart_encode(body: String, notes: &mut Vec<String>) -> String {
    let smart = sms_core::smart::smart_encoded(&body);
    if smart.segments_saved() == 0 || sms_core::validate_body(&smart.text).is_err() {
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

/// The organization, message and status a status event is about.
fn parse_status_event(e: &StatusChanged) -> Result<(&str, Uuid, Status), sms_bus::HandleError> {
    let Some(meta) = &e.meta else {
        return Err(sms_bus::HandleError::Permanent(
            "status event without meta".into(),
        ));
    };
    let Ok(id) = Uuid::parse_str(&meta.message_id) else {
        return Err(sms_bus::HandleError::Permanent(format!(
            "status event for a bad message id {:?}",
            meta.message_id
        )));
    };
    let Some(to) = sms_bus::status_from_proto(e.status()) else {
        return Err(sms_bus::HandleError::Permanent(
            "status event without a status".into(),
        ));
    };
    Ok((meta.organization_id.as_str(), id, to))
}

/// A database failure while applying statuses: try the event again shortly.
fn database_retry(e: sqlx::Error) -> sms_bus::HandleError {
    sms_bus::HandleError::Retry {
        reason: format!("database: {e}"),
        delay: Duration::from_millis(500),
    }
}

/// What a status event does to a message at `current`: the status machine's answer, except
/// that an event meant only for messages still at `only_from` is stale for any other.
fn transition(e: &StatusChanged, current: Status, to: Status) -> Transition {
    match sms_bus::status_from_proto(e.only_from()) {
        Some(only_from) if only_from != current => Transition::Stale,
        _ => current.transition(to),
    }
}

/// The history entry a status event makes when it advances a message to `to`.
fn status_fact(e: &StatusChanged, to: Status) -> store::HistoryRow {
    store::HistoryRow {
        status: to.as_str().to_owned(),
        reason: Some(e.reason.clone()).filter(|s| !s.is_empty()),
        carrier_error_code: (e.carrier_error_code != 0)
            .then(|| i32::try_from(e.carrier_error_code).unwrap_or(i32::MAX)),
        occurred_at: e
            .meta
            .as_ref()
            .and_then(|m| m.occurred_at.as_ref())
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .unwrap_or_else(Utc::now),
        detail: Some(e.detail.clone()).filter(|d| !d.is_empty()),
    }
}

/// Parses an id given by a caller.
pub(crate) fn parse_id(id: &str) -> Result<Uuid, ComposerError> {
    Uuid::parse_str(id.trim()).map_err(|_| ComposerError::InvalidId(id.to_owned()))
}

fn datetime(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
}

/// The recipient, valid, in a supported country, and able to take SMS as far as we know.
fn recipient(to: &str, region: Option<sms_core::Region>) -> Result<PhoneNumber, ComposerError> {
    let to = PhoneNumber::parse_valid(to, region).map_err(ComposerError::InvalidRecipient)?;
    if !to.region().is_some_and(|r| r.sms_supported()) {
        return Err(ComposerError::UnsupportedCountry {
            region: to
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "unknown".into()),
        });
    }
    if !to.number_type().sms_capable() {
        return Err(ComposerError::RecipientNotSmsCapable {
            number: to.e164().to_owned(),
            number_type: to.number_type().as_str().to_owned(),
        });
    }
    Ok(to)
}

/// A page size asked for: `default` when 0, at most 500.
pub(crate) fn page_size(asked: u32, default: u32) -> u32 {
    match asked {
        0 => default,
        n => n.min(500),
    }
}

/// Drops the extra row fetched to learn whether there is more, and makes the next page's
/// token from the last row kept (empty when this is the last page).
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    size: u32,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if rows.len() > size as usize {
        rows.truncate(size as usize);
        let next = rows.last().map(token).unwrap_or_default();
        (rows, next)
    } else {
        (rows, String::new())
    }
}

/// The page token after a message.
pub(crate) fn message_token(m: &MessageRow) -> String {
    encode_page_token(m.created_at, m.id)
}

/// The first day of a `YYYY-MM` month.
fn parse_month(m: &str) -> Result<chrono::NaiveDate, ComposerError> {
    let bad = || ComposerError::InvalidMonth(m.to_owned());
    let (y, mo) = m.split_once('-').ok_or_else(bad)?;
    let (y, mo) = (
        y.parse::<i32>().map_err(|_| bad())?,
        mo.parse::<u32>().map_err(|_| bad())?,
    );
    if !(2000..=9999).contains(&y) {
        return Err(bad());
    }
    chrono::NaiveDate::from_ymd_opt(y, mo, 1).ok_or_else(bad)
}

fn outbound(m: &MessageRow) -> OutboundMessage {
    OutboundMessage {
        // Only the opt-out confirmation may reach a contact who just opted out.
        allow_opted_out: m.user_id
            == format!("{}:opt_out_confirmation", crate::inbound::AUTO_REPLY_USER),
        message_id: m.id.to_string(),
        organization_id: m.organization_id.clone(),
        user_id: m.user_id.clone(),
        from: m.from_number.clone(),
        to: m.to_number.clone(),
        body: m.body.clone(),
        encoding: m.encoding.clone(),
        segments: u32::try_from(m.segments).unwrap_or(0),
        media_urls: Vec::new(),
    }
}

fn accepted_event_id(m: &MessageRow) -> String {
    sms_bus::stable_event_id(&[&m.id.to_string(), "accepted"])
}

pub(crate) fn encode_page_token(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

pub(crate) fn decode_page_token(
    token: &str,
) -> Result<Option<(DateTime<Utc>, Uuid)>, ComposerError> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ComposerError::InvalidPageToken)?;
    let (micros, id) = raw.split_once(':').ok_or(ComposerError::InvalidPageToken)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(ComposerError::InvalidPageToken)?;
    let id = Uuid::parse_str(id).map_err(|_| ComposerError::InvalidPageToken)?;
    Ok(Some((at, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            decode_page_token(&encode_page_token(at, id)).unwrap(),
            Some((at, id))
        );
        assert_eq!(decode_page_token("").unwrap(), None);
        assert!(decode_page_token("nope!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:x")).is_err());
    }

    #[test]
    fn months() {
        assert_eq!(
            parse_month("2026-02").unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()
        );
        for bad in ["2026-13", "2026", "26-01", "abcd-01", "2026-00"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recipients() {
        assert!(recipient("+12015550123", None).is_ok());
        assert!(matches!(
            recipient("+819012345678", None),
            Err(ComposerError::UnsupportedCountry { .. })
        ));
        assert!(matches!(
            recipient("+442079460018", None),
            Err(ComposerError::RecipientNotSmsCapable { .. })
        ));
        assert!(matches!(
            recipient("2015550123", None),
            Err(ComposerError::InvalidRecipient(_))
        ));
    }
}
