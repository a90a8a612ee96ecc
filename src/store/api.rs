//! The store answers questions about its records and files over NATS request/reply (the
//! async-nats service API, queue group shared by all store instances), so that ingest,
//! on any host, never opens the database file.

use std::path::PathBuf;

use async_nats::service::ServiceExt;
use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::records::{RecordPage, Records, RecordsError};
use crate::contract::records::{
    Answer, IMAGES_LIST, ImageFile, ImageList, RECORDS_GET, RECORDS_LIST, Record, RecordQuery, RecordView,
    RecordViewPage, thumbnail_name,
};
use crate::contract::services::Service;

/// What answering needs.
#[derive(Clone)]
pub(super) struct StoreApi {
    pub(super) records: Records,
    pub(super) images_dir: PathBuf,
    pub(super) public_base_url: String,
}

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
        for subject in [RECORDS_LIST, RECORDS_GET, IMAGES_LIST] {
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
                Ok(query) => reply(self.records.query(&query).await.map(|page| self.view_page(page))),
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
                let api = self.clone();
                match tokio::task::spawn_blocking(move || api.images()).await {
                    Ok(Ok(list)) => ok_reply(&list),
                    Ok(Err(e)) => error_reply(500, &format!("listing {} failed: {e}", self.images_dir.display())),
                    Err(e) => error_reply(500, &format!("the store crashed answering: {e}")),
                }
            }
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

    fn view_page(&self, page: RecordPage) -> RecordViewPage {
        RecordViewPage {
            records: page.records.into_iter().map(|r| self.view(r)).collect(),
            total: page.total,
            page: page.page,
            limit: page.limit,
            pages: page.pages,
        }
    }

    /// Pictures in `images_dir`, newest first.
    fn images(&self) -> std::io::Result<ImageList> {
        let mut images = Vec::new();
        let entries = match std::fs::read_dir(&self.images_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ImageList { images }),
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
        Ok(ImageList { images })
    }
}

fn ok_reply<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(&Answer::Ok(value)).expect("answers serialize")
}

fn reply<T: Serialize>(result: Result<T, RecordsError>) -> Vec<u8> {
    match result {
        Ok(value) => ok_reply(&value),
        Err(e) => error_reply(500, &format!("reading the records failed: {e}")),
    }
}

fn error_reply(status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Answer::<()>::Error { status, message: message.into() }).expect("answers serialize")
}
