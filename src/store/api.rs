//! The store answers questions about its records and files over NATS request/reply (the
//! async-nats service API, queue group shared by all store instances), so that ingest,
//! on any host, never opens the database file.

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::service::ServiceExt;
use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::records::{RecordPage, Records, RecordsError};
use super::removal::Removal;
use crate::contract::records::{
    Answer, IMAGES_LIST, ImageFile, ImageList, ImagePage, MAX_ANSWER_BYTES, PickRequest, RECORDS_DELETE, RECORDS_GET,
    RECORDS_LIST, RECORDS_PICK, Record, RecordQuery, RecordView, RecordViewPage, thumbnail_name,
};
use crate::contract::services::Service;

/// What answering needs.
#[derive(Clone)]
pub(super) struct StoreApi {
    pub(super) records: Records,
    pub(super) images_dir: PathBuf,
    pub(super) public_base_url: String,
    /// Lists and searches answered at once (each holds a database connection or scans
    /// the images folder); the rest wait here, not on threads of their own.
    pub(super) queries: Arc<Semaphore>,
    pub(super) removal: Removal,
}

/// Lists and searches the store answers at once: one per SQLite reader.
pub(super) const CONCURRENT_QUERIES: usize = crate::store::records::SQLITE_READERS;

impl StoreApi {
    /// Answers requests until `shutdown` fires.
    pub(super) async fn serve(self, client: async_nats::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
        let service = client
            .service_builder()
            .description(Service::Store.about())
            .start(Service::Store.program(), env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| anyhow::anyhow!("starting the records service: {e}"))?;
        let mut endpoints = Vec::new();
        for subject in [RECORDS_LIST, RECORDS_GET, IMAGES_LIST, RECORDS_DELETE, RECORDS_PICK] {
            endpoints.push(service.endpoint(subject).await.map_err(|e| anyhow::anyhow!("endpoint {subject}: {e}"))?);
        }
        let mut requests = futures::stream::select_all(endpoints);
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => break,
                request = requests.next() => match request { Some(request) => request, None => break },
            };
            let api = self.clone();
            tokio::spawn(async move {
                let subject = request.message.subject.to_string();
                let payload = request.message.payload.clone();
                let reply = api.answer(&subject, &payload).await;
                if let Err(error) = request.respond(Ok(reply.into())).await {
                    tracing::warn!(%error, "could not answer a records request");
                }
            });
        }
        let _ = service.stop().await;
        Ok(())
    }

    /// The JSON reply to one request.
    async fn answer(&self, subject: &str, payload: &[u8]) -> Vec<u8> {
        match subject {
            RECORDS_LIST => match serde_json::from_slice::<RecordQuery>(payload) {
                Ok(query) => {
                    let _turn = self.queries.acquire().await.expect("the semaphore is never closed");
                    reply(self.records.query(&query).await.map(|page| self.view_page(page)))
                }
                Err(e) => error_reply(400, &format!("bad records query: {e}")),
            },
            RECORDS_GET => {
                // A number is a record's own id; failing that (or otherwise), a job id.
                let key = String::from_utf8_lossy(payload).to_string();
                let by_number = match key.parse::<i64>() {
                    Ok(number) => self.records.by_id(number).await,
                    Err(_) => Ok(None),
                };
                let found = match by_number {
                    Ok(None) => self.records.by_job(&key).await,
                    other => other,
                };
                match found {
                    Ok(Some(record)) => ok_reply(&self.view(record)),
                    Ok(None) => error_reply(404, &format!("no record with id {key:?}")),
                    Err(e) => error_reply(500, &format!("reading the records failed: {e}")),
                }
            }
            IMAGES_LIST => {
                let wanted = match payload.is_empty() {
                    true => Ok(ImagePage::default()),
                    false => serde_json::from_slice::<ImagePage>(payload),
                };
                let Ok(wanted) = wanted else { return error_reply(400, "bad images query") };
                let _turn = self.queries.acquire().await.expect("the semaphore is never closed");
                let api = self.clone();
                match tokio::task::spawn_blocking(move || api.images(wanted)).await {
                    Ok(Ok(list)) => ok_reply(&list),
                    Ok(Err(e)) => error_reply(500, &format!("listing {} failed: {e}", self.images_dir.display())),
                    Err(e) => error_reply(500, &format!("the store crashed answering: {e}")),
                }
            }
            RECORDS_DELETE => {
                let job_id = String::from_utf8_lossy(payload).to_string();
                match self.removal.remove(&job_id).await {
                    Ok(removed) => {
                        if removed.is_some() {
                            metrics::counter!("huiying_records_deleted_total", "reason" => "request").increment(1);
                            tracing::info!(job = %job_id, "deleted on request");
                        }
                        ok_reply(&removed.is_some())
                    }
                    Err(failure) => error_reply(503, &format!("deleting failed; try again: {}", failure.reason)),
                }
            }
            RECORDS_PICK => match serde_json::from_slice::<PickRequest>(payload) {
                Ok(pick) => match self.records.pick(&pick.group_id, &pick.job_id).await {
                    Ok(true) => ok_reply(&true),
                    Ok(false) => error_reply(
                        409,
                        &format!("job {:?} has no stored picture in group {:?}", pick.job_id, pick.group_id),
                    ),
                    Err(e) => error_reply(503, &format!("recording the pick failed; try again: {e}")),
                },
                Err(e) => error_reply(400, &format!("bad pick: {e}")),
            },
            other => error_reply(404, &format!("no such request: {other}")),
        }
    }

    fn local_url(&self, filename: &str) -> String {
        crate::contract::local_url(&self.public_base_url, filename)
    }

    fn view(&self, record: Record) -> RecordView {
        let filename = record.filename();
        let local_url = self.local_url(&filename);
        let url = record.r2_url.clone().unwrap_or_else(|| local_url.clone());
        // The thumbnail sits beside the picture: on S3 / R2 when the picture is there.
        let thumbnail = thumbnail_name(&filename);
        let thumbnail_url = self.images_dir.join(&thumbnail).is_file().then(|| match &record.r2_url {
            Some(r2_url) => match r2_url.rsplit_once('/') {
                Some((folder, _)) => format!("{folder}/{thumbnail}"),
                None => self.local_url(&thumbnail),
            },
            None => self.local_url(&thumbnail),
        });
        RecordView { record, url, local_url, thumbnail_url }
    }

    /// The page as far as it fits one answer ([`MAX_ANSWER_BYTES`]), with `more` set when
    /// records were left for the next part (prompts of 4,000 characters make a page of a
    /// hundred records larger than a NATS message).
    fn view_page(&self, page: RecordPage) -> RecordViewPage {
        let mut records = Vec::with_capacity(page.records.len());
        let mut size = 1024; // the page's own fields
        let mut more = false;
        for record in page.records {
            let view = self.view(record);
            let record_size = serde_json::to_vec(&view).map_or(0, |bytes| bytes.len()) + 1;
            if !records.is_empty() && size + record_size > MAX_ANSWER_BYTES {
                more = true;
                break;
            }
            size += record_size;
            records.push(view);
        }
        RecordViewPage { records, total: page.total, page: page.page, limit: page.limit, pages: page.pages, more }
    }

    /// A page of the pictures in `images_dir`, newest first.
    fn images(&self, wanted: ImagePage) -> std::io::Result<ImageList> {
        let mut images = Vec::new();
        let (page, limit) = (wanted.page.max(1), wanted.limit.clamp(1, ImagePage::MAX_LIMIT));
        let entries = match std::fs::read_dir(&self.images_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ImageList { images, total: 0, page, limit, pages: 0 });
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let filename = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry.metadata()?;
            // The original service's pictures (ai_image_...) are listed too.
            if !metadata.is_file()
                || !(filename.starts_with("huiying_image_")
                    || filename.starts_with("huiying_edit_")
                    || filename.starts_with("ai_image_"))
            {
                continue;
            }
            let modified: OffsetDateTime = metadata.modified()?.into();
            images.push(ImageFile {
                url: self.local_url(&filename),
                created_time: modified.format(&Rfc3339).unwrap_or_default(),
                size: metadata.len(),
                filename,
            });
        }
        images.sort_by(|a, b| b.created_time.cmp(&a.created_time).then_with(|| b.filename.cmp(&a.filename)));
        let total = images.len() as u64;
        let images = images.into_iter().skip((page as usize - 1) * limit as usize).take(limit as usize).collect();
        Ok(ImageList { images, total, page, limit, pages: total.div_ceil(u64::from(limit)) })
    }
}

fn ok_reply<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(&Answer::Ok(value)).expect("answers serialize")
}

fn reply<T: Serialize>(result: Result<T, RecordsError>) -> Vec<u8> {
    match result {
        Ok(value) => ok_reply(&value),
        Err(e) if e.is_too_slow() => error_reply(
            503,
            "the search took longer than [database] search_timeout_ms and was stopped; narrow it (a longer \
             keyword, a date range)",
        ),
        Err(e) => error_reply(500, &format!("reading the records failed: {e}")),
    }
}

fn error_reply(status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Answer::<()>::Error { status, message: message.into() }).expect("answers serialize")
}
