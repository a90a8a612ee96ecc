//! Sending each delivery task: signed, guarded, logged, retried on its schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::alerts::Alerts;
use super::endpoints::{Endpoint, Endpoints};
use super::payload;
use crate::config::WebhooksConfig;
use crate::contract::webhooks::{Attempt, Delivery, DeliveryState, EndpointState, WebhookTask};
use crate::failure::{Failure, RetryPolicy};
use crate::model_api::{error_chain, retry_after};
use crate::outbound::{self, Refusal};
use crate::parts::JsonBucket;
use crate::redact;
use crate::worker::{Received, Stage};

/// The schedule is the stage's: each retry names its own wait (`[webhooks]
/// retry_schedule`, ±20 %, never sooner than the receiver's `Retry-After`).
pub(crate) const POLICY: RetryPolicy =
    RetryPolicy { base: Duration::ZERO, cap: Duration::ZERO, jitter: 0.0, max_attempts: u32::MAX };

/// How much of an answer the log keeps.
const LOGGED_ANSWER_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Deliverer {
    endpoints: Endpoints,
    deliveries: JsonBucket<Delivery>,
    states: JsonBucket<EndpointState>,
    alerts: Arc<Alerts>,
    timeout: Duration,
    allow_private: bool,
    schedule: Arc<Vec<Duration>>,
    disable_after: Duration,
}

/// What one attempt came to.
pub(crate) struct Sent {
    pub(crate) status: Option<u16>,
    pub(crate) latency: Duration,
    pub(crate) answer: String,
    pub(crate) error: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    /// The address was refused (private or local): no retry can help.
    pub(crate) refused: bool,
}

impl Sent {
    pub(crate) fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn logged(&self, number: u32) -> Attempt {
        Attempt {
            number,
            at: OffsetDateTime::now_utc(),
            status: self.status,
            latency_ms: self.latency.as_millis() as u64,
            response: self.answer.clone(),
            error: self.error.clone(),
        }
    }

    fn reason(&self) -> String {
        match (&self.error, self.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("the endpoint answered {status}"),
            (None, None) => "no answer".into(),
        }
    }
}

impl Deliverer {
    pub(crate) fn new(
        settings: &WebhooksConfig,
        endpoints: Endpoints,
        deliveries: JsonBucket<Delivery>,
        states: JsonBucket<EndpointState>,
        alerts: Alerts,
    ) -> Self {
        Self {
            endpoints,
            deliveries,
            states,
            alerts: Arc::new(alerts),
            timeout: settings.timeout,
            allow_private: settings.allow_private,
            schedule: Arc::new(settings.retry_schedule.iter().map(|s| Duration::from_secs(*s)).collect()),
            disable_after: settings.disable_after,
        }
    }
}

impl Stage for Deliverer {
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let task: WebhookTask = received.decode()?;
        let now = OffsetDateTime::now_utc();
        let mut delivery = match self.deliveries.get(&task.id).await? {
            // Done before (a redelivery): nothing more unless replayed.
            Some(done) if done.state != DeliveryState::Retrying && !task.replay => return Ok(()),
            Some(mut known) => {
                known.task = task.clone();
                known
            }
            None => {
                Delivery { task: task.clone(), state: DeliveryState::Retrying, attempts: Vec::new(), updated_at: now }
            }
        };
        let number = delivery.attempts.len() as u32 + 1;
        let Some(endpoint) = self.endpoints.for_task(&task) else {
            return self.give_up(&mut delivery, number, "the endpoint is no longer configured").await;
        };
        let state = self.states.get(&endpoint.id).await?.unwrap_or_default();
        if state.disabled {
            let why = format!("the endpoint is disabled ({})", state.reason.as_deref().unwrap_or("by the operator"));
            return self.give_up(&mut delivery, number, &why).await;
        }

