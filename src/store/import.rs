//! `huiying records import <dump.sql>`: the original service's history, from the SQL text
//! that `wrangler d1 export` writes, into huiying's records.
//!
//! The dump is run in a private in-memory SQLite database (it is SQLite's own dialect),
//! with no way to attach files, and its rows are read from there. Each row becomes a
//! record with the job id `d1-image-<id>` (or `d1-edit-<id>`), so a second import finds
//! them and adds nothing. A picture keeps its original number (`/records/<id>` and the
//! ids clients kept still lead to it; later records are numbered after the largest); an
//! edit keeps its kind and input links, and is numbered after them (the original counted
//! edits apart, so their numbers would meet the pictures'). A dry run writes nothing: a
//! SQLite file that is not there is not made, one that is there is only read.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, limits::Limit};
use time::PrimitiveDateTime;
use time::macros::format_description;

use super::records::{Records, RecordsError, timestamp};
use crate::config::Config;
use crate::contract::events::{JobKind, Labels};
use crate::contract::records::Record;
use crate::outbound;

/// What to import, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The dump (`wrangler d1 export <database> --output dump.sql`).
    pub dump: PathBuf,
    /// Count what would be imported, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also download each picture from its R2 link into images_dir (guarded like model
    /// downloads); without it, pictures stay where their links point.
    #[arg(long)]
    pub fetch_pictures: bool,
}

/// An original row, as a record.
struct Row {
    record: Record,
    table: &'static str,
}

/// One line per table: how many were imported, already there, or skipped.
pub async fn run(config: &Config, args: ImportArgs) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(&args.dump).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.dump.display()))?;
    let (rows, skipped_edits) = read_dump(&text)?;
    if args.dry_run {
        return dry_run(config, rows, skipped_edits).await;
    }
    let records = Records::open(&config.database).await.map_err(|e| {
        anyhow::anyhow!("cannot open the records database ({}): {e}", Records::describe_config(&config.database))
    })?;
    let mut counts = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    let mut bad_times = Vec::new();
    let mut renumbered = Vec::new();
    for Row { mut record, table } in rows {
        let entry = counts.entry(table).or_default();
        if records.by_job(&record.job_id).await?.is_some() {
            entry.1 += 1;
            continue;
        }
        entry.0 += 1;
        // A number a record of this installation already has: the picture gets the next.
        if record.id > 0 && records.by_id(record.id).await?.is_some() {
            renumbered.push(record.id.to_string());
            record.id = 0;
        }
        if args.fetch_pictures
            && let Some(url) = record.r2_url.clone()
        {
            match fetch(config, &url).await {
                Ok(path) => record.local_path = path.display().to_string(),
                Err(error) => tracing::warn!(%url, %error, "picture not fetched; its link is kept"),
            }
        }
        let numbered = record.id > 0;
        let inserted = records.insert(&record).await;
        // Records numbered here come after it (PostgreSQL's sequence does not see it).
        if numbered && inserted.is_ok() {
            records.continue_numbering().await?;
        }
        match inserted {
            // SQLite keeps any text; PostgreSQL only times. Skipped, and said so.
            Err(RecordsError::BadTime(time)) => {
                entry.0 -= 1;
                bad_times.push(format!("{} ({time:?})", record.job_id));
            }
            other => {
                other?;
            }
        }
    }
    let mut lines = summary(&counts, "imported", skipped_edits);
    if !renumbered.is_empty() {
        lines.push(format!(
            "numbered anew {} whose number a record here already had: {}",
            renumbered.len(),
            renumbered.join(", ")
        ));
    }
    if !bad_times.is_empty() {
        lines.push(format!("skipped {} whose time is not a time: {}", bad_times.len(), bad_times.join(", ")));
    }
    Ok(lines)
}

/// What an import would do, found by reading only.
async fn dry_run(config: &Config, rows: Vec<Row>, skipped_edits: usize) -> anyhow::Result<Vec<String>> {
    let there: Box<dyn Fn(&str) -> bool> = match config.database.url.is_set() {
        // PostgreSQL: nothing to make by reading (its schema is what any service start makes).
        true => {
            let records = Records::open(&config.database).await?;
            let mut known = std::collections::HashSet::new();
            for Row { record, .. } in &rows {
                if records.by_job(&record.job_id).await?.is_some() {
                    known.insert(record.job_id.clone());
                }
            }
            Box::new(move |job: &str| known.contains(job))
        }
        false => {
            let known = sqlite_imported(&config.database.path)?;
            Box::new(move |job: &str| known.contains(job))
        }
    };
    let mut counts = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for Row { record, table } in &rows {
        let entry = counts.entry(table).or_default();
        match there(&record.job_id) {
            true => entry.1 += 1,
            false => entry.0 += 1,
        }
    }
    Ok(summary(&counts, "would import", skipped_edits))
}

