//! The CRM's contacts by phone number: a reply from a number with no conversation yet belongs
//! to the lead and contact registered for it.

use sms_core::PhoneNumber;

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::{ContactsError, Entity};
use crate::store::{self, contacts::ContactRow};

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
        n: &PhoneNumber,
        lead: Option<String>,
        contact: Option<String>,
    ) -> Result<ContactRow, ContactsError> {
        if lead.is_none() && contact.is_none() {
            return Err(ContactsError::ContactWithoutIds);
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
        n: &PhoneNumber,
    ) -> Result<ContactRow, ContactsError> {
        let mut conn = self.pool.acquire().await?;
        store::contacts::get(&mut conn, &caller.organization_id, n.e164())
            .await?
            .ok_or(ContactsError::from(Entity::Contact))
    }

    /// Forgets a phone number's registration.
    pub async fn delete_contact(
        &self,
        caller: &Caller,
        n: &PhoneNumber,
    ) -> Result<(), ContactsError> {
        let mut conn = self.pool.acquire().await?;
        if store::contacts::delete(&mut conn, &caller.organization_id, n.e164()).await? {
            Ok(())
        } else {
            Err(ContactsError::from(Entity::Contact))
        }
    }
}
