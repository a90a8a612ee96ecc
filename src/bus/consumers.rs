//! The services' durable pull consumers: what each consumes, and where its state is kept.

use std::time::Duration;

use async_nats::jetstream::{consumer, stream};

use super::{SetupError, setup_failed};

/// Creates (or updates) a durable pull consumer on `stream`, its state on disk, and returns it.
pub async fn durable_consumer_on(
    stream: &stream::Stream,
    spec: &ConsumerSpec,
) -> Result<consumer::PullConsumer, SetupError> {
    consumer_on(stream, spec, false).await
}

pub(super) async fn consumer_on(
    stream: &stream::Stream,
    spec: &ConsumerSpec,
    in_memory: bool,
) -> Result<consumer::PullConsumer, SetupError> {
    let mut config = consumer::pull::Config {
        memory_storage: in_memory,
        durable_name: Some(spec.durable.into()),
        description: Some(spec.description.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        max_ack_pending: spec.max_ack_pending,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    };
    match spec.subjects {
        [one] => config.filter_subject = one.to_string(),
        many => config.filter_subjects = many.iter().map(|s| s.to_string()).collect(),
    }
    stream.create_consumer(config).await.map_err(setup_failed("consumer"))
}

/// What a service consumes, and how patiently.
pub struct ConsumerSpec {
    pub durable: &'static str,
    pub description: &'static str,
    pub subjects: &'static [&'static str],
    /// Time a delivery may stay unacknowledged (the worker sends progress acks meanwhile).
    pub ack_wait: Duration,
    /// Deliveries before JetStream gives up; the worker fails the job on the last one.
    pub max_deliver: i64,
    /// Deliveries in flight at once across all instances of the service.
    pub max_ack_pending: i64,
}
