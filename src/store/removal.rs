//! Deleting a stored picture, whoever asks (`DELETE /records/{id}` through the records
//! API, `huiying records delete`, the retention sweep): its R2 / S3 copy, the file and
//! its thumbnail, then its record (the full-text entry goes with the row). In this
//! order, so that a delete stopped half-way leaves a record to delete again, never a
//! file without one.

use std::path::PathBuf;
use std::sync::Arc;

use super::records::Records;
use super::remote::RemoteStore;
use crate::contract::records::{Record, thumbnail_name};
use crate::failure::Failure;

#[derive(Clone)]
pub(super) struct Removal {
    pub(super) records: Records,
    pub(super) images_dir: PathBuf,
    pub(super) remote: Option<Arc<RemoteStore>>,
}

impl Removal {
    /// Deletes the job's picture everywhere; the record it had, or `None` when it had none
    /// (never stored, or deleted before).
    pub(super) async fn remove(&self, job_id: &str) -> Result<Option<Record>, Failure> {
        let Some(record) = self.records.by_job(job_id).await? else { return Ok(None) };
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
        self.records.delete(job_id).await?;
        Ok(Some(record))
    }
}
