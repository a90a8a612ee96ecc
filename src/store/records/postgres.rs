//! Records in PostgreSQL, shared by store instances on several hosts. Keyword search
//! uses `pg_trgm` GIN indexes, which serve `ILIKE '%…%'` for keywords of three or more
//! characters in any script (Chinese included, in a UTF-8 database); shorter keywords
//! give the same answers by scanning, as SQLite's do.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use time::{OffsetDateTime, Time};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::{RecordPage, RecordsError};
use crate::contract::cost::{Cost, CostSource};
use crate::contract::events::{JobKind, Labels};
use crate::contract::records::{Record, RecordQuery};
use crate::contract::services::Service;

/// Schema changes, applied in order; `huiying_schema_migrations` lists those applied.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE TABLE image_records (
        id              BIGSERIAL PRIMARY KEY,
        job_id          TEXT NOT NULL UNIQUE,
        original_prompt TEXT NOT NULL,
        english_prompt  TEXT NOT NULL,
        model           TEXT NOT NULL,
        local_path      TEXT NOT NULL,
        r2_url          TEXT,
        r2_error        TEXT,
        file_size       BIGINT NOT NULL,
        width           INTEGER NOT NULL,
        height          INTEGER NOT NULL,
        format          TEXT NOT NULL,
        created_at      TIMESTAMPTZ NOT NULL,
        updated_at      TIMESTAMPTZ NOT NULL,
        "user"          TEXT
    );
    CREATE INDEX image_records_created_at ON image_records (created_at DESC, id DESC);
    CREATE INDEX image_records_model_created ON image_records (model, created_at DESC);
    CREATE INDEX image_records_original_trgm ON image_records USING gin (original_prompt gin_trgm_ops);
    CREATE INDEX image_records_english_trgm ON image_records USING gin (english_prompt gin_trgm_ops);
"#,
    // Which AI-content labels the file carries; pictures stored before labels carry none.
    r#"
    ALTER TABLE image_records ADD COLUMN implicit_label BOOLEAN NOT NULL DEFAULT false,
                              ADD COLUMN explicit_label BOOLEAN NOT NULL DEFAULT false;
"#,
    // Edits: what the job made, and its input pictures (what the client named).
    r#"
    ALTER TABLE image_records ADD COLUMN kind TEXT NOT NULL DEFAULT 'generate',
                              ADD COLUMN inputs JSONB NOT NULL DEFAULT '[]';
    CREATE INDEX image_records_kind_created ON image_records (kind, created_at DESC);
"#,
    // Keys own their work: the API key's name that queued the job (none: no key's).
    r#"
    ALTER TABLE image_records ADD COLUMN owner TEXT;
    CREATE INDEX image_records_owner_created ON image_records (owner, created_at DESC);
"#,
    // What each picture cost (null: unknown), where that came from, and the provider's usage.
    r#"
    ALTER TABLE image_records ADD COLUMN cost_usd DOUBLE PRECISION,
                              ADD COLUMN cost_source TEXT NOT NULL DEFAULT 'unknown',
                              ADD COLUMN usage JSONB;
"#,
    // Which model was asked for when a fallback drew the picture, and why.
    r#"ALTER TABLE image_records ADD COLUMN fallback JSONB;"#,
    // The group a job belongs to, and whether it is the group's pick.
    r#"
    ALTER TABLE image_records ADD COLUMN group_id TEXT,
                              ADD COLUMN picked BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX image_records_group ON image_records (group_id) WHERE group_id IS NOT NULL;
"#,
];

/// Any number the store's instances agree on: they take this lock while migrating, so
/// that two starting at once do not apply the same change twice.
const MIGRATION_LOCK: i64 = 0x0068_7569_7969_6e67; // "huiying" in ASCII

const COLUMNS: &str = r#"id, job_id, original_prompt, english_prompt, model, local_path, r2_url, file_size,
                         width, height, format, created_at, updated_at, r2_error, "user",
                         implicit_label, explicit_label, kind, inputs, owner, cost_usd, cost_source, usage, fallback,
                         group_id, picked"#;

#[derive(Clone)]
pub struct PostgresRecords {
    pool: Pool,
    /// The longest a search may run (statement_timeout, for the search's transaction).
    search_timeout: Duration,
}

