//! How attachments fail.

use std::collections::HashMap;

use sms_core::mms::MmsError;
use sms_core::text::quote;
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{Common, capability_error};

/// Why attachments could not be taken or read.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// Attachments break an MMS rule.
    #[error("{0}")]
    Mms(#[from] MmsError),
    /// An attachment URL could not be fetched.
    #[error("cannot fetch the attachment at {}: {why}", quote(.url))]
    MediaFetch {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
    },
}

capability_error!(MediaError);

impl Refusal for MediaError {
    fn code(&self) -> Code {
        match self {
            MediaError::Common(e) => e.code(),
            MediaError::Mms(_) | MediaError::MediaFetch { .. } => Code::InvalidArgument,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            MediaError::Common(e) => e.reason(),
            MediaError::Mms(e) => e.reason(),
            MediaError::MediaFetch { .. } => "MEDIA_FETCH_FAILED",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            MediaError::Common(e) => e.metadata(),
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            MediaError::Common(e) => e.internal(),
            _ => None,
        }
    }
}
