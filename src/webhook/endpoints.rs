//! The endpoints deliveries go to, with their signing keys (never in a task or the log).

use std::sync::Arc;

use anyhow::bail;

use crate::config::{WebhooksConfig, secret_key};
use crate::contract::webhooks::{EndpointKind, WebhookTask};
use crate::outbound::{self, Refusal};

/// A receiver and how to sign for it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub kind: EndpointKind,
    /// One key per secret; several while a secret is rotated (each signs).
    pub(crate) keys: Vec<Vec<u8>>,
    pub events: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub enabled: bool,
}

/// The configured endpoints, and the key of requests' own webhooks.
#[derive(Clone)]
pub struct Endpoints {
    configured: Arc<Vec<Endpoint>>,
    request_keys: Arc<Vec<Vec<u8>>>,
}

impl Endpoints {
    pub fn from_config(settings: &WebhooksConfig) -> anyhow::Result<Self> {
        let keys = |secrets: &[crate::config::Secret]| secrets.iter().filter_map(secret_key).collect::<Vec<_>>();
        let configured = settings
            .endpoints
            .iter()
            .map(|endpoint| Endpoint {
                id: endpoint.id(),
                url: endpoint.url.clone(),
                kind: EndpointKind::Configured,
                keys: keys(&endpoint.secret),
                events: endpoint.events.clone(),
                headers: endpoint.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                enabled: endpoint.enabled,
            })
            .collect();
        Ok(Self { configured: Arc::new(configured), request_keys: Arc::new(keys(&settings.request_secret)) })
    }

    /// Whether requests may have webhooks of their own (their signing secret is set).
    pub fn takes_request_webhooks(&self) -> bool {
        !self.request_keys.is_empty()
    }

    pub fn configured(&self) -> &[Endpoint] {
        &self.configured
    }

    /// The endpoint a task goes to: a configured one by id (`None` once removed from the
    /// configuration), or a request's own.
    pub fn for_task(&self, task: &WebhookTask) -> Option<Endpoint> {
        match task.kind {
            EndpointKind::Configured => self.configured.iter().find(|e| e.id == task.endpoint).cloned(),
            EndpointKind::Request => Some(Endpoint {
                id: task.endpoint.clone(),
                url: task.url.clone(),
                kind: EndpointKind::Request,
                keys: self.request_keys.to_vec(),
                events: Vec::new(),
                headers: Vec::new(),
                enabled: true,
            }),
        }
    }

    /// The configured endpoint named `id` (or with that URL).
    pub fn find(&self, id: &str) -> Option<&Endpoint> {
        self.configured.iter().find(|e| e.id == id || e.url == id)
    }

    /// Refuses to start with an endpoint whose address is private or local (unless
    /// allowed). One that cannot be resolved now is only warned about: DNS may come back.
    pub async fn check_addresses(&self, allow_private: bool) -> anyhow::Result<()> {
        for endpoint in self.configured.iter().filter(|e| e.enabled) {
            let Ok(url) = reqwest::Url::parse(&endpoint.url) else {
                bail!("webhook endpoint {}: bad URL", endpoint.id)
            };
            match outbound::resolve(&url, allow_private).await {
                Ok(_) => {}
                Err(Refusal::Private(address)) => bail!(
                    "bad configuration: webhook endpoint {} ({}) resolves to {address}, a private or local address; \
                     set [webhooks] allow_private = true to allow it",
                    endpoint.id,
                    crate::redact::url(&endpoint.url)
                ),
                Err(refusal) => {
                    tracing::warn!(endpoint = %endpoint.id, %refusal, "webhook endpoint not resolvable now")
                }
            }
        }
        Ok(())
    }
}
