//! The store's records in SQLite: one row per job, whatever the redeliveries.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

/// One stored picture, with the original service's fields plus the job id.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub job_id: String,
    pub original_prompt: String,
    pub english_prompt: String,
    pub model: String,
    pub local_path: String,
    pub r2_url: Option<String>,
    pub file_size: u64,
    pub width: u32,
    pub height: u32,
    pub format: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// Schema changes, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE image_records (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id          TEXT NOT NULL UNIQUE,
        original_prompt TEXT NOT NULL,
        english_prompt  TEXT NOT NULL,
        model           TEXT NOT NULL,
        local_path      TEXT NOT NULL,
        r2_url          TEXT,
        file_size       INTEGER NOT NULL,
        width           INTEGER NOT NULL,
        height          INTEGER NOT NULL,
        format          TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX image_records_created_at ON image_records (created_at);
"#];

#[derive(Clone)]
pub struct Records {
    connection: Arc<Mutex<Connection>>,
}

impl Records {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut connection = Connection::open(path)?;
        // WAL: readers do not block the writer; FULL: a committed record survives power loss.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut connection)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Inserts the record unless the job has one already; true when it was inserted.
    pub fn insert(&self, record: &Record) -> rusqlite::Result<bool> {
        let connection = self.connection.lock().expect("no panics while holding the lock");
        let inserted = connection.execute(
            "INSERT INTO image_records (job_id, original_prompt, english_prompt, model, local_path, r2_url,
                 file_size, width, height, format, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (job_id) DO NOTHING",
            params![
                record.job_id,
                record.original_prompt,
                record.english_prompt,
                record.model,
                record.local_path,
                record.r2_url,
                record.file_size,
                record.width,
                record.height,
                record.format,
                record.created_at,
                record.updated_at,
            ],
        )?;
        Ok(inserted == 1)
    }

    pub fn by_job(&self, job_id: &str) -> rusqlite::Result<Option<Record>> {
        let connection = self.connection.lock().expect("no panics while holding the lock");
        connection
            .query_row(
                "SELECT job_id, original_prompt, english_prompt, model, local_path, r2_url, file_size,
                        width, height, format, created_at, updated_at
                 FROM image_records WHERE job_id = ?1",
                [job_id],
                |row| {
                    Ok(Record {
                        job_id: row.get(0)?,
                        original_prompt: row.get(1)?,
                        english_prompt: row.get(2)?,
                        model: row.get(3)?,
                        local_path: row.get(4)?,
                        r2_url: row.get(5)?,
                        file_size: row.get(6)?,
                        width: row.get(7)?,
                        height: row.get(8)?,
                        format: row.get(9)?,
                        created_at: row.get(10)?,
                        updated_at: row.get(11)?,
                    })
                },
            )
            .optional()
    }
}

fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job_id: &str) -> Record {
        Record {
            job_id: job_id.into(),
            original_prompt: "一只猫".into(),
            english_prompt: "a cat".into(),
            model: "huiying/placeholder".into(),
            local_path: "images/x.jpg".into(),
            r2_url: None,
            file_size: 10,
            width: 512,
            height: 512,
            format: "jpeg".into(),
            created_at: "2026-11-29T08:00:00Z".into(),
            updated_at: "2026-11-29T08:00:00Z".into(),
        }
    }

    #[test]
    fn a_job_gets_one_record_however_often_it_is_inserted() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(&dir.path().join("db.sqlite")).unwrap();
        assert!(records.insert(&record("job-1")).unwrap());
        assert!(!records.insert(&record("job-1")).unwrap());
        assert_eq!(records.by_job("job-1").unwrap(), Some(record("job-1")));
        // Reopening applies no migration twice.
        let reopened = Records::open(&dir.path().join("db.sqlite")).unwrap();
        assert!(reopened.by_job("job-1").unwrap().is_some());
    }
}
