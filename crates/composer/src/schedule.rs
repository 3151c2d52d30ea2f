//! Send later: the send time's window, and cancel and reschedule, which a scheduler replica
//! answers over NATS request/reply (only its row knows, atomically, whether it has fired).

use std::time::Duration;

use prost::Message as _;
use sms_core::Status;
use sms_core::schedule::ScheduleError;
use sms_proto::events::v1::ScheduleState;
use sms_proto::events::v1::{
    ScheduleCommand, ScheduleCommandReply, StatusChanged, StatusSource, schedule_command,
};
use tracing::Instrument as _;

use sms_bus::Bus;
use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::SendError;
use crate::messages::Messages;
use crate::send::Sent;
use crate::send::command::{self, Horizon};
use crate::settings::OrgSettings;
use crate::status::Statuses;
use crate::store::{self, MessageRow};

/// Send later: cancel and reschedule, which a scheduler replica answers over NATS
/// request/reply.
#[derive(Clone)]
pub struct Scheduling {
    pool: PgPool,
    bus: Bus,
    horizon: Horizon,
    statuses: Statuses,
    messages: Messages,
    settings: OrgSettings,
}

impl Scheduling {
    /// Scheduled messages in `pool`, their commands sent over `bus`.
    pub fn new(
        pool: PgPool,
        bus: Bus,
        horizon: Horizon,
        statuses: Statuses,
        messages: Messages,
        settings: OrgSettings,
    ) -> Self {
        Scheduling {
            pool,
            bus,
            horizon,
            statuses,
            messages,
            settings,
        }
    }

    /// Cancels a scheduled message that has not fired.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<MessageRow, SendError> {
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
            source: StatusSource::Scheduler as i32,
            ..Default::default()
        };
        self.statuses
            .apply_status(&event)
            .await
            .map_err(|e| SendError::SchedulerUnavailable(e.to_string()))?;
        self.messages
            .get(caller, id)
            .await
            .map(|(m, _)| m)
            .map_err(SendError::from)
    }

    /// Moves a scheduled message that has not fired.
    pub async fn reschedule(
        &self,
        caller: &Caller,
        id: &str,
        when: command::When,
    ) -> Result<Sent, SendError> {
        let m = self.scheduled_message(caller, id).await?;
        let mut notes = Vec::new();
        let Some(send_at) = self.horizon.send_time(&when, &mut notes)? else {
            return Err(SendError::Schedule(ScheduleError::Required));
        };
        // Quiet hours hold a moved message as they would a new one.
        let hold = match (m.from_number.number(), m.to_number.number()) {
            (Some(from), Some(to)) => {
                let settings = self.settings.of(&m.organization_id).await?;
                self.settings
                    .quiet_hold(&settings, &m.organization_id, from, to, send_at)
                    .await?
            }
            // Outbound messages are between numbers; nothing else is scheduled.
            _ => None,
        };
        let send_at = match hold {
            Some(hold) => {
                notes.push(hold.note);
                hold.until
            }
            None => send_at,
        };
        let to = prost_types::Timestamp {
            seconds: send_at.timestamp(),
            nanos: i32::try_from(send_at.timestamp_subsec_nanos()).unwrap_or(0),
        };
        self.schedule_command(&m, schedule_command::Action::RescheduleTo(to))
            .await?;
        let counted = self
            .settings
            .of(&m.organization_id)
            .await?
            .daily_segment_cap
            .is_some();
        store::messages::set_send_at(&self.pool, m.id, send_at, counted).await?;
        let (message, _) = self.messages.get(caller, id).await?;
        let attachments = store::media::of_messages(&self.pool, &[message.id]).await?;
        Ok(Sent {
            message,
            notes,
            attachments,
        })
    }

    async fn scheduled_message(&self, caller: &Caller, id: &str) -> Result<MessageRow, SendError> {
        let (m, _) = self.messages.get(caller, id).await?;
        // A user moves their own sends; an administrator anyone's.
        if !caller.owns_or_administers(&m.user_id) {
            return Err(SendError::NotMessageOwner);
        }
        if m.status != Status::Scheduled {
            return Err(SendError::NotScheduled {
                status: m.status.as_str().to_owned(),
            });
        }
        Ok(m)
    }

    /// Asks a scheduler replica to carry out a command; it alone knows whether it is too late.
    async fn schedule_command(
        &self,
        m: &MessageRow,
        action: schedule_command::Action,
    ) -> Result<(), SendError> {
        let command = ScheduleCommand {
            meta: Some(sms_bus::meta(
                sms_bus::new_event_id(),
                &m.organization_id,
                &m.id.to_string(),
            )),
            action: Some(action),
            // Lets the scheduler keep a command for a schedule still on its way, and only that.
            accepted_at: Some(crate::fields::timestamp(m.created_at)),
        };
        // A client span whose context travels in the request's headers: the scheduler's
        // handling joins the caller's trace.
        let subject = self.bus.subjects().scheduler_command();
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("send {subject}"),
            otel.kind = "client",
            "messaging.system" = "nats",
            "messaging.operation.type" = "send",
            "messaging.destination.name" = %subject,
            "sms.message_id" = %m.id,
        );
        let mut headers = async_nats::HeaderMap::new();
        span.in_scope(|| sms_bus::trace::inject_current(&mut headers));
        let request = self.bus.client().request_with_headers(
            subject,
            headers,
            command.encode_to_vec().into(),
        );
        let reply = tokio::time::timeout(Duration::from_secs(5), request)
            .instrument(span)
            .await
            .map_err(|_| SendError::SchedulerUnavailable("no answer within 5 s".into()))?
            .map_err(|e| SendError::SchedulerUnavailable(e.to_string()))?;
        let reply = ScheduleCommandReply::decode(reply.payload)
            .map_err(|e| SendError::SchedulerUnavailable(format!("undecodable reply: {e}")))?;
        if !reply.error.is_empty() {
            return Err(SendError::SchedulerUnavailable(reply.error));
        }
        let state = sms_bus::reply_state(&reply);
        if !reply.done && state == ScheduleState::Unknown {
            // Ours says scheduled, the scheduler has no such schedule: its event is late (a
            // scheduler far behind). Nothing was done; trying again later is safe.
            return Err(SendError::SchedulerUnavailable(
                "the scheduler has not received this message's schedule yet".into(),
            ));
        }
        if !reply.done {
            return Err(SendError::AlreadyFired {
                state: sms_bus::schedule_state_name(state).to_owned(),
            });
        }
        Ok(())
    }
}
