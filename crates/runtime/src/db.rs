//! PostgreSQL: one pool per service, on its own schema, with its own embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool};

/// Database set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse.
    #[error("SMS_DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(sqlx::Error),
    /// The server could not be reached or refused us.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    /// Creating the database or schema failed.
    #[error("cannot create {what}: {source}")]
    Create {
        /// What was being created.
        what: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// A schema or database name we will not put into SQL.
    #[error("{0:?} is not a plain identifier (lowercase letters, digits, '_')")]
    Identifier(String),
    /// A migration failed.
    #[error("migrating schema {schema} failed: {source}")]
    Migrate {
        /// The schema.
        schema: String,
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
}

/// Connects to `url`, creating the database if it does not exist, creates `schema`, points
/// the pool's `search_path` at it and runs `migrator` there (each service keeps its own
/// migration history in its own schema), and the [outbox](crate::outbox)'s migrations too.
pub async fn connect(
    url: &str,
    schema: &str,
    max_connections: u32,
    migrator: &Migrator,
) -> Result<PgPool, DbError> {
    let schema = identifier(schema)?;
    let options = PgConnectOptions::from_str(url).map_err(DbError::Url)?;
    create_database_if_missing(&options).await?;
    let options = options.options([("search_path", schema)]);
    let mut conn = options.connect().await.map_err(DbError::Connect)?;
    // Safe: `identifier` allows only lowercase letters, digits and '_'.
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(&mut conn)
    .await
    .map_err(|source| DbError::Create {
        what: format!("schema {schema}"),
        source,
    })?;
    conn.close().await.map_err(DbError::Connect)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    for migrator in [migrator, &crate::outbox::migrator()] {
        migrator
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate {
                schema: schema.to_owned(),
                source,
            })?;
    }
    Ok(pool)
}

/// Connects to `url` with the pool's `search_path` at `schema`, which another service owns
/// and migrates: nothing is created or migrated (a process that works on another service's
/// tables, like the event feed on the composer's, waits for them with [`wait_for_tables`]).
pub async fn attach(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let schema = identifier(schema)?;
    let options = PgConnectOptions::from_str(url)
        .map_err(DbError::Url)?
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Waits until every table of `tables` (`schema.table`) exists, asking once a second and
/// saying once at INFO what it waits for; false when `shutdown` came first.
pub async fn wait_for_tables(
    pool: &PgPool,
    tables: &[&str],
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    let mut said = false;
    loop {
        let missing: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT t FROM UNNEST($1::text[]) AS t WHERE to_regclass(t) IS NULL",
        )
        .bind(tables)
        .fetch_all(pool)
        .await;
        match missing {
            Ok(missing) if missing.is_empty() => return true,
            Ok(missing) if !said => {
                tracing::info!(?missing, "waiting for the tables' owner to create them");
                said = true;
            }
            Ok(_) => {}
            Err(e) if !said => {
                tracing::info!(error = %e, "waiting for the database");
                said = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), DbError> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if options.connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(DbError::Connect)?;
    if !exists {
        let quoted = identifier(&name)?;
        // Safe: `identifier` allows only lowercase letters, digits and '_'.
        let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\"")))
            .execute(&mut admin)
            .await;
        // Services starting together race to create it; a loser sees 42P04 (duplicate
        // database) or 23505 (unique violation in pg_database), depending on timing.
        if let Err(e) = created {
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !duplicate {
                return Err(DbError::Create {
                    what: format!("database {name}"),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Accepts only plain lowercase identifiers, which need no quoting rules to be safe in SQL.
fn identifier(name: &str) -> Result<&str, DbError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(DbError::Identifier(name.to_owned()))
    }
}

/// A unique-constraint violation on `constraint` as the refusal `error` says, any other
/// database error as it is (`E::from`).
pub fn on_constraint<E: From<sqlx::Error>>(
    e: sqlx::Error,
    constraint: &str,
    error: impl FnOnce() -> E,
) -> E {
    let matches = e
        .as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == constraint);
    if matches { error() } else { E::from(e) }
}

/// Whether `e` says the database cannot be reached, is restarting or out of connections
/// (rather than that a statement failed): I/O, TLS, a broken protocol, the pool timing out,
/// SQLSTATE classes 08, 53 and 57P0x.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    ) || e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57P0"))
}

/// How a bus consumer treats a database error met on delivery `attempt` of an event:
///
/// * the database cannot be reached, is restarting or out of connections (I/O, TLS, a broken
///   protocol, the pool timing out, SQLSTATE classes 08, 53 and 57P0x):
///   [`HandleError::Unavailable`], redelivered until it is back, never dead-lettered (a
///   failover must not turn events into dead letters);
/// * the data itself refused (classes 22 and 23): [`HandleError::Permanent`], dead-lettered at
///   once, since it fails the same way every time;
/// * anything else (a serialization failure, a deadlock): [`HandleError::Retry`], counted.
///
/// The delay is jittered and grows with the attempt, from 200 ms to 5 s.
pub fn consumer_error(e: sqlx::Error, attempt: i64) -> sms_bus::HandleError {
    use sms_bus::HandleError;
    let backoff = crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let delay = backoff.delay(u32::try_from(attempt).unwrap_or(u32::MAX));
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    if is_unavailable(&e) {
        return HandleError::Unavailable {
            reason: format!("database: {e}"),
            delay,
        };
    }
    if code
        .as_deref()
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
    {
        return HandleError::Permanent(format!("the database refused the data: {e}"));
    }
    // A row this code cannot read reads no better the next time.
    if matches!(e, sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }) {
        return HandleError::Permanent(format!("a stored row cannot be read: {e}"));
    }
    HandleError::Retry {
        reason: format!("database: {e}"),
        delay,
    }
}

#[cfg(test)]
mod consumer_error_tests {
    use sms_bus::HandleError;

    use super::*;

    #[test]
    fn an_unreachable_database_is_waited_for_never_dead_lettered() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(matches!(
            consumer_error(io, 50),
            HandleError::Unavailable { delay, .. } if delay <= Duration::from_secs(5)
        ));
        assert!(matches!(
            consumer_error(sqlx::Error::PoolTimedOut, 1),
            HandleError::Unavailable { .. }
        ));
        assert!(matches!(
            consumer_error(sqlx::Error::RowNotFound, 1),
            HandleError::Retry { .. }
        ));
    }

    #[test]
    fn a_row_that_cannot_be_read_is_not_tried_again() {
        assert!(matches!(
            consumer_error(sqlx::Error::Decode("send in an unknown state \"paused\"".into()), 1),
            HandleError::Permanent(reason) if reason.contains("paused")
        ));
    }
}
