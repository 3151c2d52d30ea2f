//! Reading messages: one with its history, pages of them, leads with errors, usage.

use std::collections::HashMap;

use chrono::{Datelike, Utc};
use sms_core::text::{self, Lines};
use sms_core::{Direction, MessageId, PhoneNumber};

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{Entity, MessagesError};
use crate::fields::{paginate, parse_id};
use crate::settings::OrgSettings;
use crate::store::{self, ListFilter, MessageRow};

/// Longest month field (`YYYY-MM`).
const MAX_MONTH: usize = 16;

/// Which messages a page lists, as asked for and checked.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// In this status.
    pub status: Option<sms_core::Status>,
    /// Failed or undelivered only.
    pub errors_only: bool,
    /// With this contact (E.164).
    pub contact_number: Option<sms_core::PhoneNumber>,
    /// Through this number of ours (E.164).
    pub our_number: Option<sms_core::PhoneNumber>,
    /// In this direction.
    pub direction: Option<Direction>,
    /// About this lead.
    pub lead_id: Option<String>,
    /// Created after.
    pub created_after: Option<chrono::DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<chrono::DateTime<Utc>>,
    /// After this page's last message (time, id).
    pub before: Option<(chrono::DateTime<Utc>, MessageId)>,
    /// Messages a page.
    pub page_size: u32,
}

/// Reading messages: one with its history, pages of them, errored leads, usage, and their
/// attachments.
#[derive(Clone)]
pub struct Messages {
    pool: PgPool,
    settings: OrgSettings,
}

impl Messages {
    /// Messages read from `pool`; the daily cap from `settings`.
    pub fn new(pool: PgPool, settings: OrgSettings) -> Self {
        Messages { pool, settings }
    }

    /// A message of the caller's organization, with its history.
    pub async fn get(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(MessageRow, Vec<store::HistoryRow>), MessagesError> {
        let id = parse_id("id", id)?;
        let m = store::messages::get(&self.pool, &caller.organization_id, id)
            .await?
            .ok_or(MessagesError::from(Entity::Message))?;
        let history = store::history::of_message(&self.pool, id).await?;
        Ok((m, history))
    }

    /// A page of the caller's organization's messages and the token of the next page.
    pub async fn list(
        &self,
        caller: &Caller,
        query: &MessageQuery,
    ) -> Result<(Vec<MessageRow>, String), MessagesError> {
        let filter = ListFilter {
            status: query.status,
            errors_only: query.errors_only,
            contact_number: query.contact_number.as_ref().map(PhoneNumber::e164),
            our_number: query.our_number.as_ref().map(PhoneNumber::e164),
            direction: query.direction,
            lead_id: query.lead_id.as_deref(),
            created_after: query.created_after,
            created_before: query.created_before,
            before: query.before,
        };
        let rows = store::messages::list(
            &self.pool,
            &caller.organization_id,
            &filter,
            i64::from(query.page_size) + 1,
        )
        .await?;
        Ok(paginate(
            rows,
            query.page_size,
            crate::fields::message_token,
        ))
    }

    /// Leads with errored messages, most recent error first, and the next page's token.
    pub async fn errored_leads(
        &self,
        caller: &Caller,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<store::ErroredLeadRow>, String), MessagesError> {
        let page_size = crate::fields::page_size(page_size, 50);
        let before = crate::fields::decode_token(page_token)?;
        let rows = store::usage::errored_leads(
            &self.pool,
            &caller.organization_id,
            before,
            i64::from(page_size) + 1,
        )
        .await?;
        Ok(paginate(rows, page_size, |r| {
            crate::fields::encode_page_token_with(r.last_error_at, &r.lead_id)
        }))
    }

    /// Usage totals between two months (inclusive), by month, country, kind and encoding.
    pub async fn usage(
        &self,
        caller: &Caller,
        from_month: &str,
        to_month: &str,
    ) -> Result<Vec<store::UsageRow>, MessagesError> {
        text::check("from_month", from_month, MAX_MONTH, Lines::Single)?;
        text::check("to_month", to_month, MAX_MONTH, Lines::Single)?;
        let from = match from_month.trim() {
            "" => {
                let today = Utc::now().date_naive();
                chrono::NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
                    .ok_or_else(|| MessagesError::InvalidMonth(from_month.to_owned()))?
            }
            m => parse_month(m)?,
        };
        let to = match to_month.trim() {
            "" => from,
            m => parse_month(m)?,
        };
        if to < from {
            return Err(MessagesError::InvalidMonth(format!(
                "{from_month}..{to_month}"
            )));
        }
        Ok(store::usage::totals(&self.pool, &caller.organization_id, from, to).await?)
    }

    /// Today's (UTC) segments and the organization's daily cap (`None`: no cap).
    pub async fn today(
        &self,
        caller: &Caller,
    ) -> Result<(chrono::NaiveDate, i64, Option<i64>), MessagesError> {
        let org = &caller.organization_id;
        let day = store::settings::day_of(Utc::now());
        let cap = self.settings.of(org).await?.daily_segment_cap;
        let used = match cap {
            Some(_) => store::settings::counted(&self.pool, org, day).await?,
            None => store::settings::due_on(&self.pool, org, day).await?,
        };
        Ok((day, used, cap))
    }

    /// Attachments of messages, grouped by message.
    pub async fn attachments(
        &self,
        ids: &[MessageId],
    ) -> Result<HashMap<MessageId, Vec<store::MediaRow>>, MessagesError> {
        let mut by_message: HashMap<MessageId, Vec<store::MediaRow>> = HashMap::new();
        for m in store::media::of_messages(&self.pool, ids).await? {
            by_message.entry(m.message_id).or_default().push(m);
        }
        Ok(by_message)
    }

    /// One attachment with its bytes.
    pub async fn get_media(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<store::MediaRow, MessagesError> {
        store::media::get(
            &self.pool,
            Some(&caller.organization_id),
            parse_id("id", id)?,
        )
        .await?
        .ok_or(MessagesError::from(Entity::Attachment))
    }
}

/// The first day of a `YYYY-MM` month.
fn parse_month(m: &str) -> Result<chrono::NaiveDate, MessagesError> {
    let bad = || MessagesError::InvalidMonth(m.to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
