//! The store's records: one row per job, whatever the redeliveries. Kept in SQLite (the
//! default, a file beside the store) or in PostgreSQL (`[database] url`), which store
//! instances on several hosts share. Both answer the same queries with the same results.

mod postgres;
mod sqlite;
mod sqlite_schema;

use serde::{Deserialize, Serialize};

pub use postgres::PostgresRecords;
pub use sqlite::{READERS as SQLITE_READERS, SqliteRecords};

use crate::config::DatabaseConfig;
use crate::contract::records::{Record, RecordQuery};
use crate::failure::Failure;

/// Where the records are.
#[derive(Clone)]
pub enum Records {
    Sqlite(SqliteRecords),
    Postgres(PostgresRecords),
}

/// What went wrong with the records; the kind says which database, and whether the
/// record itself is at fault.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL: no connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A record whose time is not RFC 3339 (PostgreSQL keeps times as times).
    #[error("record time {0:?} is not an RFC 3339 time")]
    BadTime(String),
    #[error("the records task crashed: {0}")]
    Crashed(String),
}

impl RecordsError {
    /// A search stopped because it ran past `[database] search_timeout_ms`.
    pub fn is_too_slow(&self) -> bool {
        match self {
            RecordsError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::OperationInterrupted
            }
            // 57014: query_canceled, which statement_timeout answers.
            RecordsError::Postgres(error) => error.code().is_some_and(|code| code.code() == "57014"),
            _ => false,
        }
    }

    /// Whether no retry can help: the database refused the record itself (its encoding,
    /// a value, a constraint). A database away, busy or locked passes.
    pub fn is_permanent(&self) -> bool {
        match self {
            RecordsError::BadTime(_) => true,
            RecordsError::Postgres(error) => error.code().is_some_and(|code| refuses_the_data(code.code())),
            RecordsError::Sqlite(error) => match error {
                rusqlite::Error::SqliteFailure(failure, _) => matches!(
                    failure.code,
                    rusqlite::ErrorCode::ConstraintViolation
                        | rusqlite::ErrorCode::TooBig
                        | rusqlite::ErrorCode::TypeMismatch
                        | rusqlite::ErrorCode::ParameterOutOfRange
                ),
                rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::NulError(_) => true,
                _ => false,
            },
            RecordsError::Pool(_) | RecordsError::Crashed(_) => false,
        }
    }
}

/// PostgreSQL's answers about the data rather than the server (SQLSTATE classes 22:
/// data exception, such as a NUL or a bad byte sequence; 23: integrity constraint
/// violation; 54: a program limit, such as a value too long to index).
fn refuses_the_data(sqlstate: &str) -> bool {
    ["22", "23", "54"].iter().any(|class| sqlstate.starts_with(class))
}

impl From<RecordsError> for Failure {
    /// A database away passes; a record that cannot be written as it is will not.
    fn from(error: RecordsError) -> Self {
        let reason = error.to_string();
        match error.is_permanent() {
            true => Failure::permanent(format!("the database refused the record: {reason}")).caused_by(error),
            false => Failure::transient(reason).caused_by(error),
        }
    }
}

impl Records {
    /// Opens the configured database (PostgreSQL when `url` is set, else the SQLite file)
    /// and brings its schema up to date.
    pub async fn open(config: &DatabaseConfig) -> Result<Self, RecordsError> {
        let search_timeout = std::time::Duration::from_millis(config.search_timeout_ms);
        if config.url.is_set() {
            let records = PostgresRecords::open(config.url.expose(), config.pool_size).await?;
            return Ok(Self::Postgres(records.stopping_searches_after(search_timeout)));
        }
        let path = config.path.clone();
        let records = blocking(move || SqliteRecords::open(&path)).await?;
        Ok(Self::Sqlite(records.stopping_searches_after(search_timeout)))
    }

    /// Which database `config` names, for messages: never the URL (it holds a password).
    pub fn describe_config(config: &DatabaseConfig) -> String {
        if config.url.is_set() {
            "PostgreSQL at [database] url".into()
        } else {
            format!("SQLite {}", config.path.display())
        }
    }

