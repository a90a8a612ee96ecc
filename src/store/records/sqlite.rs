//! Records in a SQLite file: the default, embedded backend. Its calls block (run them
//! off the async threads, as [`super::Records`] does).
//!
//! One connection writes; searches and lookups each take one of [`READERS`] read-only
//! connections. In WAL mode a reader never blocks the writer, so no burst of searches
//! holds up storing a picture, and a search is stopped after its deadline (`[database]
//! search_timeout_ms`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::Duration as Days;

use super::RecordPage;
use super::sqlite_schema::MIGRATIONS;
use crate::contract::cost::{Cost, CostSource};
use crate::contract::events::{JobKind, Labels};
use crate::contract::records::{Record, RecordQuery};

/// Read-only connections: as many searches run at once, the rest wait for one.
pub const READERS: usize = 4;

#[derive(Clone)]
pub struct SqliteRecords {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
    /// The longest a search may run before SQLite stops it (the caller gets an error).
    deadline: Duration,
}

impl SqliteRecords {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut connection = Connection::open(path)?;
        // WAL: readers do not block the writer; FULL: a committed record survives power loss.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut connection)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                reader.busy_timeout(Duration::from_secs(5))?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            writer: Arc::new(Mutex::new(connection)),
            readers: readers.into(),
            next_reader: Arc::default(),
            deadline: Duration::from_secs(5),
        })
    }

    /// The same records, searches stopped after `deadline`.
    pub fn stopping_searches_after(self, deadline: Duration) -> Self {
        Self { deadline, ..self }
    }

    /// Runs `read` on a free reader (else waits for the next in turn), stopped after the
    /// deadline.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let free = self.readers.iter().find_map(|reader| reader.try_lock().ok());
        let connection = match free {
            Some(connection) => connection,
            None => {
                let turn = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
                self.readers[turn].lock().expect("no panics while holding the lock")
            }
        };
        let (started, deadline) = (Instant::now(), self.deadline);
        connection.progress_handler(100, Some(move || started.elapsed() > deadline));
        let result = read(&connection);
        connection.progress_handler(0, None::<fn() -> bool>);
        result
    }

    /// Inserts the record unless the job has one already; true when it was inserted. Its
    /// number is `record.id` when set (an import keeping the original's), else the next;
    /// AUTOINCREMENT numbers later records after the largest ever given.
    pub fn insert(&self, record: &Record) -> rusqlite::Result<bool> {
        let connection = self.writer.lock().expect("no panics while holding the lock");
        let inserted = connection.execute(
            "INSERT INTO image_records (job_id, original_prompt, english_prompt, model, local_path, r2_url,
                 file_size, width, height, format, created_at, updated_at, r2_error, user,
                 implicit_label, explicit_label, kind, inputs, owner, cost_usd, cost_source, usage, fallback, group_id,
                 picked, id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
                 ?23, ?24, ?25, NULLIF(?26, 0))
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
                record.r2_error,
                record.user,
                record.labels.implicit,
                record.labels.explicit,
                record.kind.name(),
                serde_json::to_string(&record.inputs).expect("strings serialize"),
                record.owner,
                record.cost.cost_usd,
                record.cost.cost_source.name(),
                record.cost.usage.as_ref().map(|usage| usage.to_string()),
                record.fallback.as_ref().map(|fallback| serde_json::to_string(fallback).expect("strings serialize")),
                record.group_id,
                record.picked,
                record.id,
            ],
        )?;
        Ok(inserted == 1)
    }

    /// Marks the job's record as its group's pick and unmarks the others of the group;
    /// how many records changed (0: the job has no record in that group).
    pub fn pick(&self, group_id: &str, job_id: &str) -> rusqlite::Result<usize> {
        let connection = self.writer.lock().expect("no panics while holding the lock");
        let chosen: bool = connection
            .query_row(
                "SELECT 1 FROM image_records WHERE group_id = ?1 AND job_id = ?2",
                [group_id, job_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !chosen {
            return Ok(0);
        }
        connection.execute("UPDATE image_records SET picked = (job_id = ?2) WHERE group_id = ?1", [group_id, job_id])
    }

    /// The record numbered `id` (its row).
    pub fn by_id(&self, id: i64) -> rusqlite::Result<Option<Record>> {
        self.read(|connection| {
            connection.query_row(&format!("SELECT {COLUMNS} FROM image_records WHERE id = ?1"), [id], record).optional()
        })
    }

    /// The job's record. Asked by the store before it writes, so on the writer: a reader
    /// taken by searches must not hold up storing.
    pub fn by_job(&self, job_id: &str) -> rusqlite::Result<Option<Record>> {
        let connection = self.writer.lock().expect("no panics while holding the lock");
        connection
            .query_row(&format!("SELECT {COLUMNS} FROM image_records WHERE job_id = ?1"), [job_id], record)
            .optional()
    }

    /// One page of records matching `query`, newest first (ties broken by row, newest first).
    pub fn query(&self, query: &RecordQuery) -> rusqlite::Result<RecordPage> {
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(keyword) = super::keyword(query) {
            if keyword.chars().count() >= 3 {
                conditions.push("id IN (SELECT rowid FROM image_records_fts WHERE image_records_fts MATCH ?)");
                values.push(format!("\"{}\"", keyword.replace('"', "\"\"")).into());
            } else {
                conditions.push("(original_prompt LIKE ? ESCAPE '\\' OR english_prompt LIKE ? ESCAPE '\\')");
                let pattern = super::like_pattern(keyword);
                values.push(pattern.clone().into());
                values.push(pattern.into());
            }
        }
        if let Some(owner) = &query.owner {
            conditions.push("owner = ?");
            values.push(owner.clone().into());
        }
        if let Some(model) = &query.model {
            conditions.push("model = ?");
            values.push(model.clone().into());
        }
        if let Some(implicit) = query.implicit_label {
            conditions.push("implicit_label = ?");
            values.push(i64::from(implicit).into());
        }
        if let Some(explicit) = query.explicit_label {
            conditions.push("explicit_label = ?");
            values.push(i64::from(explicit).into());
        }
        if let Some(kind) = query.kind {
            conditions.push("kind = ?");
            values.push(kind.name().to_string().into());
        }
        if query.edits_only {
            conditions.push("kind <> 'generate'");
        }
        // Dates are UTC days; created_at is RFC 3339 in UTC, so text comparison orders it.
        if let Some(from) = query.date_from {
            conditions.push("created_at >= ?");
            values.push(format!("{from}T00:00:00").into());
        }
        if let Some(to) = query.date_to {
            conditions.push("created_at < ?");
            values.push(format!("{}T00:00:00", to + Days::days(1)).into());
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        self.read(|connection| {
            let total: u64 = connection.query_row(
                &format!("SELECT COUNT(*) FROM image_records {filter}"),
                rusqlite::params_from_iter(values.iter()),
                |row| row.get(0),
            )?;
            let offset = u64::from(query.page.saturating_sub(1)) * u64::from(query.limit) + u64::from(query.skip);
            let mut page_values = values.clone();
            page_values.push((query.limit.saturating_sub(query.skip) as i64).into());
            page_values.push((offset as i64).into());
            let mut statement = connection.prepare(&format!(
                "SELECT {COLUMNS} FROM image_records {filter} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
            ))?;
            let records = statement
                .query_map(rusqlite::params_from_iter(page_values.iter()), record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(RecordPage::new(records, total, query))
        })
    }

    /// Deletes the job's record (its full-text entry goes with it, by trigger); the
    /// record as it was, or `None` when there was none.
    pub fn delete(&self, job_id: &str) -> rusqlite::Result<Option<Record>> {
        let connection = self.writer.lock().expect("no panics while holding the lock");
        connection
            .query_row(&format!("DELETE FROM image_records WHERE job_id = ?1 RETURNING {COLUMNS}"), [job_id], record)
            .optional()
    }

    /// Up to `limit` records, oldest first, created before `before` (RFC 3339) when given.
    pub fn oldest(&self, limit: u32, before: Option<&str>) -> rusqlite::Result<Vec<Record>> {
        self.read(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {COLUMNS} FROM image_records WHERE (?1 IS NULL OR created_at < ?1)
                 ORDER BY created_at, id LIMIT ?2"
            ))?;
            statement.query_map(params![before, limit], record)?.collect()
        })
    }

    /// The bytes of every stored picture, as their records say.
    pub fn total_size(&self) -> rusqlite::Result<u64> {
        self.read(|connection| {
            connection.query_row("SELECT COALESCE(SUM(file_size), 0) FROM image_records", [], |row| row.get(0))
        })
    }
}

