//! `[webhooks]`: signed HTTP callbacks for finished jobs (the Standard Webhooks format).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{Secret, one_or_many, seconds, secrets_one_or_many};

/// The events an endpoint may ask for.
pub const WEBHOOK_EVENTS: [&str; 2] = ["image.completed", "image.failed"];
/// What a configured endpoint may also take when it names it in `events`: the operator's
/// alerts (never sent to a request's own webhook, nor by default).
pub const ALERT_EVENTS: [&str; 1] = ["budget.alert"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Seconds one delivery attempt may take.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// URL prefixes a request's own `webhook` must start with. Empty: requests cannot
    /// name a webhook.
    #[serde(deserialize_with = "one_or_many")]
    pub allowed_urls: Vec<String>,
    /// Allow webhook URLs that resolve to loopback, private or link-local addresses (for a
    /// receiver on your own network). Off: such URLs are refused when registered and sent.
    pub allow_private: bool,
    /// Seconds an endpoint may keep failing before it is disabled and the operator
    /// (`[smtp] to`) is mailed.
    #[serde(with = "seconds")]
    pub disable_after: Duration,
    /// Signs the webhooks requests name themselves (`whsec_...`; several, comma-separated,
    /// while rotating: each signs).
    #[serde(deserialize_with = "secrets_one_or_many")]
    pub request_secret: Vec<Secret>,
    /// Seconds to wait before each retry; after the last, the delivery has failed.
    pub retry_schedule: Vec<u64>,
    /// Days the delivery log keeps each delivery.
    pub log_retention_days: u64,
    /// Endpoints that receive every job's events: `[[webhooks.endpoints]]`.
    pub endpoints: Vec<EndpointConfig>,
}

/// One configured receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// A short name for the CLI and the logs; empty: derived from the URL.
    #[serde(default)]
    pub name: String,
    pub url: String,
    /// `whsec_...`; several while rotating (each signs). Prefer `secret_env`.
    #[serde(default, deserialize_with = "secrets_one_or_many")]
    pub secret: Vec<Secret>,
    /// The environment variable holding the secret(s), so none is written in the file.
    #[serde(default)]
    pub secret_env: String,
    /// Which events it receives: `image.completed`, `image.failed` (the default: both), and
    /// `budget.alert` when named.
    #[serde(default = "all_events", deserialize_with = "one_or_many")]
    pub events: Vec<String>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn all_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect()
}

fn enabled() -> bool {
    true
}

impl WebhooksConfig {
    /// The rules and endpoints without what signs or authenticates a delivery (secrets,
    /// extra headers): what ingest's routes need to check a request's webhook and show
    /// the endpoints.
    pub fn without_secrets(&self) -> Self {
        let endpoints = self
            .endpoints
            .iter()
            .map(|endpoint| EndpointConfig { secret: Vec::new(), headers: BTreeMap::new(), ..endpoint.clone() })
            .collect();
        Self { request_secret: Vec::new(), endpoints, ..self.clone() }
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            allowed_urls: Vec::new(),
            allow_private: false,
            disable_after: Duration::from_secs(3 * 24 * 3600),
            request_secret: Vec::new(),
            // About a day in all: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
            retry_schedule: vec![5, 300, 1800, 7200, 18000, 36000, 36000],
            log_retention_days: 30,
            endpoints: Vec::new(),
        }
    }
}

impl EndpointConfig {
    /// Its name, or one made from its URL.
    pub fn id(&self) -> String {
        if self.name.is_empty() { endpoint_id_for(&self.url) } else { self.name.clone() }
    }

    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// The id of an endpoint known only by its URL (a request's own webhook, an unnamed one).
pub fn endpoint_id_for(url: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0004);
    format!("url-{}", &uuid::Uuid::new_v5(&NAMESPACE, url.as_bytes()).simple().to_string()[..12])
}

/// A signing secret's key: the base64 after `whsec_` (the prefix is optional).
pub fn secret_key(secret: &Secret) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = secret.expose();
    base64::engine::general_purpose::STANDARD.decode(text.strip_prefix("whsec_").unwrap_or(text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_sees_the_rules_and_endpoints_but_no_secret_or_header() {
        let endpoint = EndpointConfig {
            name: "orders".into(),
            url: "https://example.com/hooks".into(),
            secret: vec![Secret::new("whsec_c2VjcmV0")],
            secret_env: "ORDERS_SECRET".into(),
            events: all_events(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer t0ken".into())]),
            enabled: true,
        };
        let config = WebhooksConfig {
            request_secret: vec![Secret::new("whsec_cmVxdWVzdA==")],
            allowed_urls: vec!["https://example.com/".into()],
            endpoints: vec![endpoint],
            ..WebhooksConfig::default()
        };
        let seen = config.without_secrets();
        let shown = format!("{:?} {}", seen, toml::to_string(&seen).unwrap());
        for secret in ["whsec_c2VjcmV0", "whsec_cmVxdWVzdA==", "t0ken"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!((seen.allowed_urls, seen.endpoints[0].id()), (config.allowed_urls.clone(), "orders".to_string()));
    }
}