    /// Inserts the record unless the job has one already; true when it was inserted.
    pub async fn insert(&self, record: &Record) -> Result<bool, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, record) = (db.clone(), record.clone());
                blocking(move || db.insert(&record)).await
            }
            Self::Postgres(db) => db.insert(record).await,
        }
    }

    /// After records were inserted with numbers of their own (an import): later ones are
    /// numbered after the largest (SQLite's AUTOINCREMENT does so by itself).
    pub async fn continue_numbering(&self) -> Result<(), RecordsError> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(db) => db.continue_numbering().await,
        }
    }

    /// The record numbered `id` (its row).
    pub async fn by_id(&self, id: i64) -> Result<Option<Record>, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.by_id(id)).await
            }
            Self::Postgres(db) => db.by_id(id).await,
        }
    }

    pub async fn by_job(&self, job_id: &str) -> Result<Option<Record>, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, job_id) = (db.clone(), job_id.to_string());
                blocking(move || db.by_job(&job_id)).await
            }
            Self::Postgres(db) => db.by_job(job_id).await,
        }
    }

    /// One page of records matching `query`, newest first (ties broken by row, newest first).
    pub async fn query(&self, query: &RecordQuery) -> Result<RecordPage, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, query) = (db.clone(), query.clone());
                blocking(move || db.query(&query)).await
            }
            Self::Postgres(db) => db.query(query).await,
        }
    }

    /// Marks the job's record as its group's pick and unmarks the others; false when the
    /// job has no record in that group.
    pub async fn pick(&self, group_id: &str, job_id: &str) -> Result<bool, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, group_id, job_id) = (db.clone(), group_id.to_string(), job_id.to_string());
                blocking(move || db.pick(&group_id, &job_id).map(|changed| changed > 0)).await
            }
            Self::Postgres(db) => db.pick(group_id, job_id).await.map(|changed| changed > 0),
        }
    }

    /// Deletes the job's record; the record as it was, `None` when there was none.
    pub async fn delete(&self, job_id: &str) -> Result<Option<Record>, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, job_id) = (db.clone(), job_id.to_string());
                blocking(move || db.delete(&job_id)).await
            }
            Self::Postgres(db) => db.delete(job_id).await,
        }
    }

    /// Up to `limit` records, oldest first; only those created before `before`, if given.
    pub async fn oldest(&self, limit: u32, before: Option<time::OffsetDateTime>) -> Result<Vec<Record>, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let (db, before) = (db.clone(), before.map(timestamp));
                blocking(move || db.oldest(limit, before.as_deref())).await
            }
            Self::Postgres(db) => db.oldest(limit, before).await,
        }
    }

    /// The bytes of every stored picture, as their records say.
    pub async fn total_size(&self) -> Result<u64, RecordsError> {
        match self {
            Self::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.total_size()).await
            }
            Self::Postgres(db) => db.total_size().await,
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, RecordsError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| RecordsError::Crashed(e.to_string()))?.map_err(Into::into)
}

/// One page of records, as `GET /records` answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPage {
    pub records: Vec<Record>,
    pub total: u64,
    pub page: u32,
    pub limit: u32,
    pub pages: u64,
}

impl RecordPage {
    fn new(records: Vec<Record>, total: u64, query: &RecordQuery) -> Self {
        let pages = total.div_ceil(u64::from(query.limit.max(1)));
        Self { records, total, page: query.page, limit: query.limit, pages }
    }
}

/// Record times: RFC 3339 in UTC with a fixed six-digit fraction, so that comparing the
/// text orders them by time (SQLite's sort and date filters rely on it; PostgreSQL's
/// times come back in the same form).
pub fn timestamp(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    at.to_offset(time::UtcOffset::UTC).format(format).expect("every UTC time formats")
}

/// The keyword a query searches for, trimmed; `None` when there is none.
fn keyword(query: &RecordQuery) -> Option<&str> {
    query.keyword.as_deref().map(str::trim).filter(|k| !k.is_empty())
}

/// `keyword` as a LIKE pattern matching it anywhere, with `\` escaping `%`, `_` and `\`.
fn like_pattern(keyword: &str) -> String {
    format!("%{}%", keyword.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_refusing_the_data_is_final_and_the_server_being_away_or_busy_is_not() {
        for final_answer in ["22021", "22P05", "23505", "54000"] {
            assert!(refuses_the_data(final_answer), "{final_answer}");
        }
        for passing in ["08006", "40001", "40P01", "55P03", "57P01", "53300"] {
            assert!(!refuses_the_data(passing), "{passing}");
        }
    }
}
