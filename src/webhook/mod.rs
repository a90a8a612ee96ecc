//! The webhook service: `image.completed` / `image.failed` → signed HTTP POSTs to every
//! endpoint that asked for them (the Standard Webhooks format).
//!
//! Two stages, each on the one subscriber loop:
//! - [`fan_out::FanOut`] reads the pipeline's events and publishes one delivery task per
//!   event and endpoint on `huiying.webhooks.deliver` (stream `HUIYING_WEBHOOKS`), so that
//!   each endpoint is retried on its own schedule and a slow one holds up nobody else;
//! - [`deliver::Deliverer`] sends each task, logs every attempt, retries on
//!   `[webhooks] retry_schedule`, and disables an endpoint that answers 410 or fails for
//!   `[webhooks] disable_after` (mailing the operator).

mod alerts;
pub mod commands;
mod deliver;
mod endpoints;
mod fan_out;
mod payload;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Bus, ConsumerSpec, SetupError};
use crate::config::{Config, WebhooksConfig};
use crate::contract::budget::BUDGET_ALERT;
use crate::contract::consumers;
use crate::contract::events::{IMAGE_COMPLETED, IMAGE_FAILED};
use crate::contract::services::Service;
use crate::contract::webhooks::{
    Delivery, EndpointState, WEBHOOK_DELIVER, WEBHOOK_DELIVERIES_BUCKET, WEBHOOK_ENDPOINTS_BUCKET, WEBHOOK_STREAM,
};
use crate::failure::RetryPolicy;
use crate::links::PictureLinks;
use crate::parts::JsonBucket;
use crate::worker;
pub use deliver::Deliverer;
pub use endpoints::Endpoints;
pub use fan_out::FanOut;

/// How long delivery tasks are kept: longer than the default retry schedule (about a day).
const TASK_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// NATS hiccups in the fan-out: retry soon, then less often.
const FAN_OUT_POLICY: RetryPolicy =
    RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(60), jitter: 0.2, max_attempts: u32::MAX };

/// Runs the webhook service until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let endpoints = Endpoints::from_config(&config.webhooks)?;
    // Registration: a configured URL that leads into this network is refused at start.
    endpoints.check_addresses(config.webhooks.allow_private).await?;
    let alerts = alerts::Alerts::from_config(&config)?;
    let bus = Bus::connect(&config.nats, Service::Webhook.program(), &shutdown).await?;
    let webhooks = Topology::ensure(&bus, &config.webhooks).await?;
    let events = bus.durable_consumer(&fan_out_spec(&config)).await?;
    let tasks = bus::durable_consumer_on(&webhooks.stream, &delivery_spec(&config)).await?;
    let alert_events = bus.alerts_consumer(&alerts_spec(&config), &shutdown).await?;
    let pings = bus.announce(Service::Webhook).await?;
    tracing::info!(endpoints = endpoints.configured().len(), "webhook service ready");

    // Private pictures: the links in payloads open without a key for [server] link_days.
    let picture_links = match config.server.public_pictures {
        true => None,
        false => Some(PictureLinks {
            base_url: config.server.public_base_url(),
            keys: bus.link_keys(&config.server.link_keys, &shutdown).await?,
            days: config.server.link_days,
        }),
    };
    let fan_out = FanOut::new(bus.publisher(), endpoints.clone(), bus.job_board()).signing(picture_links);
    let deliverer = Deliverer::new(&config.webhooks, endpoints, webhooks.deliveries, webhooks.states, alerts);
    let fan_out_settings = worker::Settings::new(4, &config.nats, FAN_OUT_POLICY).named(Service::Webhook.name());
    let delivery_settings = worker::Settings::new(32, &config.nats, deliver::POLICY).named("webhook-delivery");
    let alert_settings = worker::Settings::new(1, &config.nats, FAN_OUT_POLICY).named("webhook-alerts");
    tokio::join!(
        worker::run(alert_events, bus.publisher(), alert_settings, shutdown.clone(), fan_out.clone()),
        worker::run(events, bus.publisher(), fan_out_settings, shutdown.clone(), fan_out),
        worker::run(tasks, bus.publisher(), delivery_settings, shutdown, deliverer),
    );
    let _ = pings.stop().await;
    Ok(())
}

fn fan_out_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::WEBHOOK,
        description: "huiying webhooks: one delivery task per event and endpoint",
        subjects: &[IMAGE_COMPLETED, IMAGE_FAILED],
        ack_wait: config.nats.ack_wait,
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Budget alerts, on their own stream, for the endpoints that name `budget.alert`.
fn alerts_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::WEBHOOK_ALERTS,
        description: "huiying webhooks: budget alerts to the endpoints that take them",
        subjects: &[BUDGET_ALERT],
        ack_wait: config.nats.ack_wait,
        max_deliver: -1,
        max_ack_pending: 16,
    }
}

fn delivery_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::WEBHOOK_DELIVERY,
        description: "huiying webhooks: sends each delivery, retrying on its schedule",
        subjects: &[WEBHOOK_DELIVER],
        ack_wait: config.nats.ack_wait,
        // The stage decides when a delivery has failed for good ([webhooks] retry_schedule).
        max_deliver: -1,
        max_ack_pending: 1024,
    }
}

/// What the webhook service keeps in NATS besides the pipeline's stream.
pub struct Topology {
    pub stream: stream::Stream,
    pub deliveries: JsonBucket<Delivery>,
    pub states: JsonBucket<EndpointState>,
}

impl Topology {
    /// Looks up, and creates when missing, the task stream and the two buckets.
    pub async fn ensure(bus: &Bus, settings: &WebhooksConfig) -> Result<Self, SetupError> {
        let stream = bus::stream_or_create(
            &bus.jetstream,
            stream::Config {
                name: WEBHOOK_STREAM.into(),
                description: Some("huiying webhook delivery tasks".into()),
                subjects: vec![WEBHOOK_DELIVER.into()],
                storage: stream::StorageType::File,
                max_age: TASK_RETENTION,
                duplicate_window: Duration::from_secs(30 * 60),
                num_replicas: bus.replicas,
                ..Default::default()
            },
        )
        .await?;
        let retention = Duration::from_secs(settings.log_retention_days.max(1) * 24 * 3600);
        let (js, replicas) = (&bus.jetstream, bus.replicas);
        let deliveries =
            bus::key_value(js, WEBHOOK_DELIVERIES_BUCKET, "huiying webhook deliveries", retention, replicas).await?;
        let states =
            bus::key_value(js, WEBHOOK_ENDPOINTS_BUCKET, "huiying webhook endpoint states", retention, replicas)
                .await?;
        Ok(Self {
            stream,
            deliveries: JsonBucket::new(Arc::new(deliveries)),
            states: JsonBucket::new(Arc::new(states)),
        })
    }
}