const COLUMNS: &str = "id, job_id, original_prompt, english_prompt, model, local_path, r2_url, file_size, \
                       width, height, format, created_at, updated_at, r2_error, user, implicit_label, explicit_label, kind, inputs, \
                       owner, cost_usd, cost_source, usage, fallback, group_id, picked";

fn record(row: &Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: row.get(0)?,
        job_id: row.get(1)?,
        original_prompt: row.get(2)?,
        english_prompt: row.get(3)?,
        model: row.get(4)?,
        local_path: row.get(5)?,
        r2_url: row.get(6)?,
        file_size: row.get(7)?,
        width: row.get(8)?,
        height: row.get(9)?,
        format: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        r2_error: row.get(13)?,
        user: row.get(14)?,
        labels: Labels { implicit: row.get(15)?, explicit: row.get(16)? },
        kind: JobKind::parse(&row.get::<_, String>(17)?).unwrap_or_default(),
        inputs: serde_json::from_str(&row.get::<_, String>(18)?).unwrap_or_default(),
        owner: row.get(19)?,
        cost: Cost {
            cost_usd: row.get(20)?,
            cost_source: CostSource::parse(&row.get::<_, String>(21)?),
            usage: row.get::<_, Option<String>>(22)?.and_then(|usage| serde_json::from_str(&usage).ok()),
        },
        fallback: row.get::<_, Option<String>>(23)?.and_then(|fallback| serde_json::from_str(&fallback).ok()),
        group_id: row.get(24)?,
        picked: row.get(25)?,
    })
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

    fn sample(job_id: &str) -> Record {
        Record {
            owner: None,
            cost: Default::default(),
            id: 0,
            job_id: job_id.into(),
            original_prompt: "一只猫".into(),
            english_prompt: "a cat".into(),
            model: "huiying/placeholder".into(),
            local_path: "images/x.jpg".into(),
            r2_url: None,
            r2_error: None,
            file_size: 10,
            width: 512,
            height: 512,
            format: "jpeg".into(),
            created_at: "2026-11-29T08:00:00Z".into(),
            updated_at: "2026-11-29T08:00:00Z".into(),
            user: None,
            labels: Labels { implicit: true, explicit: false },
            kind: JobKind::Style,
            inputs: vec!["upload:abc".into()],
            fallback: None,
            group_id: None,
            picked: false,
        }
    }

    #[test]
    fn a_job_gets_one_record_however_often_it_is_inserted() {
        let dir = tempfile::tempdir().unwrap();
        let records = SqliteRecords::open(&dir.path().join("db.sqlite")).unwrap();
        assert!(records.insert(&sample("job-1")).unwrap());
        assert!(!records.insert(&sample("job-1")).unwrap());
        assert_eq!(records.by_job("job-1").unwrap(), Some(Record { id: 1, ..sample("job-1") }));
        // Reopening applies no migration twice.
        let reopened = SqliteRecords::open(&dir.path().join("db.sqlite")).unwrap();
        assert!(reopened.by_job("job-1").unwrap().is_some());
    }

    #[test]
    fn every_reader_busy_with_searches_holds_up_no_write() {
        let dir = tempfile::tempdir().unwrap();
        let records = SqliteRecords::open(&dir.path().join("db.sqlite")).unwrap();
        // Every reader taken (searches running) ...
        let _taken: Vec<_> = records.readers.iter().map(|reader| reader.lock().unwrap()).collect();
        // ... and a picture's record is still looked up and written at once.
        assert_eq!(records.by_job("job-1").unwrap(), None);
        assert!(records.insert(&sample("job-1")).unwrap());
    }

    #[test]
    fn a_search_running_past_its_deadline_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let records = SqliteRecords::open(&dir.path().join("db.sqlite"))
            .unwrap()
            .stopping_searches_after(Duration::from_millis(50));
        let endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n";
        let stopped = records.read(|connection| connection.query_row(endless, [], |row| row.get::<_, i64>(0)));
        let error = super::super::RecordsError::Sqlite(stopped.unwrap_err());
        assert!(error.is_too_slow(), "{error}");
        // The reader is free again, and answers.
        assert_eq!(records.by_id(1).unwrap(), None);
    }
}
