//! `[retention]`: once an hour the store deletes the oldest pictures past `keep_days` or
//! beyond `max_gb`, each as `DELETE /records/{id}` would (R2 / S3 copy, file, thumbnail,
//! record), and says what it deleted in the log and `huiying_records_deleted_total`.
//! Every store instance sweeps; a picture two sweep at once is deleted once.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::removal::Removal;
use crate::config::RetentionConfig;
use crate::failure::Failure;

/// How often the sweep runs (and once at start).
const EVERY: Duration = Duration::from_secs(3600);
/// Records deleted per database round.
const BATCH: u32 = 100;

pub(super) struct Retention {
    removal: Removal,
    keep: Option<time::Duration>,
    max_bytes: Option<u64>,
}

/// What one sweep deleted.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Swept {
    pub(super) too_old: u64,
    pub(super) over_size: u64,
    pub(super) bytes: u64,
}

impl Retention {
    /// `None` when `[retention]` keeps everything.
    pub(super) fn new(config: &RetentionConfig, removal: Removal) -> Option<Self> {
        config.is_on().then(|| Self {
            removal,
            keep: (config.keep_days > 0).then(|| time::Duration::days(i64::from(config.keep_days))),
            max_bytes: config.max_bytes(),
        })
    }

    /// Sweeps now and every hour until `shutdown` fires.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.sweep(OffsetDateTime::now_utc()).await {
                Ok(swept) if swept == Swept::default() => {}
                Ok(swept) => tracing::info!(
                    too_old = swept.too_old,
                    over_size = swept.over_size,
                    freed_mb = swept.bytes >> 20,
                    "retention: deleted the oldest pictures"
                ),
                Err(failure) => tracing::warn!(reason = %failure.reason, "retention sweep stopped; next in an hour"),
            }
        }
    }

    /// Deletes what is past the bounds at `now`: first what is too old, then the oldest
    /// until the rest fits `max_gb`.
    pub(super) async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, Failure> {
        let mut swept = Swept::default();
        if let Some(keep) = self.keep {
            loop {
                let old = self.removal.records.oldest(BATCH, Some(now - keep)).await?;
                for record in &old {
                    swept.bytes += self.delete(&record.job_id, "age").await?;
                    swept.too_old += 1;
                }
                if old.len() < BATCH as usize {
                    break;
                }
            }
        }
        if let Some(max) = self.max_bytes {
            let mut total = self.removal.records.total_size().await?;
            while total > max {
                let oldest = self.removal.records.oldest(BATCH, None).await?;
                if oldest.is_empty() {
                    break;
                }
                for record in &oldest {
                    if total <= max {
                        break;
                    }
                    let freed = self.delete(&record.job_id, "size").await?;
                    total = total.saturating_sub(record.file_size);
                    swept.bytes += freed;
                    swept.over_size += 1;
                }
            }
        }
        Ok(swept)
    }

    /// Deletes one job's picture; the bytes its record counted.
    async fn delete(&self, job_id: &str, reason: &'static str) -> Result<u64, Failure> {
        let removed = self.removal.remove(job_id).await?;
        metrics::counter!("huiying_records_deleted_total", "reason" => reason).increment(1);
        Ok(removed.map_or(0, |record| record.file_size))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::contract::records::Record;
    use crate::store::records::{Records, SqliteRecords, timestamp};

    /// A folder and a SQLite file holding a picture (and thumbnail) per `(job, day, bytes)`.
    async fn stored(pictures: &[(&str, OffsetDateTime, u64)]) -> (tempfile::TempDir, Removal) {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::Sqlite(SqliteRecords::open(&dir.path().join("records.db")).unwrap());
        for (job, at, bytes) in pictures {
            let filename = format!("huiying_image_{job}.jpg");
            std::fs::write(dir.path().join(&filename), vec![0; *bytes as usize]).unwrap();
            std::fs::create_dir_all(dir.path().join("thumbs")).unwrap();
            std::fs::write(dir.path().join(format!("thumbs/huiying_image_{job}.jpg")), b"t").unwrap();
            let record = Record {
                id: 0,
                job_id: job.to_string(),
                original_prompt: "a fox".into(),
                english_prompt: "a fox".into(),
                model: "m".into(),
                local_path: dir.path().join(&filename).display().to_string(),
                r2_url: None,
                r2_error: None,
                file_size: *bytes,
                width: 1,
                height: 1,
                format: "jpeg".into(),
                created_at: timestamp(*at),
                updated_at: timestamp(*at),
                user: None,
                labels: Default::default(),
                kind: Default::default(),
                inputs: Vec::new(),
                owner: Some("design".into()),
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
            };
            records.insert(&record).await.unwrap();
        }
        let objects = std::sync::Arc::new(crate::parts::memory::MemoryObjects::default());
        let removal = Removal { records, images_dir: dir.path().to_path_buf(), remote: None, objects };
        (dir, removal)
    }

    fn files(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = walk(dir.path());
        names.sort();
        names
    }

    fn walk(path: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(path)
            .unwrap()
            .flat_map(|entry| {
                let entry = entry.unwrap();
                match entry.file_type().unwrap().is_dir() {
                    true => walk(&entry.path()),
                    false => vec![entry.file_name().to_string_lossy().into_owned()],
                }
            })
            .filter(|name| name.starts_with("huiying_image_"))
            .collect()
    }

    #[tokio::test]
    async fn pictures_older_than_keep_days_go_with_their_records_and_thumbnails() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let (dir, removal) =
            stored(&[("old", now - time::Duration::days(31), 10), ("new", now - time::Duration::days(29), 10)]).await;
        let config = RetentionConfig { keep_days: 30, max_gb: 0.0 };
        let retention = Retention::new(&config, removal.clone()).unwrap();
        let swept = retention.sweep(now).await.unwrap();
        assert_eq!(swept, Swept { too_old: 1, over_size: 0, bytes: 10 });
        assert_eq!(files(&dir), ["huiying_image_new.jpg", "huiying_image_new.jpg"], "the picture and its thumbnail");
        assert!(removal.records.by_job("old").await.unwrap().is_none());
        assert_eq!(retention.sweep(now).await.unwrap(), Swept::default(), "a second sweep finds nothing");
    }

    #[tokio::test]
    async fn beyond_max_gb_the_oldest_go_until_the_rest_fits() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let day = |n| now - time::Duration::days(n);
        let gib = 1u64 << 30;
        // Files on disk stay small; the records say how large the pictures are.
        let (_dir, removal) = stored(&[("a", day(3), 1), ("b", day(2), 1), ("c", day(1), 1)]).await;
        // Three pictures of 0.4 GiB each (as their records count them) against a bound of 1 GiB.
        for job in ["a", "b", "c"] {
            let mut record = removal.records.by_job(job).await.unwrap().unwrap();
            removal.records.delete(job).await.unwrap();
            record.file_size = gib * 4 / 10;
            removal.records.insert(&record).await.unwrap();
        }
        let retention = Retention::new(&RetentionConfig { keep_days: 0, max_gb: 1.0 }, removal.clone()).unwrap();
        let swept = retention.sweep(now).await.unwrap();
        assert_eq!((swept.too_old, swept.over_size), (0, 1));
        assert!(removal.records.by_job("a").await.unwrap().is_none(), "the oldest went");
        assert!(removal.records.by_job("c").await.unwrap().is_some());
    }
}
