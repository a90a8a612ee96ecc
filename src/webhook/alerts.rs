//! Telling the operator (`[smtp] to`) that an endpoint was disabled.

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

use super::endpoints::Endpoint;
use crate::config::Config;
use crate::smtp::{Delivery, Transport};

pub(crate) struct Alerts {
    transport: Transport,
    smtp: crate::config::SmtpConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Alerts {
    pub(crate) fn from_config(config: &Config) -> anyhow::Result<Self> {
        let smtp = &config.smtp;
        let from =
            smtp.from.parse().unwrap_or_else(|_| "huiying <huiying@localhost>".parse().expect("a valid address"));
        let to = smtp.to.iter().filter_map(|address| address.parse().ok()).collect();
        Ok(Self { transport: Transport::from_config(smtp)?, smtp: smtp.clone(), from, to })
    }

    /// A plain mail naming the endpoint and why; only logged when it cannot be sent.
    pub(crate) async fn endpoint_disabled(&self, endpoint: &Endpoint, why: &str) {
        if self.to.is_empty() {
            tracing::warn!(endpoint = %endpoint.id, "no [smtp] to: the operator is not mailed about the disabled endpoint");
            return;
        }
        let text = format!(
            "绘影 huiying disabled the webhook endpoint {id} ({url}): {why}.\n\n\
             No more deliveries go there until you enable it again: huiying webhooks enable {id}\n\
             Its deliveries: huiying webhooks deliveries --failed\n",
            id = endpoint.id,
            url = crate::redact::url(&endpoint.url),
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(format!("huiying: webhook endpoint {} disabled", endpoint.id));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = match builder.header(ContentType::TEXT_PLAIN).body(text) {
            Ok(message) => message,
            Err(error) => return tracing::warn!(%error, "the operator alert could not be composed"),
        };
        if let Err(error) = self.transport.send(message, &self.smtp).await.and_then(Delivery::received) {
            tracing::warn!(%error, endpoint = %endpoint.id, "the operator alert was not sent");
        }
    }
}
