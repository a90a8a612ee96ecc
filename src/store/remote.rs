//! The optional remote copy: Cloudflare R2 or any S3-compatible store, through the
//! object_store crate. Each picture is uploaded once, from the bytes already in memory,
//! as `images/<file name>` with its content type; its public link is
//! `[cloudflare_r2] public_url` + `/images/<file name>`.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload, path::Path};

use crate::config::CloudflareR2Config;
use crate::failure::Failure;

pub(crate) struct RemoteStore {
    store: Arc<AmazonS3>,
    public_url: String,
}

impl RemoteStore {
    /// `None` when no bucket is configured. A bucket without `public_url` is private:
    /// its links go through ingest (`<links_base>/r2/images/<file>`, see [`crate::r2`]).
    pub(crate) fn from_config(r2: &CloudflareR2Config, links_base: &str) -> anyhow::Result<Option<Self>> {
        let Some(store) = crate::r2::client(r2)? else { return Ok(None) };
        let public_url = match r2.public_url.trim() {
            "" => format!("{links_base}{}", crate::r2::PRIVATE_BUCKET_PATH),
            public => public.trim_end_matches('/').to_string(),
        };
        Ok(Some(Self { store: Arc::new(store), public_url }))
    }

    /// Where the uploaded pictures are served from.
    pub(super) fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Uploads the picture and returns its public link, or why it failed.
    pub(crate) async fn upload(&self, filename: &str, bytes: Vec<u8>, content_type: &str) -> Result<String, Failure> {
        let key = format!("images/{filename}");
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_string().into());
        let options = PutOptions { attributes, ..Default::default() };
        let path = Path::from(key.as_str());
        let put = self.store.put_opts(&path, PutPayload::from(bytes), options);
        match tokio::time::timeout(crate::r2::UPLOAD_BUDGET + Duration::from_secs(5), put).await {
            Ok(Ok(_)) => Ok(format!("{}/{key}", self.public_url)),
            Ok(Err(e)) => Err(Failure::transient(format!("uploading {key} to R2 failed: {e}")).caused_by(e)),
            Err(_) => Err(Failure::transient(format!("uploading {key} to R2 timed out"))),
        }
    }

    /// Writes a small object and deletes it again (`huiying config check`).
    pub(crate) async fn check(&self) -> Result<(), Failure> {
        let name = format!("huiying-config-check-{}.txt", uuid::Uuid::new_v4());
        self.upload(&name, b"huiying config check".to_vec(), "text/plain").await?;
        self.delete_with_thumbnail(&name).await
    }

    /// Deletes the picture and its thumbnail (`images/<file>`, `images/thumbs/<stem>.jpg`);
    /// one already gone is fine (S3 answers a delete of a missing key with success).
    pub(super) async fn delete_with_thumbnail(&self, filename: &str) -> Result<(), Failure> {
        let thumbnail = crate::contract::records::thumbnail_name(filename);
        for name in [filename, thumbnail.as_str()] {
            let key = format!("images/{name}");
            let path = Path::from(key.as_str());
            let delete = self.store.delete(&path);
            match tokio::time::timeout(crate::r2::UPLOAD_BUDGET + Duration::from_secs(5), delete).await {
                Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => {}
                Ok(Err(e)) => {
                    return Err(Failure::transient(format!("deleting {key} from R2 failed: {e}")).caused_by(e));
                }
                Err(_) => return Err(Failure::transient(format!("deleting {key} from R2 timed out"))),
            }
        }
        Ok(())
    }

    /// Uploads the thumbnail (a bonus: its failure is only logged), then the picture;
    /// returns the picture's public link, or why it failed.
    pub(super) async fn upload_with_thumbnail(
        &self,
        filename: &str,
        bytes: Vec<u8>,
        format: crate::config::ImageFormat,
        thumbnail: Vec<u8>,
    ) -> Result<String, Failure> {
        let thumbnail_file = crate::contract::records::thumbnail_name(filename);
        if let Err(error) = self.upload(&thumbnail_file, thumbnail, "image/jpeg").await {
            tracing::warn!(%error, "the thumbnail was not uploaded; galleries show the picture itself");
        }
        self.upload(filename, bytes, format.content_type()).await
    }
}
