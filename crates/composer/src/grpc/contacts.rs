//! `sms.v1.ContactsService`.

use sms_proto::v1::contacts_service_server::ContactsService;
use sms_proto::v1::{
    DeleteContactRequest, DeleteContactResponse, GetContactRequest, GetContactResponse,
    RegisteredContact, SetContactRequest, SetContactResponse,
};
use tonic::{Request, Response, Status};

use super::{call, timestamp};
use crate::store::contacts::ContactRow;

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
        call!(self, request, "SetContact", |caller| {
            let r = request.get_ref();
            self.contacts
                .set_contact(&caller, &r.contact_number, &r.lead_id, &r.contact_id)
                .await
                .map(|c| SetContactResponse {
                    contact: Some(contact(c)),
                })
        })
    }

    async fn get_contact(
        &self,
        request: Request<GetContactRequest>,
    ) -> Result<Response<GetContactResponse>, Status> {
        call!(self, request, "GetContact", |caller| {
            self.contacts
                .get_contact(&caller, &request.get_ref().contact_number)
                .await
                .map(|c| GetContactResponse {
                    contact: Some(contact(c)),
                })
        })
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        call!(self, request, "DeleteContact", |caller| {
            self.contacts
                .delete_contact(&caller, &request.get_ref().contact_number)
                .await
                .map(|()| DeleteContactResponse {})
        })
    }
}
