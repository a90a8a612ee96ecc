//! How a mail goes out: composed from the templates, the picture attached when asked,
//! limited per minute, handed to the SMTP server or the outbox.

use std::collections::HashMap;
use std::sync::Arc;

use super::compose::{Composer, ImageRef, InlineImage, Notice};
use crate::config::{Config, SmtpConfig};
use crate::failure::Failure;
use crate::limit::RateLimit;
use crate::smtp::{Delivery, Transport};
use crate::stored::StoredPictures;

/// Largest picture attached inline; a larger one is linked only.
const MAX_ATTACHMENT_BYTES: usize = 15 * 1024 * 1024;

/// Everything sending needs, made from `[smtp]` (a mistake there stops the mailer at start).
pub(super) struct Outgoing {
    pub(super) composer: Composer,
    pub(super) transport: Transport,
    limit: RateLimit,
    /// `[smtp.domains."<domain>"] max_per_minute`, by lowercase domain.
    domain_limits: HashMap<String, RateLimit>,
    pub(super) settings: Arc<SmtpConfig>,
    pictures: StoredPictures,
}

impl Outgoing {
    /// Checks templates, addresses and TLS files.
    pub(super) fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            composer: Composer::from_config(&config.smtp)?,
            transport: Transport::from_config(&config.smtp)?,
            limit: RateLimit::per_minute(config.smtp.max_per_minute),
            domain_limits: config
                .smtp
                .domains
                .iter()
                .map(|(domain, limits)| (domain.to_ascii_lowercase(), RateLimit::per_minute(limits.max_per_minute)))
                .collect(),
            settings: Arc::new(config.smtp.clone()),
            pictures: StoredPictures::new(config.server.images_dir.clone())?,
        })
    }

    /// Sends a notification: who got it, and who was refused for good.
    pub(super) async fn send(&self, notice: &Notice) -> Result<Delivery, Failure> {
        let image = match (&notice.image, self.settings.attach_image) {
            (Some(image), true) => self.load_image(image).await,
            _ => None,
        };
        let message = self
            .composer
            .compose(notice, image)
            .map_err(|e| Failure::permanent(format!("the mail could not be composed: {e:#}")))?;
        self.limit.acquire().await;
        self.within_domain_limits(&message).await;
        self.transport.send(message, &self.settings).await
    }

    /// Waits until every recipient domain with a limit may take another mail.
    async fn within_domain_limits(&self, message: &lettre::Message) {
        let mut domains: Vec<String> =
            message.envelope().to().iter().map(|address| address.domain().to_ascii_lowercase()).collect();
        domains.sort();
        domains.dedup();
        for domain in domains {
            if let Some(limit) = self.domain_limits.get(&domain) {
                limit.acquire().await;
            }
        }
    }

    /// Sends a mail composed elsewhere (an operator alert), within the same limit.
    pub(super) async fn send_message(&self, message: lettre::Message) -> Result<(), Failure> {
        self.limit.acquire().await;
        self.transport.send(message, &self.settings).await.and_then(Delivery::received).map(drop)
    }

    /// The stored picture, from this host or else from its link.
    async fn load_image(&self, image: &ImageRef) -> Option<InlineImage> {
        match self.pictures.read(&image.filename, Some(&image.url), MAX_ATTACHMENT_BYTES).await {
            Ok(bytes) => Some(InlineImage { bytes, content_type: image.content_type }),
            Err(error) => {
                tracing::warn!(url = %image.url, %error, "picture not attached; the mail links it");
                None
            }
        }
    }
}