/// The job ids of earlier imports in the SQLite file, read only; none when there is no file.
fn sqlite_imported(path: &Path) -> anyhow::Result<std::collections::HashSet<String>> {
    if !path.exists() {
        return Ok(Default::default());
    }
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if !has_table(&db, "image_records")? {
        return Ok(Default::default());
    }
    let mut statement = db.prepare("SELECT job_id FROM image_records WHERE job_id LIKE 'd1-%'")?;
    let ids = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// One line per table: imported (or would be) and already there; then what was skipped.
fn summary(counts: &std::collections::BTreeMap<&str, (usize, usize)>, verb: &str, skipped_edits: usize) -> Vec<String> {
    let mut lines: Vec<String> =
        counts.iter().map(|(table, (new, known))| format!("{table}: {verb} {new}, {known} already there")).collect();
    if skipped_edits > 0 {
        lines.push(format!("image_edit_records: skipped {skipped_edits} that never completed (no picture)"));
    }
    if lines.is_empty() {
        lines.push("the dump holds no image_records or image_edit_records rows".into());
    }
    lines
}

/// The dump's rows as records, and how many edits had no picture.
fn read_dump(text: &str) -> anyhow::Result<(Vec<Row>, usize)> {
    let db = Connection::open_in_memory()?;
    // The dump is someone's file: it may not reach beyond this database.
    db.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    db.execute_batch(text).map_err(|e| anyhow::anyhow!("the dump is not SQLite SQL that runs: {e}"))?;
    let mut rows = Vec::new();
    if has_table(&db, "image_records")? {
        let sql = select(
            &db,
            "image_records",
            &[
                "id",
                "original_prompt",
                "english_prompt",
                "local_path",
                "r2_url",
                "file_size",
                "width",
                "height",
                "format",
                "created_at",
                "updated_at",
            ],
        )?;
        let mut statement = db.prepare(&sql)?;
        let found = statement.query_map([], |row| {
            let created: String = row.get::<_, Option<String>>(9)?.unwrap_or_default();
            let id = row.get::<_, i64>(0)?;
            Ok(Record {
                // The original's number, kept.
                id,
                job_id: format!("d1-image-{id}"),
                original_prompt: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                english_prompt: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                model: String::new(),
                local_path: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                r2_url: row.get::<_, Option<String>>(4)?.filter(|u| !u.is_empty()),
                r2_error: None,
                file_size: number(row, 5)?,
                width: number(row, 6)? as u32,
                height: number(row, 7)? as u32,
                format: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                created_at: utc(&created),
                updated_at: utc(&row.get::<_, Option<String>>(10)?.unwrap_or(created)),
                user: None,
                // The original service labelled nothing.
                labels: Labels::default(),
                kind: Default::default(),
                inputs: Vec::new(),
                owner: None,
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
            })
        })?;
        for record in found {
            rows.push(Row { record: record?, table: "image_records" });
        }
    }
    let mut skipped = 0;
    if has_table(&db, "image_edit_records")? {
        let sql = select(
            &db,
            "image_edit_records",
            &[
                "id",
                "edit_prompt",
                "local_path",
                "r2_url",
                "result_image_url",
                "file_size",
                "width",
                "height",
                "format",
                "created_at",
                "completed_at",
                "status",
                "edit_type",
                "input_image_urls",
            ],
        )?;
        let mut statement = db.prepare(&sql)?;
        let found = statement.query_map([], |row| {
            let status: String = row.get::<_, Option<String>>(11)?.unwrap_or_default();
            let link = row.get::<_, Option<String>>(3)?.filter(|u| !u.is_empty());
            let link = link.or(row.get::<_, Option<String>>(4)?.filter(|u| !u.is_empty()));
            let local: String = row.get::<_, Option<String>>(2)?.unwrap_or_default();
            if status != "completed" && link.is_none() && local.is_empty() {
                return Ok(None);
            }
            let prompt: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
            let created: String = row.get::<_, Option<String>>(9)?.unwrap_or_default();
            let completed = row.get::<_, Option<String>>(10)?.filter(|c| !c.is_empty()).unwrap_or(created.clone());
            Ok(Some(Record {
                id: 0,
                job_id: format!("d1-edit-{}", row.get::<_, i64>(0)?),
                original_prompt: prompt.clone(),
                english_prompt: prompt,
                model: "Qwen/Qwen-Image-Edit".into(),
                local_path: local,
                r2_url: link,
                r2_error: None,
                file_size: number(row, 5)?,
                width: number(row, 6)? as u32,
                height: number(row, 7)? as u32,
                format: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                created_at: utc(&created),
                updated_at: utc(&completed),
                user: None,
                labels: Labels::default(),
                kind: edit_kind(&row.get::<_, Option<String>>(12)?.unwrap_or_default()),
                inputs: input_links(&row.get::<_, Option<String>>(13)?.unwrap_or_default()),
                owner: None,
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
            }))
        })?;
        for record in found {
            match record? {
                Some(record) => rows.push(Row { record, table: "image_edit_records" }),
                None => skipped += 1,
            }
        }
    }
    Ok((rows, skipped))
}

/// The original's `edit_type` as a kind (an edit when it names none huiying knows).
fn edit_kind(edit_type: &str) -> JobKind {
    let edit_type = edit_type.to_ascii_lowercase();
    match () {
        _ if edit_type.contains("compose") => JobKind::Compose,
        _ if edit_type.contains("style") => JobKind::Style,
        _ if edit_type.contains("fusion") => JobKind::Fusion,
        _ => JobKind::Edit,
    }
}

/// The original's `input_image_urls`: a JSON array, which it built without escaping for
/// one link, so a text that is not one is kept as the single link it is.
fn input_links(text: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(links) => links,
        Err(_) => {
            let link = text.trim().trim_start_matches("[\"").trim_end_matches("\"]").to_string();
            if link.is_empty() { Vec::new() } else { vec![link] }
        }
    }
}

