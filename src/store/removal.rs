//! Deleting a job's pictures, whoever asks (`DELETE /records/{id}` through the records
//! API, `huiying records delete`, the retention sweep): the R2 / S3 copy, the file and
//! its thumbnail, what the NATS picture bucket still holds of the job (the generated
//! picture, an edit's inputs), then the record (the full-text entry goes with the row).
//! In this order, so that a delete stopped half-way leaves a record to delete again,
//! never a file without one.

use std::path::PathBuf;
use std::sync::Arc;

use super::records::Records;
use super::remote::RemoteStore;
use crate::contract::records::{Record, thumbnail_name};
use crate::failure::Failure;
use crate::parts::Objects;

impl super::Store {
    /// Deletes pictures with this store's database, folder, remote copy and bucket.
    pub(super) fn removal(&self) -> Removal {
        Removal {
            records: self.records.clone(),
            images_dir: self.images_dir.clone(),
            remote: self.remote.clone(),
            objects: self.objects.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Removal {
    pub(super) records: Records,
    pub(super) images_dir: PathBuf,
    pub(super) remote: Option<Arc<RemoteStore>>,
    pub(super) objects: Arc<dyn Objects>,
}

impl Removal {
    /// Deletes the job's pictures everywhere; the record it had, or `None` when it had none
    /// (never stored, failed, or deleted before: what NATS holds of it goes all the same).
    pub(super) async fn remove(&self, job_id: &str) -> Result<Option<Record>, Failure> {
        let Some(record) = self.records.by_job(job_id).await? else {
            self.remove_held(job_id).await?;
            return Ok(None);
        };
        let filename = record.filename();
        if let (Some(remote), Some(_)) = (&self.remote, &record.r2_url) {
            remote.delete_with_thumbnail(&filename).await?;
        }
        if !filename.is_empty() {
            for file in [self.images_dir.join(&filename), self.images_dir.join(thumbnail_name(&filename))] {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Failure::transient(format!("deleting {} failed: {e}", file.display()))),
                }
            }
        }
        // The bucket keeps pictures a day: an older record's are gone already (and the
        // retention sweep, deleting old pictures by the thousand, need not list it each time).
        if !stored_before(&record, crate::bus::PICTURE_RETENTION) {
            self.remove_held(job_id).await?;
        }
        self.records.delete(job_id).await?;
        Ok(Some(record))
    }

    /// What the picture bucket holds of the job: `<job>.<attempt>`, `input/<job>/<n>`.
    async fn remove_held(&self, job_id: &str) -> Result<(), Failure> {
        let (picture, inputs) = (format!("{job_id}."), format!("input/{job_id}/"));
        for name in self.objects.names().await? {
            if name.starts_with(&picture) || name.starts_with(&inputs) {
                self.objects.delete(&name).await?;
            }
        }
        Ok(())
    }
}

/// Whether the record was written longer than `age` ago (a record whose time cannot be
/// read is not).
fn stored_before(record: &Record, age: std::time::Duration) -> bool {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(&record.created_at, &Rfc3339).is_ok_and(|at| time::OffsetDateTime::now_utc() - at > age)
}
