//! `sms.v1.ContactsService`.

use sms_proto::v1::contacts_service_server::ContactsService;
use sms_proto::v1::{
    DeleteContactRequest, DeleteContactResponse, GetContactRequest, GetContactResponse,
    RegisteredContact, SetContactRequest, SetContactResponse,
};
use tonic::{Request, Response, Status};

use sms_core::PhoneNumber;

use super::{call, timestamp};
use crate::error::ContactsError;
use crate::send::command::MAX_CRM_ID;
use crate::store::contacts::ContactRow;

/// The phone number a contact call is about.
fn number(value: &str) -> Result<PhoneNumber, ContactsError> {
    crate::fields::number("contact_number", value, ContactsError::InvalidRecipient)
}

/// A CRM id: one bounded line; none when empty.
fn id(field: &'static str, value: &str) -> Result<Option<String>, ContactsError> {
    super::command::line(field, value, MAX_CRM_ID)?;
    Ok(super::command::optional(value))
}

fn contact(c: ContactRow) -> RegisteredContact {
    RegisteredContact {
        contact_number: c.contact_number,
        lead_id: c.lead_id.unwrap_or_default(),
        contact_id: c.contact_id.unwrap_or_default(),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

/// `sms.v1.ContactsService`.
#[derive(Clone)]
pub struct ContactsApi {
    auth: super::Auth,
    contacts: crate::contacts::Contacts,
}

impl ContactsApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: super::Auth, contacts: crate::contacts::Contacts) -> Self {
        ContactsApi { auth, contacts }
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn set_contact(
        &self,
        request: Request<SetContactRequest>,
    ) -> Result<Response<SetContactResponse>, Status> {
        call!(
            self,
            request,
            "SetContact",
            crate::error::ContactsError,
            |caller| {
                let r = request.get_ref();
                let set = async {
                    let n = number(&r.contact_number)?;
                    let (lead, contact) =
                        (id("lead_id", &r.lead_id)?, id("contact_id", &r.contact_id)?);
                    self.contacts.set_contact(&caller, &n, lead, contact).await
                };
                set.await.map(|c| SetContactResponse {
                    contact: Some(contact(c)),
                })
            }
        )
    }

    async fn get_contact(
        &self,
        request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        call!(
            self,
            request,
            "GetContact",
            crate::error::ContactsError,
            |caller| {
                let get = async {
                    let n = number(&request.get_ref().contact_number)?;
                    self.contacts.get_contact(&caller, &n).await
                };
                get.await.map(|c| GetContactResponse {
                    contact: Some(contact(c)),
                })
            }
        )
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        call!(
            self,
            request,
            "DeleteContact",
            crate::error::ContactsError,
            |caller| {
                let delete = async {
                    let n = number(&request.get_ref().contact_number)?;
                    self.contacts.delete_contact(&caller, &n).await
                };
                delete.await.map(|()| DeleteContactResponse {})
            }
        )
    }
}
