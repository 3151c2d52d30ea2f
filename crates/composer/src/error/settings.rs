//! How settings calls fail.

use std::collections::HashMap;

use sms_core::quiet::QuietError;
use sms_runtime::rpc::Refusal;
use tonic::Code;

use super::{Common, capability_error, pairs};

/// Why a settings call failed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Refused as any call is.
    #[error(transparent)]
    Common(#[from] Common),
    /// Quiet hours that cannot be used.
    #[error("invalid quiet hours: {0}")]
    QuietHours(QuietError),
    /// A daily cap out of range.
    #[error("daily_segment_cap must be 0 (no cap) to {max}, not {given}")]
    InvalidDailyCap {
        /// What was asked for.
        given: i64,
        /// The largest cap.
        max: i64,
    },
}

capability_error!(SettingsError);

impl Refusal for SettingsError {
    fn code(&self) -> Code {
        match self {
            SettingsError::Common(e) => e.code(),
            SettingsError::QuietHours(_) | SettingsError::InvalidDailyCap { .. } => {
                Code::InvalidArgument
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            SettingsError::Common(e) => e.reason(),
            SettingsError::QuietHours(QuietError::Time { .. }) => "INVALID_QUIET_HOURS_TIME",
            SettingsError::QuietHours(QuietError::Backwards { .. }) => "QUIET_HOURS_BACKWARDS",
            SettingsError::QuietHours(QuietError::Day(_)) => "INVALID_QUIET_HOURS_DAY",
            SettingsError::InvalidDailyCap { .. } => "INVALID_DAILY_CAP",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            SettingsError::Common(e) => e.metadata(),
            SettingsError::QuietHours(e) => pairs(vec![(
                "field",
                match e {
                    QuietError::Time { field, .. } => format!("quiet_hours.{field}"),
                    QuietError::Backwards { .. } => "quiet_hours.end".to_owned(),
                    QuietError::Day(_) => "quiet_hours.days".to_owned(),
                },
            )]),
            SettingsError::InvalidDailyCap { max, .. } => pairs(vec![
                ("field", "daily_segment_cap".to_owned()),
                ("min", "0".to_owned()),
                ("max", max.to_string()),
            ]),
        }
    }

    fn internal(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            SettingsError::Common(e) => e.internal(),
            _ => None,
        }
    }
}
