//! Who a request may notify: its `notify_email` among `[smtp] allowed_recipients`, and its
//! own webhook under `[webhooks] allowed_urls`, never into this network.

use super::error::ApiError;
use crate::config::{AllowedRecipients, WEBHOOK_EVENTS, WebhooksConfig};
use crate::contract::events::RequestWebhook;
use crate::outbound::{self, Refusal};

/// A request may choose its recipient only among `[smtp] allowed_recipients`.
pub(super) fn check_recipient(address: &str, recipients: &AllowedRecipients) -> Result<(), ApiError> {
    if address.parse::<lettre::Address>().is_err() {
        return Err(ApiError::bad_request(format!("notify_email {address:?} is not an email address")));
    }
    if !recipients.allows(address) {
        return Err(ApiError::bad_request(format!(
            "notify_email {address:?} is not among this server's allowed recipients ([smtp] allowed_recipients)"
        )));
    }
    Ok(())
}

/// A request's own webhook: a URL under `[webhooks] allowed_urls`, and known events.
pub(super) fn check_webhook(callback: &RequestWebhook, webhooks: &WebhooksConfig) -> Result<(), ApiError> {
    if let Some(filter) = &callback.webhook_events_filter {
        let known =
            |event: &String| WEBHOOK_EVENTS.iter().any(|e| e == event || e.strip_prefix("image.") == Some(event));
        if let Some(unknown) = filter.iter().find(|event| !known(event)) {
            return Err(ApiError::bad_request(format!(
                "webhook_events_filter: {unknown:?} is not one of {} (or completed, failed)",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if callback.webhook.is_none() {
            return Err(ApiError::bad_request("webhook_events_filter needs a webhook"));
        }
    }
    let Some(url) = &callback.webhook else { return Ok(()) };
    if !webhooks.allowed_urls.iter().any(|prefix| url.starts_with(prefix.as_str())) {
        return Err(ApiError::bad_request(format!(
            "webhook {url:?} is not among this server's allowed webhook URLs ([webhooks] allowed_urls)"
        )));
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => Ok(()),
        _ => Err(ApiError::bad_request(format!("webhook {url:?} is not an http(s) URL"))),
    }
}

/// The webhook must not lead into this network (unless `[webhooks] allow_private`).
pub(super) async fn check_webhook_address(url: &str, webhooks: &WebhooksConfig) -> Result<(), ApiError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| ApiError::bad_request(format!("webhook {url:?} is not a URL")))?;
    match outbound::resolve(&parsed, webhooks.allow_private).await {
        Ok(_) => Ok(()),
        Err(Refusal::Private(address)) => Err(ApiError::bad_request(format!(
            "webhook {url:?} resolves to {address}, a private or local address; it is refused"
        ))),
        Err(refusal) => Err(ApiError::bad_request(format!("webhook {url:?}: {refusal}"))),
    }
}
