//! A subscriber of your own, outside the pipeline (docs/subscribers.md).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio_util::sync::CancellationToken;

use super::{ConsumerSpec, SetupError, connect_retrying, durable_consumer_on, key_value, setup_failed};
use crate::config::NatsConfig;
use crate::contract::STREAM;
use crate::parts::{JsonBucket, nats::NatsPublisher};

/// A subscriber of your own: connected with a login that may do no more than read its
/// own consumer (see the `subscriber` template in nats.conf). It only looks up the
/// `HUIYING` stream and creates nothing but its consumer and, if asked, its own bucket.
pub struct Subscriber {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub stream: stream::Stream,
    /// `[nats] replicas`, for its own bucket.
    replicas: usize,
}

impl Subscriber {
    /// Connects (retrying until NATS answers or `shutdown` fires) and finds the stream.
    pub async fn connect(config: &NatsConfig, name: &str, shutdown: &CancellationToken) -> Result<Self, SetupError> {
        let client = connect_retrying(config, name, shutdown).await?;
        let jetstream = jetstream::new(client.clone());
        let stream = jetstream.get_stream(STREAM).await.map_err(setup_failed("stream"))?;
        Ok(Self { client, jetstream, stream, replicas: config.replicas })
    }

    /// Its durable consumer, created when missing.
    pub async fn consumer(&self, spec: &ConsumerSpec) -> Result<consumer::PullConsumer, SetupError> {
        durable_consumer_on(&self.stream, spec).await
    }

    /// A key-value bucket of its own (kept 30 days), created when missing.
    pub async fn bucket<T>(&self, name: &'static str) -> Result<JsonBucket<T>, SetupError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let retention = Duration::from_secs(30 * 86400);
        let store = key_value(&self.jetstream, name, "a huiying subscriber's own", retention, self.replicas).await?;
        Ok(JsonBucket::new(Arc::new(store)))
    }

    /// Where rejected messages go (`huiying.dead.<subject>`).
    pub fn publisher(&self) -> Arc<NatsPublisher> {
        Arc::new(NatsPublisher { client: self.client.clone(), jetstream: self.jetstream.clone() })
    }
}
