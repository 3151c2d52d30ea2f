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
