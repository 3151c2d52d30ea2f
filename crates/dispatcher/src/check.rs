//! The composer's questions about messages whose status stopped moving (`{ns}.msg.check`):
//! where does the message stand? The answer goes out as status events, through the outbox,
//! with the same ids as the events they repeat, so an answer that tells the composer nothing new
//! changes nothing.

use std::time::Duration;

use prost::Message as _;
use sms_bus::{Delivery, HandleError};
use sms_core::Reason;
use sms_proto::events::v1::{OutboundMessage, StatusCheck};
use uuid::Uuid;

use crate::batches::db_retry;
use crate::send::Dispatcher;
use crate::store::SendState;
use crate::{events, store};

fn count(outcome: &'static str) {
    metrics::counter!(sms_runtime::metrics::STATUS_CHECKS, "outcome" => outcome).increment(1);
}

impl Dispatcher {
    pub(crate) async fn check(
        &self,
        e: StatusCheck,
        delivery: Delivery,
    ) -> Result<(), HandleError> {
        let Some(meta) = e.meta else {
            return Err(HandleError::Permanent("status check without meta".into()));
        };
        let id = Uuid::parse_str(&meta.message_id).map_err(|_| {
            HandleError::Permanent(format!(
                "status check for a bad message id {}",
                sms_core::text::quote(&meta.message_id)
            ))
        })?;
        let Some(send) = store::standing(&self.pool, id)
            .await
            .map_err(|e| db_retry(e, delivery))?
        else {
            count("unknown");
            tracing::warn!(%id, "status check for a message this dispatcher never took on");
            return Ok(());
        };
        if send.organization_id != meta.organization_id {
            return Err(HandleError::Permanent(
                "status check names another organization".into(),
            ));
        }
        let org = send.organization_id.as_str();
        match send.state {
            // A call under way or in doubt: resolution reports what it finds.
            SendState::Sending => count("pending"),
            SendState::Retry => {
                // Waiting for a redelivery; if none has come for a lease, the event is gone
                // (dead-lettered) and the send is put in doubt: resolution asks the carrier and
                // sends it if the carrier does not have it.
                let stale = chrono::Utc::now() - send.updated_at
                    > chrono::Duration::from_std(self.in_doubt_after).unwrap_or_default();
                if stale
                    && store::retry_to_doubt(&self.pool, id)
                        .await
                        .map_err(|e| db_retry(e, delivery))?
                {
                    tracing::warn!(%id, "send waiting for a retry that never came; in doubt now");
                }
                count("pending");
            }
            SendState::Failed => {
                let to = send
                    .message
                    .as_deref()
                    .and_then(|b| OutboundMessage::decode(b).ok())
                    .map(|m| m.to)
                    .unwrap_or_default();
                let reason = send
                    .reason
                    .as_deref()
                    .and_then(Reason::parse)
                    .unwrap_or(Reason::UnknownCarrierError);
                let event = self.encode(&events::failed(
                    org,
                    &meta.message_id,
                    &to,
                    reason,
                    send.last_error.as_deref().unwrap_or(""),
                ));
                store::report(&self.pool, &self.outbox, &[event])
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                self.outbox.wake();
                count("reported");
            }
            SendState::Sent => {
                let sid = send.carrier_sid.unwrap_or_default();
                let message = send
                    .message
                    .as_deref()
                    .and_then(|b| OutboundMessage::decode(b).ok())
                    .unwrap_or_else(|| OutboundMessage {
                        organization_id: org.to_owned(),
                        ..Default::default()
                    });
                let carrier = self.carrier_or_default(&message).clone();
                let record = match carrier.fetch(&sid).await {
                    Ok(record) => record,
                    Err(e) => {
                        count("lookup_failed");
                        let backoff = sms_runtime::backoff::Backoff::new(
                            Duration::from_secs(1),
                            Duration::from_secs(30),
                        );
                        return Err(HandleError::Retry {
                            reason: e.to_string(),
                            delay: backoff
                                .delay(u32::try_from(delivery.attempt).unwrap_or(u32::MAX)),
                        });
                    }
                };
                let Some(record) = record else {
                    count("unknown");
                    tracing::error!(%id, %sid, "the carrier has no message under the sid it gave");
                    return Ok(());
                };
                let mut answer = vec![self.encode(&events::sending(
                    org,
                    &meta.message_id,
                    &sid,
                    carrier.account(),
                ))];
                answer.extend(
                    events::from_record(org, &meta.message_id, carrier.account(), &record)
                        .map(|e| self.encode(&e)),
                );
                store::report(&self.pool, &self.outbox, &answer)
                    .await
                    .map_err(|e| db_retry(e, delivery))?;
                self.outbox.wake();
                count("reported");
            }
        }
        Ok(())
    }
}
