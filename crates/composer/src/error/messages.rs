//! How reading messages, conversations, inboxes and reports fails.

use std::collections::HashMap;

use sms_core::PhoneError;
use sms_core::text::quote;
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{Common, capability_error};

/// Why a read of messages failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// A contact's number (a filter, a conversation) is not a valid number.
    #[error("invalid recipient: {0}")]
    InvalidRecipient(PhoneError),
    /// One of our numbers (a filter, a conversation) is not a valid number.
    #[error("invalid number: {0}")]
    InvalidNumber(PhoneError),
    /// A month that is not `YYYY-MM`, or a range that runs backwards.
    #[error("{} is not a month (YYYY-MM), or the range runs backwards", quote(.0))]
    InvalidMonth(String),
}

capability_error!(MessagesError);

impl Refusal for MessagesError {
    fn code(&self) -> Code {
        match self {
            MessagesError::Common(e) => e.code(),
            MessagesError::InvalidRecipient(_)
            | MessagesError::InvalidNumber(_)
            | MessagesError::InvalidMonth(_) => Code::InvalidArgument,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            MessagesError::Common(e) => e.reason(),
            MessagesError::InvalidRecipient(_) => "INVALID_RECIPIENT",
            MessagesError::InvalidNumber(_) => "INVALID_NUMBER",
            MessagesError::InvalidMonth(_) => "INVALID_MONTH",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            MessagesError::Common(e) => e.metadata(),
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            MessagesError::Common(e) => e.internal(),
            _ => None,
        }
    }
}
