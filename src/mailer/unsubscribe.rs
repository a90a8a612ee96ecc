//! One-click unsubscribe (RFC 8058, RFC 2369): every notification names a link that turns
//! mail to its recipients off with one POST, which Gmail, Outlook and Yahoo show as an
//! "unsubscribe" button. The link's token is signed ([`crate::links`]); ingest answers it.

use std::sync::Arc;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::links::{LinkKeys, PictureLinks};
use crate::parts::JsonBucket;
use crate::suppression::Suppressions;

/// What the mailer shares with ingest's unsubscribe page: the suppression list, and the
/// link keys that sign unsubscribe links.
pub struct MailLists {
    pub suppressed: Suppressions,
    pub unsubscribe: Unsubscribe,
    /// With private pictures, what signs the picture links in mails.
    pub picture_links: Option<PictureLinks>,
}

impl MailLists {
    pub async fn open(bus: &Bus, config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let suppressed = Suppressions::new(JsonBucket::new(Arc::new(bus.suppressed_bucket(shutdown).await?)));
        let keys = bus.link_keys(&config.server.link_keys, shutdown).await?;
        let mailto = Some(config.smtp.unsubscribe_mailto.trim().to_string()).filter(|m| !m.is_empty());
        let base_url = config.server.public_base_url();
        let picture_links = (!config.server.public_pictures).then(|| PictureLinks {
            base_url: base_url.clone(),
            keys: keys.clone(),
            days: config.server.link_days,
        });
        Ok(Self { suppressed, unsubscribe: Unsubscribe { base_url, keys, mailto }, picture_links })
    }
}

/// Where unsubscribe links point, and how they are signed.
#[derive(Clone)]
pub struct Unsubscribe {
    /// `[server] public_url` (or `http://localhost:<port>`).
    pub base_url: String,
    pub keys: LinkKeys,
    /// `[smtp] unsubscribe_mailto`: an address that also takes unsubscribe requests.
    pub mailto: Option<String>,
}

impl Unsubscribe {
    /// The link that turns mail to `recipients` off.
    pub fn link(&self, recipients: &[String]) -> String {
        format!("{}/unsubscribe/{}", self.base_url, self.keys.unsubscribe_token(recipients))
    }

    /// `List-Unsubscribe` for a mail to `recipients`.
    pub(super) fn header(&self, recipients: &[String]) -> ListUnsubscribe {
        let mut value = format!("<{}>", self.link(recipients));
        if let Some(mailto) = &self.mailto {
            value.push_str(&format!(", <mailto:{mailto}?subject=unsubscribe>"));
        }
        ListUnsubscribe(value)
    }
}

/// `List-Unsubscribe: <https://...>, <mailto:...>`.
#[derive(Debug, Clone)]
pub(super) struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.into()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`: the link takes a POST, no page.
#[derive(Debug, Clone)]
pub(super) struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_signed_link_and_the_mailto_address_when_one_is_set() {
        let keys = LinkKeys::new(&[b"k"]);
        let mut unsubscribe = Unsubscribe { base_url: "https://pics.example.com".into(), keys, mailto: None };
        let readers = vec!["reader@qq.com".to_string()];
        let link = unsubscribe.link(&readers);
        assert!(link.starts_with("https://pics.example.com/unsubscribe/"));
        assert_eq!(unsubscribe.header(&readers).0, format!("<{link}>"));
        unsubscribe.mailto = Some("unsubscribe@example.com".into());
        assert_eq!(
            unsubscribe.header(&readers).0,
            format!("<{link}>, <mailto:unsubscribe@example.com?subject=unsubscribe>")
        );
    }
}
