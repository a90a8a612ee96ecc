//! The R2 / S3 bucket's client, as the store (uploads) and ingest (links to a private
//! bucket's pictures) use it: one way to reach the bucket from `[cloudflare_r2]`.
//!
//! A bucket without `public_url` is private: its pictures' links point at ingest
//! (`/r2/images/<file>`), which answers each with a `302` to a presigned URL valid for
//! [`PRESIGNED_FOR`], so a link in a mail outlives S3's 7-day presign cap and no presigned
//! URL is ever stored.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::signer::Signer;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::config::CloudflareR2Config;

/// Longest an upload may take, retries included (object_store's default retries last up
/// to 3 minutes; a copy that is a bonus should not hold the store up that long).
pub const UPLOAD_BUDGET: Duration = Duration::from_secs(30);

/// How long a presigned URL to a private bucket's picture is valid.
pub const PRESIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// Where a private bucket's objects are linked, under ingest: `/r2/images/<file>`.
pub const PRIVATE_BUCKET_PATH: &str = "/r2";

/// The bucket's client; `None` when no bucket is configured.
pub fn client(r2: &CloudflareR2Config) -> anyhow::Result<Option<AmazonS3>> {
    if !r2.is_on() {
        return Ok(None);
    }
    let endpoint = match (r2.endpoint.as_str(), r2.account_id.as_str()) {
        ("", "") => {
            anyhow::bail!(
                "bad configuration: cloudflare_r2.endpoint or cloudflare_r2.account_id must be set with a bucket"
            )
        }
        ("", account) => format!("https://{account}.r2.cloudflarestorage.com"),
        (endpoint, _) => endpoint.trim_end_matches('/').to_string(),
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_region("auto")
        .with_bucket_name(&r2.bucket)
        .with_access_key_id(&r2.access_key_id)
        .with_secret_access_key(r2.access_key_secret.expose())
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(endpoint.starts_with("http://"))
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(20)),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(4),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: UPLOAD_BUDGET,
        })
        .build()
        .map_err(|e| anyhow::anyhow!("bad configuration: [cloudflare_r2]: {e}"))?;
    Ok(Some(store))
}

/// Links to a private bucket's pictures, made fresh at each request.
pub struct PrivateBucket {
    store: AmazonS3,
}

impl PrivateBucket {
    /// `None` unless a bucket is configured without a public domain.
    pub fn from_config(r2: &CloudflareR2Config) -> anyhow::Result<Option<Self>> {
        if !r2.public_url.trim().is_empty() {
            return Ok(None);
        }
        Ok(client(r2)?.map(|store| Self { store }))
    }

    /// A URL that fetches `images/<file>` for [`PRESIGNED_FOR`].
    pub async fn presigned(&self, file: &str) -> Result<String, object_store::Error> {
        let path = object_store::path::Path::from(format!("images/{file}"));
        Ok(self.store.signed_url(reqwest::Method::GET, &path, PRESIGNED_FOR).await?.to_string())
    }
}
