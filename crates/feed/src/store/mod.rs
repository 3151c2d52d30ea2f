//! The feed's SQL, one module per aggregate. The tables are in the composer's schema: the
//! composer appends to the feed in the transactions of the changes it announces.

pub mod feed;
pub mod webhooks;

/// A database failure while handling a bus event: a short outage is retried in place.
pub(crate) fn db_failure(e: sqlx::Error) -> sms_bus::HandleError {
    sms_runtime::db::consumer_error(e, 3)
}
