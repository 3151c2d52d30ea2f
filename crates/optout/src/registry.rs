//! The registry: who opted out of which organization's messages, the keywords that change it,
//! the replies each organization sends, and every change written with its state event.

use chrono::{DateTime, Utc};
use sms_bus::HandleError;
use sms_core::{Keyword, PhoneNumber};
use sms_proto::events::v1::{
    AutoReply, AutoReplyKind, CarrierOptOut, InboundReceived, OptOutChanged,
};
use sms_runtime::outbox::Outbox;
use sqlx::{PgConnection, PgPool};

/// The help reply when an organization has set none.
pub const DEFAULT_HELP: &str =
    "Reply STOP to stop receiving messages from us, START to receive them again.";

/// The opt-out confirmation when an organization has set none.
pub const DEFAULT_CONFIRMATION: &str = "You have been unsubscribed and will receive no more messages from us. Reply START to resubscribe.";

/// The registry's state and logic.
pub struct Registry {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) tokens: sms_runtime::auth::Tokens,
}

/// A database error as the bus should treat it (see [`sms_runtime::db::consumer_error`]).
pub(crate) fn retry(e: sqlx::Error) -> HandleError {
    sms_runtime::db::consumer_error(e, 3)
}

/// One contact's opt-out state.
#[derive(Debug, Clone)]
pub struct OptOutRow {
    /// The contact.
    pub contact_number: String,
    /// Opted out now.
    pub opted_out: bool,
    /// keyword, carrier or manual.
    pub source: String,
    /// Which of our numbers received the keyword.
    pub our_number: Option<String>,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Who, by hand.
    pub changed_by: Option<String>,
    /// Why, by hand.
    pub reason: Option<String>,
}

/// A change to record.
pub struct Change<'a> {
    /// The organization.
    pub organization_id: &'a str,
    /// The contact, E.164.
    pub contact: &'a str,
    /// Opt out (true) or back in.
    pub opted_out: bool,
    /// keyword, carrier or manual.
    pub source: &'a str,
    /// Which of our numbers received the keyword.
    pub our_number: Option<&'a str>,
    /// Who, by hand.
    pub changed_by: Option<&'a str>,
    /// Why, by hand.
    pub reason: Option<&'a str>,
}

