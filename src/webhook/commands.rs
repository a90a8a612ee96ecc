//! `huiying webhooks ...`: what an operator runs to see endpoints and deliveries, send
//! deliveries again, try an endpoint, and enable one that was disabled.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::Topology;
use super::deliver::send;
use super::endpoints::Endpoints;
use super::payload;
use crate::bus::Bus;
use crate::config::Config;
use crate::contract::webhooks::{Delivery, DeliveryState, EndpointState, WEBHOOK_DELIVER};
use crate::parts::Publish;

/// What the commands work on.
struct Connected {
    bus: Bus,
    topology: Topology,
    endpoints: Endpoints,
}

async fn connect(config: &Config) -> anyhow::Result<Connected> {
    let endpoints = Endpoints::from_config(&config.webhooks)?;
    let bus = Bus::connect(&config.nats, "huiying-webhooks", &CancellationToken::new()).await?;
    let topology = Topology::ensure(&bus, &config.webhooks).await?;
    Ok(Connected { bus, topology, endpoints })
}

/// A time given on the command line: RFC 3339 or a UTC day (`2026-12-01`).
pub fn parse_since(text: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let day = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| anyhow::anyhow!("{text:?} is not a time like 2026-12-01 or 2026-12-01T08:00:00Z"))?;
    Ok(day.midnight().assume_utc())
}

/// One line per configured endpoint: name, state, events, URL.
pub async fn list(config: &Config) -> anyhow::Result<Vec<String>> {
    let connected = connect(config).await?;
    let mut lines = Vec::new();
    for endpoint in connected.endpoints.configured() {
        let state = connected.topology.states.get(&endpoint.id).await?.unwrap_or_default();
        let status = match (&state, endpoint.enabled) {
            (_, false) => "off in config".to_string(),
            (EndpointState { disabled: true, reason, .. }, _) => {
                format!("disabled: {}", reason.as_deref().unwrap_or(""))
            }
            (EndpointState { failing_since: Some(since), .. }, _) => format!("failing since {since}"),
            _ => "enabled".into(),
        };
        let url = crate::redact::url(&endpoint.url);
        lines.push(format!("{}  {url}  [{}]  {status}", endpoint.id, endpoint.events.join(",")));
    }
    Ok(lines)
}

/// Deliveries, newest last; only failed ones with `failed`, only those touched since `since`.
pub async fn deliveries(config: &Config, failed: bool, since: Option<OffsetDateTime>) -> anyhow::Result<Vec<String>> {
    let connected = connect(config).await?;
    Ok(find(&connected, failed, since).await?.iter().map(describe).collect())
}

async fn find(connected: &Connected, failed: bool, since: Option<OffsetDateTime>) -> anyhow::Result<Vec<Delivery>> {
    let log = &connected.topology.deliveries;
    let mut found = Vec::new();
    for key in log.keys().await? {
        match log.get(&key).await {
            Ok(Some(delivery)) => found.push(delivery),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "a delivery log entry is unreadable"),
        }
    }
    found.retain(|d| (!failed || d.state == DeliveryState::Failed) && since.is_none_or(|since| d.updated_at >= since));
    found.sort_by_key(|d| d.updated_at);
    Ok(found)
}

/// `<id>  <state>  <endpoint>  <event>  job <id>  attempts N  <last status or error>`.
pub fn describe(delivery: &Delivery) -> String {
    let last = delivery.attempts.last().map_or(String::new(), |a| match (a.status, &a.error) {
        (_, Some(error)) => error.clone(),
        (Some(status), None) => status.to_string(),
        (None, None) => String::new(),
    });
    format!(
        "{}  {:<9}  {}  {}  job {}  attempts {}  {last}",
        delivery.task.id,
        format!("{:?}", delivery.state).to_lowercase(),
        delivery.task.endpoint,
        delivery.task.event,
        delivery.task.job_id,
        delivery.attempts.len()
    )
}

/// Sends these deliveries again (same body, same `webhook-id`); one line per delivery.
pub async fn replay(config: &Config, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let connected = connect(config).await?;
    let mut chosen = Vec::new();
    for id in ids {
        match connected.topology.deliveries.get(id).await? {
            Some(delivery) => chosen.push(delivery),
            None => anyhow::bail!("no delivery {id}"),
        }
    }
    queue_again(&connected, chosen).await
}

/// Sends every failed delivery touched since `since` again.
pub async fn replay_failed(config: &Config, since: OffsetDateTime) -> anyhow::Result<Vec<String>> {
    let connected = connect(config).await?;
    let chosen = find(&connected, true, Some(since)).await?;
    queue_again(&connected, chosen).await
}

async fn queue_again(connected: &Connected, deliveries: Vec<Delivery>) -> anyhow::Result<Vec<String>> {
    let publisher = connected.bus.publisher();
    let mut lines = Vec::new();
    for delivery in deliveries {
        let task = crate::contract::webhooks::WebhookTask { replay: true, ..delivery.task };
        // A message id of its own: the first task's id would be dropped as a duplicate.
        let message_id = format!("replay:{}:{}", task.id, OffsetDateTime::now_utc().unix_timestamp_nanos());
        let payload = serde_json::to_vec(&task).expect("tasks serialize");
        publisher.publish(WEBHOOK_DELIVER, message_id, payload.into()).await?;
        lines.push(format!("{}: queued again for {}", task.id, task.endpoint));
    }
    if lines.is_empty() {
        lines.push("nothing to replay".into());
    }
    Ok(lines)
}

/// Sends a signed `webhook.test` event to the endpoint now and says what it answered.
pub async fn test(config: &Config, endpoint: &str) -> anyhow::Result<String> {
    let endpoints = Endpoints::from_config(&config.webhooks)?;
    let Some(endpoint) = endpoints.find(endpoint) else {
        anyhow::bail!("no endpoint {endpoint:?} in [[webhooks.endpoints]]")
    };
    let now = OffsetDateTime::now_utc();
    let event = serde_json::json!({"message": "a test from huiying webhooks test"});
    let body = payload::body("webhook.test", &event, now);
    let id = format!("msg_test_{}", now.unix_timestamp_nanos());
    let sent = send(endpoint, &id, &body, config.webhooks.timeout, config.webhooks.allow_private).await;
    let took = Duration::from_millis(sent.latency.as_millis() as u64);
    match (sent.succeeded(), sent.status, &sent.error) {
        (true, Some(status), _) => Ok(format!("{}: answered {status} in {took:?}", endpoint.id)),
        (_, _, Some(error)) => anyhow::bail!("{}: {error}", endpoint.id),
        (_, status, _) => {
            anyhow::bail!("{}: answered {} in {took:?}: {}", endpoint.id, status.unwrap_or(0), sent.answer)
        }
    }
}

/// Enables an endpoint that was disabled (410, or failing too long).
pub async fn enable(config: &Config, endpoint: &str) -> anyhow::Result<String> {
    let connected = connect(config).await?;
    let id = connected.endpoints.find(endpoint).map(|e| e.id.clone()).unwrap_or_else(|| endpoint.to_string());
    connected.topology.states.put(&id, &EndpointState::default()).await?;
    Ok(format!("{id}: enabled"))
}