impl PostgresRecords {
    /// Connects (a pool of `pool_size`) and brings the schema up to date.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self, RecordsError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name(Service::Store.program());
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| RecordsError::Crashed(e.to_string()))?;
        let records = Self { pool, search_timeout: Duration::from_secs(5) };
        records.migrate().await?;
        Ok(records)
    }

    /// The same records, searches stopped after `timeout`.
    pub fn stopping_searches_after(self, timeout: Duration) -> Self {
        Self { search_timeout: timeout, ..self }
    }

    async fn migrate(&self) -> Result<(), RecordsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS huiying_schema_migrations (
                     version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
        let applied: i32 =
            transaction.query_one("SELECT COALESCE(MAX(version), 0) FROM huiying_schema_migrations", &[]).await?.get(0);
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            transaction.batch_execute(migration).await?;
            let version = index as i32 + 1;
            transaction.execute("INSERT INTO huiying_schema_migrations (version) VALUES ($1)", &[&version]).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub async fn insert(&self, record: &Record) -> Result<bool, RecordsError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                r#"INSERT INTO image_records (job_id, original_prompt, english_prompt, model, local_path, r2_url,
                       file_size, width, height, format, created_at, updated_at, r2_error, "user",
                       implicit_label, explicit_label, kind, inputs, owner, cost_usd, cost_source, usage, fallback, group_id,
                       picked, id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                           $20, $21, $22, $23, $24, $25,
                           COALESCE(NULLIF($26::bigint, 0), nextval(pg_get_serial_sequence('image_records', 'id'))))
                   ON CONFLICT (job_id) DO NOTHING"#,
            )
            .await?;
        let inserted = client
            .execute(
                &statement,
                &[
                    &record.job_id,
                    &record.original_prompt,
                    &record.english_prompt,
                    &record.model,
                    &record.local_path,
                    &record.r2_url,
                    &(record.file_size as i64),
                    &(record.width as i32),
                    &(record.height as i32),
                    &record.format,
                    &parse_time(&record.created_at)?,
                    &parse_time(&record.updated_at)?,
                    &record.r2_error,
                    &record.user,
                    &record.labels.implicit,
                    &record.labels.explicit,
                    &record.kind.name(),
                    &serde_json::to_value(&record.inputs).expect("strings serialize"),
                    &record.owner,
                    &record.cost.cost_usd,
                    &record.cost.cost_source.name(),
                    &record.cost.usage,
                    &record
                        .fallback
                        .as_ref()
                        .map(|fallback| serde_json::to_value(fallback).expect("strings serialize")),
                    &record.group_id,
                    &record.picked,
                    &record.id,
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Numbers later records after the largest there (records inserted with numbers of
    /// their own do not move the sequence).
    pub async fn continue_numbering(&self) -> Result<(), RecordsError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "SELECT setval(pg_get_serial_sequence('image_records', 'id'),
                               GREATEST((SELECT MAX(id) FROM image_records), 1),
                               (SELECT MAX(id) FROM image_records) IS NOT NULL)",
                &[],
            )
            .await?;
        Ok(())
    }

    pub async fn by_id(&self, id: i64) -> Result<Option<Record>, RecordsError> {
        self.one(&format!("SELECT {COLUMNS} FROM image_records WHERE id = $1"), &id).await
    }

    pub async fn by_job(&self, job_id: &str) -> Result<Option<Record>, RecordsError> {
        self.one(&format!("SELECT {COLUMNS} FROM image_records WHERE job_id = $1"), &job_id).await
    }

    async fn one(&self, sql: &str, key: &(dyn ToSql + Sync)) -> Result<Option<Record>, RecordsError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await?;
        client.query_opt(&statement, &[key]).await?.map(|row| record(&row)).transpose()
    }

    pub async fn query(&self, query: &RecordQuery) -> Result<RecordPage, RecordsError> {
        let mut filter = Filter::default();
        if let Some(keyword) = super::keyword(query) {
            let pattern = filter.bind(super::like_pattern(keyword));
            filter.conditions.push(format!(
                r"(original_prompt ILIKE {pattern} ESCAPE '\' OR english_prompt ILIKE {pattern} ESCAPE '\')"
            ));
        }
        if let Some(owner) = &query.owner {
            let owner = filter.bind(owner.clone());
            filter.conditions.push(format!("owner = {owner}"));
        }
        if let Some(model) = &query.model {
            let model = filter.bind(model.clone());
            filter.conditions.push(format!("model = {model}"));
        }
        if let Some(implicit) = query.implicit_label {
            let implicit = filter.bind(implicit);
            filter.conditions.push(format!("implicit_label = {implicit}"));
        }
        if let Some(explicit) = query.explicit_label {
            let explicit = filter.bind(explicit);
            filter.conditions.push(format!("explicit_label = {explicit}"));
        }
        if let Some(kind) = query.kind {
            let kind = filter.bind(kind.name().to_string());
            filter.conditions.push(format!("kind = {kind}"));
        }
        if query.edits_only {
            filter.conditions.push("kind <> 'generate'".into());
        }
        // Dates are whole UTC days, `date_to` included.
        if let Some(from) = query.date_from {
            let from = filter.bind(from.with_time(Time::MIDNIGHT).assume_utc());
            filter.conditions.push(format!("created_at >= {from}"));
        }
        if let Some(to) = query.date_to {
            let end = filter.bind((to.with_time(Time::MIDNIGHT) + time::Duration::days(1)).assume_utc());
            filter.conditions.push(format!("created_at < {end}"));
        }
        let condition = filter.sql();
        let mut client = self.pool.get().await?;
        // The timeout for this search's statements only (SET LOCAL ends with the transaction).
        let client = client.transaction().await?;
        client.batch_execute(&format!("SET LOCAL statement_timeout = {}", self.search_timeout.as_millis())).await?;
        let total: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM image_records {condition}"), &filter.params())
            .await?
            .get(0);
        let limit = filter.bind(i64::from(query.limit.saturating_sub(query.skip)));
        let offset =
            filter.bind(i64::from(query.page.saturating_sub(1)) * i64::from(query.limit) + i64::from(query.skip));
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM image_records {condition}
                     ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
                ),
                &filter.params(),
            )
            .await?;
        let records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        client.commit().await?;
        Ok(RecordPage::new(records, total as u64, query))
    }

    /// Marks the job's record as its group's pick and unmarks the others of the group, in
    /// one statement; how many records changed (0: the job has no record in that group).
    pub async fn pick(&self, group_id: &str, job_id: &str) -> Result<u64, RecordsError> {
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                "UPDATE image_records SET picked = (job_id = $2)
                 WHERE group_id = $1 AND EXISTS (SELECT 1 FROM image_records WHERE group_id = $1 AND job_id = $2)",
                &[&group_id, &job_id],
            )
            .await?;
        Ok(changed)
    }

    /// Deletes the job's record; the record as it was, or `None` when there was none.
    pub async fn delete(&self, job_id: &str) -> Result<Option<Record>, RecordsError> {
        self.one(&format!("DELETE FROM image_records WHERE job_id = $1 RETURNING {COLUMNS}"), &job_id).await
    }

    /// Up to `limit` records, oldest first, created before `before` when given.
    pub async fn oldest(&self, limit: u32, before: Option<OffsetDateTime>) -> Result<Vec<Record>, RecordsError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM image_records WHERE ($1::timestamptz IS NULL OR created_at < $1)
                     ORDER BY created_at, id LIMIT $2"
                ),
                &[&before, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(record).collect()
    }

    /// The bytes of every stored picture, as their records say.
    pub async fn total_size(&self) -> Result<u64, RecordsError> {
        let client = self.pool.get().await?;
        let total: i64 =
            client.query_one("SELECT COALESCE(SUM(file_size), 0)::BIGINT FROM image_records", &[]).await?.get(0);
        Ok(total as u64)
    }
}

