//! How template calls fail.

use std::collections::HashMap;

use sms_core::BodyError;
use sms_core::template::TemplateError;
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{Common, body_metadata, body_reason, capability_error, pairs};

/// Why a template call failed (and a send rendering one).
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// A template that does not parse.
    #[error("invalid template: {0}")]
    Template(#[from] TemplateError),
    /// Only a template's creator (or an administrator) may change it.
    #[error("only the creator of a template, or an administrator, may change or delete it")]
    NotTemplateOwner,
    /// A name is required.
    #[error("a name is required")]
    MissingName,
    /// A rendered body far past the limit.
    #[error("{0}")]
    Body(#[from] BodyError),
}

capability_error!(TemplatesError);

impl Refusal for TemplatesError {
    fn code(&self) -> Code {
        match self {
            TemplatesError::Common(e) => e.code(),
            TemplatesError::Template(_) | TemplatesError::MissingName | TemplatesError::Body(_) => {
                Code::InvalidArgument
            }
            TemplatesError::NotTemplateOwner => Code::PermissionDenied,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            TemplatesError::Common(e) => e.reason(),
            TemplatesError::Template(TemplateError::TooLong { .. }) => "TEMPLATE_TOO_LONG",
            TemplatesError::Template(TemplateError::Unclosed { .. }) => "TEMPLATE_UNCLOSED_TAG",
            TemplatesError::Template(TemplateError::Empty { .. }) => "TEMPLATE_EMPTY_TAG",
            TemplatesError::Template(TemplateError::Malformed { .. }) => "TEMPLATE_MALFORMED_TAG",
            TemplatesError::Template(TemplateError::Unknown { .. }) => "TEMPLATE_UNKNOWN_TAG",
            TemplatesError::NotTemplateOwner => "NOT_TEMPLATE_OWNER",
            TemplatesError::MissingName => "MISSING_NAME",
            TemplatesError::Body(e) => body_reason(e),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            TemplatesError::Common(e) => e.metadata(),
            TemplatesError::Template(t) => {
                let mut v = Vec::new();
                if let TemplateError::Malformed { tag, .. } | TemplateError::Unknown { tag, .. } = t
                {
                    v.push(("tag", tag.clone()));
                }
                if let Some(at) = t.position() {
                    v.push(("line", at.line.to_string()));
                    v.push(("column", at.column.to_string()));
                }
                pairs(v)
            }
            TemplatesError::Body(e) => body_metadata(e),
            _ => HashMap::new(),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            TemplatesError::Common(e) => e.internal(),
            _ => None,
        }
    }
}