impl Registry {
    pub(crate) async fn on_inbound(&self, e: InboundReceived) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent("inbound event without meta".into()));
        };
        let keyword = sms_core::keywords::classify(&e.body);
        if keyword.is_none() || meta.organization_id.is_empty() {
            return Ok(());
        }
        let contact = PhoneNumber::parse_valid(&e.from, None)
            .map_err(|err| HandleError::Permanent(format!("inbound sender: {err}")))?;
        let org = meta.organization_id.as_str();
        // Carriers retry webhooks: each inbound message is acted on once. The marker, the
        // change, its event and the reply commit together or not at all.
        let mut tx = self.pool.begin().await.map_err(retry)?;
        let first = sqlx::query!(
            "INSERT INTO optout.processed_inbound (carrier_sid) VALUES ($1) ON CONFLICT DO NOTHING",
            e.carrier_sid
        )
        .execute(&mut *tx)
        .await
        .map_err(retry)?
        .rows_affected()
            == 1;
        if !first {
            return Ok(());
        }
        let change = |opted_out| Change {
            organization_id: org,
            contact: contact.e164(),
            opted_out,
            source: "keyword",
            our_number: Some(&e.to),
            changed_by: None,
            reason: Some(e.body.trim()),
        };
        let mut counted = None;
        match keyword {
            Some(Keyword::OptOut) => {
                let c = change(true);
                let changed = self.record_in(&mut tx, &c).await.map_err(retry)?;
                // The confirmation goes out once, when the contact actually opts out.
                if changed {
                    counted = Some(c);
                    let (_, confirmation) = replies(&mut tx, org).await.map_err(retry)?;
                    self.reply(
                        &mut tx,
                        org,
                        &e,
                        contact.e164(),
                        &confirmation,
                        AutoReplyKind::OptOutConfirmation,
                    )
                    .await?;
                }
            }
            Some(Keyword::OptIn) => {
                let c = change(false);
                if self.record_in(&mut tx, &c).await.map_err(retry)? {
                    counted = Some(c);
                }
            }
            Some(Keyword::Help) => {
                let (help, _) = replies(&mut tx, org).await.map_err(retry)?;
                self.reply(&mut tx, org, &e, contact.e164(), &help, AutoReplyKind::Help)
                    .await?;
            }
            None => {}
        }
        tx.commit().await.map_err(retry)?;
        self.outbox.wake();
        if let Some(c) = counted {
            count_change(&c);
        }
        Ok(())
    }

    /// A recipient who unsubscribed at the carrier (21610), as the composer reports it for the
    /// message it belongs to. Recording is idempotent: a redelivery changes nothing.
    pub(crate) async fn on_carrier_opt_out(&self, e: CarrierOptOut) -> Result<(), HandleError> {
        let Some(meta) = &e.meta else {
            return Err(HandleError::Permanent(
                "carrier opt-out without meta".into(),
            ));
        };
        let contact = PhoneNumber::parse_valid(&e.contact_number, None).map_err(|err| {
            HandleError::Permanent(format!("carrier opt-out for a bad number: {err}"))
        })?;
        if meta.organization_id.is_empty() {
            return Err(HandleError::Permanent(
                "carrier opt-out without an organization".into(),
            ));
        }
        self.record(&Change {
            organization_id: &meta.organization_id,
            contact: contact.e164(),
            opted_out: true,
            source: "carrier",
            our_number: Some(&e.our_number)
                .filter(|n| !n.is_empty())
                .map(String::as_str),
            changed_by: None,
            reason: Some("the carrier reported the recipient unsubscribed"),
        })
        .await
        .map_err(retry)?;
        Ok(())
    }

    /// Adds a keyword answer to the outbox, for the composer to send.
    pub(crate) async fn reply(
        &self,
        tx: &mut PgConnection,
        org: &str,
        e: &InboundReceived,
        contact: &str,
        body: &str,
        kind: AutoReplyKind,
    ) -> Result<(), HandleError> {
        let name = sms_bus::auto_reply_kind_name(kind);
        let event = AutoReply {
            meta: Some(sms_bus::meta(
                sms_bus::stable_event_id(&[&e.carrier_sid, name]),
                org,
                "",
            )),
            from: e.to.clone(),
            to: contact.to_owned(),
            body: body.to_owned(),
            kind: name.to_owned(),
            reply_kind: kind as i32,
        };
        self.outbox.add_event(tx, &event).await.map_err(retry)
    }

    /// Records a change in a transaction of its own; returns whether the state changed.
    pub async fn record(&self, c: &Change<'_>) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let changed = self.record_in(&mut tx, c).await?;
        tx.commit().await?;
        self.outbox.wake();
        if changed {
            count_change(c);
        }
        Ok(changed)
    }

    /// Records a change and its event in `tx`; returns whether the state changed.
    pub(crate) async fn record_in(
        &self,
        tx: &mut PgConnection,
        c: &Change<'_>,
    ) -> Result<bool, sqlx::Error> {
        let previous = sqlx::query_scalar!(
            "SELECT opted_out FROM optout.opt_outs
             WHERE organization_id = $1 AND contact_number = $2 FOR UPDATE",
            c.organization_id,
            c.contact
        )
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO optout.opt_outs
                (organization_id, contact_number, opted_out, our_number, source, changed_by, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (organization_id, contact_number) DO UPDATE
                SET opted_out = $3, our_number = COALESCE($4, optout.opt_outs.our_number),
                    source = $5, changed_by = $6, reason = $7, changed_at = now()",
            c.organization_id,
            c.contact,
            c.opted_out,
            c.our_number,
            c.source,
            c.changed_by,
            c.reason
        )
        .execute(&mut *tx)
        .await?;
        // Published even when unchanged: the state stream keeps only the latest per contact,
        // and a repeat costs nothing, while a lost publish would leave a stale copy.
        let event = OptOutChanged {
            meta: Some(sms_bus::meta(
                sms_bus::new_event_id(),
                c.organization_id,
                "",
            )),
            contact_number: c.contact.to_owned(),
            opted_out: c.opted_out,
            our_number: c.our_number.unwrap_or_default().to_owned(),
            source: c.source.to_owned(),
        };
        self.outbox.add_event(tx, &event).await?;
        Ok(previous != Some(c.opted_out) && (previous.is_some() || c.opted_out))
    }

    /// The organization's (help, confirmation) replies.
    pub async fn replies(&self, org: &str) -> Result<(String, String), sqlx::Error> {
        replies(&mut *self.pool.acquire().await?, org).await
    }

    /// Sets the organization's replies (empty: the default).
    pub async fn set_replies(
        &self,
        org: &str,
        help: &str,
        confirmation: &str,
    ) -> Result<(String, String), sqlx::Error> {
        let help = if help.trim().is_empty() {
            DEFAULT_HELP
        } else {
            help
        };
        let confirmation = if confirmation.trim().is_empty() {
            DEFAULT_CONFIRMATION
        } else {
            confirmation
        };
        sqlx::query!(
            "INSERT INTO optout.replies (organization_id, help_text, opt_out_confirmation)
             VALUES ($1, $2, $3)
             ON CONFLICT (organization_id) DO UPDATE
                SET help_text = $2, opt_out_confirmation = $3, updated_at = now()",
            org,
            help,
            confirmation
        )
        .execute(&self.pool)
        .await?;
        Ok((help.to_owned(), confirmation.to_owned()))
    }

    /// One contact's state (`None` when never recorded).
    pub async fn get(&self, org: &str, contact: &str) -> Result<Option<OptOutRow>, sqlx::Error> {
        sqlx::query_as!(
            OptOutRow,
            "SELECT contact_number, opted_out, source, our_number, changed_at, changed_by, reason
             FROM optout.opt_outs WHERE organization_id = $1 AND contact_number = $2",
            org,
            contact
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// The organization's opted-out contacts, by number, after `after`.
    pub async fn list(
        &self,
        org: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<OptOutRow>, sqlx::Error> {
        sqlx::query_as!(
            OptOutRow,
            "SELECT contact_number, opted_out, source, our_number, changed_at, changed_by, reason
             FROM optout.opt_outs
             WHERE organization_id = $1 AND opted_out AND contact_number > $2
             ORDER BY contact_number LIMIT $3",
            org,
            after,
            limit
        )
        .fetch_all(&self.pool)
        .await
    }
}

/// The organization's (help, confirmation) replies.
pub(crate) async fn replies(
    conn: &mut PgConnection,
    org: &str,
) -> Result<(String, String), sqlx::Error> {
    let row = sqlx::query!(
        "SELECT help_text, opt_out_confirmation FROM optout.replies WHERE organization_id = $1",
        org
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or_else(
        || (DEFAULT_HELP.to_owned(), DEFAULT_CONFIRMATION.to_owned()),
        |r| (r.help_text, r.opt_out_confirmation),
    ))
}

/// Counts a change that took effect.
pub(crate) fn count_change(c: &Change<'_>) {
    metrics::counter!(
        sms_runtime::metrics::OPTOUT_CHANGES,
        "change" => if c.opted_out { "opted_out" } else { "opted_in" },
        "source" => c.source.to_owned(),
    )
    .increment(1);
}