        let sent = send(&endpoint, &task.id, &task.body, self.timeout, self.allow_private).await;
        let result = if sent.succeeded() { "delivered" } else { "failed_attempt" };
        metrics::counter!("huiying_webhook_deliveries_total", "result" => result).increment(1);
        delivery.attempts.push(sent.logged(number));
        delivery.updated_at = OffsetDateTime::now_utc();
        if sent.succeeded() {
            delivery.state = DeliveryState::Succeeded;
            self.deliveries.put(&task.id, &delivery).await?;
            if state.failing_since.is_some() {
                self.states.put(&endpoint.id, &EndpointState::default()).await?;
            }
            return Ok(());
        }
        tracing::warn!(endpoint = %endpoint.id, delivery = %task.id, attempt = received.attempt, reason = %sent.reason(), "webhook not delivered");
        if sent.status == Some(410) {
            self.disable(&endpoint, state, "it answered 410 Gone").await?;
            delivery.state = DeliveryState::Failed;
            self.deliveries.put(&task.id, &delivery).await?;
            return Ok(());
        }
        let failing_since = state.failing_since.unwrap_or(now);
        if (now - failing_since).unsigned_abs() >= self.disable_after {
            let why = format!("it has failed since {failing_since}");
            self.disable(&endpoint, state, &why).await?;
            delivery.state = DeliveryState::Failed;
        } else {
            if state.failing_since.is_none() {
                self.states.put(&endpoint.id, &EndpointState { failing_since: Some(now), ..state }).await?;
            }
            let wait = self.schedule.get(received.attempt as usize - 1).filter(|_| !sent.refused);
            delivery.state = if wait.is_some() { DeliveryState::Retrying } else { DeliveryState::Failed };
            if let Some(wait) = wait {
                self.deliveries.put(&task.id, &delivery).await?;
                let wait = wait.mul_f64(0.8 + 0.4 * fastrand::f64()).max(sent.retry_after.unwrap_or_default());
                return Err(Failure::transient(sent.reason()).after(Some(wait)));
            }
        }
        self.deliveries.put(&task.id, &delivery).await?;
        Ok(())
    }
}

impl Deliverer {
    /// Ends the delivery without sending, saying why in the log.
    async fn give_up(&self, delivery: &mut Delivery, number: u32, why: &str) -> Result<(), Failure> {
        delivery.state = DeliveryState::Failed;
        delivery.updated_at = OffsetDateTime::now_utc();
        delivery.attempts.push(Attempt {
            number,
            at: delivery.updated_at,
            status: None,
            latency_ms: 0,
            response: String::new(),
            error: Some(why.into()),
        });
        self.deliveries.put(&delivery.task.id, delivery).await?;
        Ok(())
    }

    /// Disables the endpoint and tells the operator, once.
    async fn disable(&self, endpoint: &Endpoint, state: EndpointState, why: &str) -> Result<(), Failure> {
        let disabled = EndpointState { disabled: true, reason: Some(why.into()), ..state };
        self.states.put(&endpoint.id, &disabled).await?;
        tracing::error!(endpoint = %endpoint.id, url = %redact::url(&endpoint.url), why, "webhook endpoint disabled");
        self.alerts.endpoint_disabled(endpoint, why).await;
        Ok(())
    }
}

/// One signed POST of `body` to `endpoint`, to an address checked and pinned, following
/// no redirect.
pub(crate) async fn send(endpoint: &Endpoint, id: &str, body: &str, timeout: Duration, allow_private: bool) -> Sent {
    let started = Instant::now();
    let failed = |error: String, refused: bool| Sent {
        status: None,
        latency: started.elapsed(),
        answer: String::new(),
        error: Some(error),
        retry_after: None,
        refused,
    };
    let Ok(url) = reqwest::Url::parse(&endpoint.url) else { return failed("not a URL".into(), true) };
    let addresses = match outbound::resolve(&url, allow_private).await {
        Ok(addresses) => addresses,
        Err(refusal @ Refusal::Private(_)) => return failed(format!("refused: {refusal}"), true),
        Err(refusal) => return failed(refusal.to_string(), false),
    };
    let host = url.host_str().unwrap_or_default();
    let client = match outbound::pinned_client(host, &addresses, timeout) {
        Ok(client) => client,
        Err(e) => return failed(format!("cannot prepare the request: {e}"), true),
    };
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("huiying-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", payload::signature(&endpoint.keys, id, timestamp, body));
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    let mut response = match request.body(body.to_string()).send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return failed(format!("no answer within {} s", timeout.as_secs()), false),
        // reqwest names the URL in its errors: a robot's URL is its credential.
        Err(e) => return failed(error_chain(&e.without_url()), false),
    };
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let mut answer = Vec::new();
    while answer.len() < LOGGED_ANSWER_BYTES {
        match tokio::time::timeout(timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => answer.extend_from_slice(&chunk),
            _ => break,
        }
    }
    answer.truncate(LOGGED_ANSWER_BYTES);
    Sent {
        status: Some(status),
        latency: started.elapsed(),
        answer: String::from_utf8_lossy(&answer).into_owned(),
        error: None,
        retry_after: wait,
        refused: false,
    }
}