/// A size column: NULL or negative is 0.
fn number(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, Option<i64>>(column)?.unwrap_or(0).max(0) as u64)
}

fn has_table(db: &Connection, name: &str) -> rusqlite::Result<bool> {
    db.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| r.get(0))
        .map(|n: i64| n > 0)
}

/// `SELECT` of `wanted`, with NULL for a column an older dump does not have.
fn select(db: &Connection, table: &str, wanted: &[&str]) -> rusqlite::Result<String> {
    let mut statement = db.prepare(&format!("PRAGMA table_info({table})"))?;
    let present: Vec<String> = statement.query_map([], |row| row.get(1))?.collect::<Result<_, _>>()?;
    let columns: Vec<String> = wanted
        .iter()
        .map(|c| if present.iter().any(|p| p == c) { format!("\"{c}\"") } else { "NULL".into() })
        .collect();
    Ok(format!("SELECT {} FROM \"{table}\" ORDER BY id", columns.join(", ")))
}

/// The original's times (`YYYY-MM-DD HH:MM:SS`, UTC from D1) in huiying's record format;
/// anything else is kept as it was.
fn utc(text: &str) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    match PrimitiveDateTime::parse(text.trim(), format) {
        Ok(at) => timestamp(at.assume_utc()),
        Err(_) => text.to_string(),
    }
}

/// Downloads a picture into images_dir (guarded as model downloads are); its path.
async fn fetch(config: &Config, url: &str) -> anyhow::Result<PathBuf> {
    let parsed = reqwest::Url::parse(url)?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let addresses = outbound::resolve(&parsed, config.generator.allow_private_urls).await?;
    let client = outbound::pinned_client(&host, &addresses, config.generator.download_timeout)?;
    let response = client.get(parsed.clone()).send().await?.error_for_status()?;
    let bytes = response.bytes().await?;
    anyhow::ensure!(bytes.len() as u64 <= config.generator.max_image_bytes, "larger than [generator] max_image_bytes");
    image::guess_format(&bytes).map_err(|_| anyhow::anyhow!("not a picture"))?;
    let name: String = parsed
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("picture")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    let name =
        if name.is_empty() || name.starts_with('.') { format!("imported_{}", uuid::Uuid::new_v4()) } else { name };
    let dir: &Path = &config.server.images_dir;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_cannot_reach_files_beyond_its_own_database() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("written.db");
        let dump = format!("ATTACH DATABASE '{}' AS elsewhere; CREATE TABLE elsewhere.t (x);", outside.display());
        assert!(read_dump(&dump).is_err());
        assert!(!outside.exists());
    }

    #[test]
    fn the_originals_utc_times_become_record_times_and_others_are_kept() {
        assert_eq!(utc("2025-08-31 02:24:30"), "2025-08-31T02:24:30.000000Z");
        assert_eq!(utc("yesterday"), "yesterday");
    }
}
