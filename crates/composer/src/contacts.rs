//! The CRM's contacts by phone number: a reply from a number with no conversation yet belongs
//! to the lead and contact registered for it.

use sms_core::PhoneNumber;
use sms_core::text::{self, Lines};

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{ComposerError, Entity};
use crate::send::command::MAX_CRM_ID;
use crate::store::{self, contacts::ContactRow};

fn number(value: &str) -> Result<PhoneNumber, ComposerError> {
    text::check(
        "contact_number",
        value,
        sms_core::phone::MAX_INPUT_LEN,
        Lines::Single,
    )?;
    PhoneNumber::parse_valid(value, None).map_err(ComposerError::InvalidRecipient)
}

fn id(field: &'static str, value: &str) -> Result<Option<String>, ComposerError> {
    text::check(field, value, MAX_CRM_ID, Lines::Single)?;
    Ok(Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

/// Contacts: which CRM lead or contact a phone number is.
#[derive(Clone)]
pub struct Contacts {
    pool: PgPool,
}

impl Contacts {
    /// Contacts kept in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Contacts { pool }
    }

    /// Registers (or replaces) the lead and contact of a phone number.
    pub async fn set_contact(
        &self,
        caller: &Caller,
        contact_number: &str,
        lead_id: &str,
        contact_id: &str,
    ) -> Result<ContactRow, ComposerError> {
        let n = number(contact_number)?;
        let (lead, contact) = (id("lead_id", lead_id)?, id("contact_id", contact_id)?);
        if lead.is_none() && contact.is_none() {
            return Err(ComposerError::ContactWithoutIds);
        }
        let mut conn = self.pool.acquire().await?;
        Ok(store::contacts::set(
            &mut conn,
            &caller.organization_id,
            n.e164(),
            lead.as_deref(),
            contact.as_deref(),
        )
        .await?)
    }

    /// A phone number's registration.
    pub async fn get_contact(
        &self,
        caller: &Caller,
        contact_number: &str,
    ) -> Result<ContactRow, ComposerError> {
        let n = number(contact_number)?;
        let mut conn = self.pool.acquire().await?;
        store::contacts::get(&mut conn, &caller.organization_id, n.e164())
            .await?
            .ok_or(ComposerError::NotFound(Entity::Contact))
    }

    /// Forgets a phone number's registration.
    pub async fn delete_contact(
        &self,
        caller: &Caller,
        contact_number: &str,
    ) -> Result<(), ComposerError> {
        let n = number(contact_number)?;
        let mut conn = self.pool.acquire().await?;
        if store::contacts::delete(&mut conn, &caller.organization_id, n.e164()).await? {
            Ok(())
        } else {
            Err(ComposerError::NotFound(Entity::Contact))
        }
    }
}
