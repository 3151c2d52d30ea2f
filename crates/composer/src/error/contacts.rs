//! How contact calls fail.

use std::collections::HashMap;

use sms_core::PhoneError;
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{Common, capability_error};

/// Why a contact call failed.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// The contact's number is not a valid number.
    #[error("invalid recipient: {0}")]
    InvalidRecipient(PhoneError),
    /// A contact registration with neither a lead nor a contact id.
    #[error("a contact needs a lead_id or a contact_id")]
    ContactWithoutIds,
}

capability_error!(ContactsError);

impl Refusal for ContactsError {
    fn code(&self) -> Code {
        match self {
            ContactsError::Common(e) => e.code(),
            ContactsError::InvalidRecipient(_) | ContactsError::ContactWithoutIds => {
                Code::InvalidArgument
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ContactsError::Common(e) => e.reason(),
            ContactsError::InvalidRecipient(_) => "INVALID_RECIPIENT",
            ContactsError::ContactWithoutIds => "CONTACT_WITHOUT_IDS",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            ContactsError::Common(e) => e.metadata(),
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            ContactsError::Common(e) => e.internal(),
            _ => None,
        }
    }
}