/// A WHERE clause built up with numbered parameters.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    /// Adds a parameter and returns its placeholder (`$1`, `$2`, ...).
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {}", self.conditions.join(" AND ")) }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

fn parse_time(text: &str) -> Result<OffsetDateTime, RecordsError> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| RecordsError::BadTime(text.into()))
}

fn record(row: &Row) -> Result<Record, RecordsError> {
    Ok(Record {
        id: row.try_get(0)?,
        job_id: row.try_get(1)?,
        original_prompt: row.try_get(2)?,
        english_prompt: row.try_get(3)?,
        model: row.try_get(4)?,
        local_path: row.try_get(5)?,
        r2_url: row.try_get(6)?,
        file_size: row.try_get::<_, i64>(7)? as u64,
        width: row.try_get::<_, i32>(8)? as u32,
        height: row.try_get::<_, i32>(9)? as u32,
        format: row.try_get(10)?,
        created_at: super::timestamp(row.try_get(11)?),
        updated_at: super::timestamp(row.try_get(12)?),
        r2_error: row.try_get(13)?,
        user: row.try_get(14)?,
        labels: Labels { implicit: row.try_get(15)?, explicit: row.try_get(16)? },
        kind: JobKind::parse(row.try_get(17)?).unwrap_or_default(),
        inputs: serde_json::from_value(row.try_get(18)?).unwrap_or_default(),
        owner: row.try_get(19)?,
        cost: Cost {
            cost_usd: row.try_get(20)?,
            cost_source: CostSource::parse(row.try_get(21)?),
            usage: row.try_get(22)?,
        },
        fallback: row
            .try_get::<_, Option<serde_json::Value>>(23)?
            .and_then(|fallback| serde_json::from_value(fallback).ok()),
        group_id: row.try_get(24)?,
        picked: row.try_get(25)?,
    })
}
