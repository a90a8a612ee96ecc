//! One delivery task per event and endpoint that wants it.

use std::sync::Arc;

use super::endpoints::Endpoints;
use super::payload;
use crate::config::endpoint_id_for;
use crate::contract::budget::{BUDGET_ALERT, BudgetAlert};
use crate::contract::events::{
    EVENT_VERSION, IMAGE_COMPLETED, IMAGE_FAILED, ImageCompleted, ImageFailed, RequestWebhook,
};
use crate::contract::webhooks::{EndpointKind, WebhookTask};
use crate::failure::Failure;
use crate::links::PictureLinks;
use crate::parts::{self, JobBoard, Publish};
use crate::worker::{Received, Stage};

#[derive(Clone)]
pub struct FanOut {
    publisher: Arc<dyn Publish>,
    endpoints: Endpoints,
    /// Job states, beside which ingest keeps a request's own webhook (not in its events).
    jobs: JobBoard,
    /// Signs the picture links of payloads when pictures are private.
    picture_links: Option<PictureLinks>,
}

impl FanOut {
    pub fn new(publisher: Arc<dyn Publish>, endpoints: Endpoints, jobs: JobBoard) -> Self {
        Self { publisher, endpoints, jobs, picture_links: None }
    }

    /// Payloads' picture links signed by `links` (private pictures), to open until
    /// `[server] link_days` after the event: the same body for a redelivered event.
    pub fn signing(mut self, links: Option<PictureLinks>) -> Self {
        self.picture_links = links;
        self
    }
}

impl Stage for FanOut {
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let (job_id, owner, callback, event, at) = match received.subject.as_str() {
            IMAGE_COMPLETED => {
                let event: ImageCompleted = received.decode()?;
                let owner = event.owner.clone();
                (event.id.to_string(), owner, event.callback.clone(), serde_json::to_value(&event), event.completed_at)
            }
            IMAGE_FAILED => {
                let event: ImageFailed = received.decode()?;
                let owner = event.owner.clone();
                (event.id.to_string(), owner, event.callback.clone(), serde_json::to_value(&event), event.failed_at)
            }
            // The operator's: to configured endpoints that name it, no request's webhook.
            BUDGET_ALERT => {
                let alert: BudgetAlert = received.decode()?;
                let event = serde_json::to_value(&alert);
                (alert.id.clone(), None, RequestWebhook::default(), event, alert.at)
            }
            other => return Err(Failure::permanent(format!("the webhook service does not handle {other}"))),
        };
        let mut event = event.expect("events serialize");
        if let Some(links) = &self.picture_links {
            links.sign_json(&mut event, at);
        }
        // A request's own webhook is in the event when it was published straight to NATS,
        // else beside the job's state, where ingest keeps it (only when requests may have one).
        let callback = match callback.webhook {
            None if received.subject != BUDGET_ALERT && self.endpoints.takes_request_webhooks() => {
                self.jobs.targets(&job_id).await?.map(|targets| targets.callback).unwrap_or_default()
            }
            _ => callback,
        };
        let subject = received.subject.as_str();
        let body = payload::body(subject, &event, at);
        for task in self.tasks(subject, &job_id, owner.as_deref(), &callback, &body) {
            // Its id is its Nats-Msg-Id: a redelivered event makes no second task.
            parts::publish(&*self.publisher, &task).await?;
        }
        Ok(())
    }
}

impl FanOut {
    /// A task for each enabled configured endpoint that wants `subject`, and for the
    /// request's own webhook when its filter lets the event through.
    fn tasks(
        &self,
        subject: &str,
        job_id: &str,
        owner: Option<&str>,
        callback: &RequestWebhook,
        body: &str,
    ) -> Vec<WebhookTask> {
        let task = |endpoint: String, kind, url: &str| WebhookTask {
            version: EVENT_VERSION,
            id: WebhookTask::delivery_id(subject, job_id, &endpoint),
            job_id: job_id.into(),
            endpoint,
            kind,
            url: url.into(),
            event: subject.into(),
            body: body.into(),
            owner: owner.map(String::from),
            replay: false,
        };
        let mut tasks: Vec<WebhookTask> = self
            .endpoints
            .configured()
            .iter()
            .filter(|endpoint| endpoint.enabled && endpoint.events.iter().any(|e| e == subject))
            .map(|endpoint| task(endpoint.id.clone(), EndpointKind::Configured, &endpoint.url))
            .collect();
        if let Some(url) = callback.webhook.as_deref().filter(|_| callback.wants(subject)) {
            tasks.push(task(endpoint_id_for(url), EndpointKind::Request, url));
        }
        tasks
    }
}
