//! How a mail goes out: composed from the templates, the picture attached when asked,
//! limited per minute, handed to the SMTP server or the outbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::compose::{Composer, ImageRef, InlineImage, Notice};
use crate::config::{Config, SmtpConfig};
use crate::failure::Failure;
use crate::limit::RateLimit;
use crate::smtp::Transport;

/// Largest picture attached inline; a larger one is linked only.
const MAX_ATTACHMENT_BYTES: usize = 15 * 1024 * 1024;

/// Everything sending needs, made from `[smtp]` (a mistake there stops the mailer at start).
pub(super) struct Outgoing {
    pub(super) composer: Composer,
    pub(super) transport: Transport,
    limit: RateLimit,
    settings: Arc<SmtpConfig>,
    images_dir: PathBuf,
    http: reqwest::Client,
}

impl Outgoing {
    /// Checks templates, addresses and TLS files.
    pub(super) fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            composer: Composer::from_config(&config.smtp)?,
            transport: Transport::from_config(&config.smtp)?,
            limit: RateLimit::per_minute(config.smtp.max_per_minute),
            settings: Arc::new(config.smtp.clone()),
            images_dir: config.server.images_dir.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?,
        })
    }

    pub(super) async fn send(&self, notice: &Notice) -> Result<(), Failure> {
        let image = match (&notice.image, self.settings.attach_image) {
            (Some(image), true) => self.load_image(image).await,
            _ => None,
        };
        let message = self
            .composer
            .compose(notice, image)
            .map_err(|e| Failure::permanent(format!("the mail could not be composed: {e:#}")))?;
        self.limit.acquire().await;
        self.transport.send(message, &self.settings).await
    }

    /// The stored picture, from `images_dir` when this host has it, else from its URL.
    async fn load_image(&self, image: &ImageRef) -> Option<InlineImage> {
        let local = self.images_dir.join(&image.filename);
        let bytes = match tokio::fs::read(&local).await {
            Ok(bytes) => Some(bytes),
            Err(_) => self.download(&image.url).await,
        };
        match bytes {
            Some(bytes) if bytes.len() <= MAX_ATTACHMENT_BYTES => {
                Some(InlineImage { bytes, content_type: image.content_type })
            }
            _ => {
                tracing::warn!(url = %image.url, "picture not attached (unreadable or too large); the mail links it");
                None
            }
        }
    }

    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let response = self.http.get(url).send().await.ok()?.error_for_status().ok()?;
        if response.content_length().is_some_and(|n| n as usize > MAX_ATTACHMENT_BYTES) {
            return None;
        }
        Some(response.bytes().await.ok()?.to_vec())
    }
}
