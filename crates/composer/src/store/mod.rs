//! The composer's SQL: one module per aggregate, small functions over its own schema, rows in
//! typed columns (sms-core's `Status`, `Direction`, `NumberKind`, `Encoding`; the composer's
//! own [`MessageKind`] and [`MediaState`]).

pub mod contacts;
pub mod history;
pub mod inbound;
pub mod media;
pub mod messages;
pub mod settings;
pub mod templates;
pub mod usage;

pub use history::{HistoryRow, NewHistory};
pub use media::{MediaRow, MediaState};
pub use messages::{ListFilter, MessageRow, NewMessage};
pub use sms_numbers::store::{NumberRow, NumberSource, groups, numbers};
pub use templates::TemplateRow;
pub use usage::{ErroredLeadRow, MessageKind, UsageRow};

/// A database failure as the bus should treat it (see [`sms_runtime::db::consumer_error`]):
/// the data refused is dead-lettered at once, the database down is waited for.
pub(crate) fn db_failure(e: sqlx::Error) -> sms_bus::HandleError {
    sms_runtime::db::consumer_error(e, 3)
}
