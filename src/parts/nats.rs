//! The parts on NATS JetStream: the only place that knows how each is done there.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncReadExt;

use super::{Backlog, Change, KeyValue, Objects, Publish, RequestError, Requests};
use crate::bus::BusError;
use crate::contract::DEAD_LETTER_PREFIX;

/// How long a request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes on JetStream, waiting for each acknowledgement.
#[derive(Clone)]
pub struct NatsPublisher {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
}

#[async_trait]
impl Publish for NatsPublisher {
    async fn publish(&self, subject: &str, message_id: String, payload: Bytes) -> Result<(), BusError> {
        let failed =
            |source: Box<dyn std::error::Error + Send + Sync>| BusError::Publish { subject: subject.into(), source };
        let message = jetstream::message::PublishMessage::build().payload(payload).message_id(message_id);
        let ack = self.jetstream.send_publish(subject.to_string(), message).await.map_err(|e| failed(e.into()))?;
        ack.await.map_err(|e| failed(e.into()))?;
        Ok(())
    }

    async fn dead_letter(&self, subject: &str, payload: Bytes, reason: &str) -> Result<(), BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Huiying-Reason", reason.replace(['\r', '\n'], " ").as_str());
        headers.insert("Huiying-Subject", subject);
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| BusError::Publish {
            subject: DEAD_LETTER_PREFIX.into(),
            source,
        };
        let ack = self
            .jetstream
            .publish_with_headers(format!("{DEAD_LETTER_PREFIX}.{subject}"), headers, payload)
            .await
            .map_err(|e| failed(e.into()))?;
        ack.await.map_err(|e| failed(e.into()))?;
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

fn kv_error(store: &kv::Store, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BusError {
    BusError::KeyValue { bucket: store.name.clone(), source: source.into() }
}

#[async_trait]
impl KeyValue for kv::Store {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        kv::Store::get(self, key).await.map_err(|e| kv_error(self, e))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), BusError> {
        kv::Store::put(self, key, value).await.map(drop).map_err(|e| kv_error(self, e))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<bool, BusError> {
        match kv::Store::create(self, key, value).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(kv_error(self, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BusError> {
        kv::Store::delete(self, key).await.map_err(|e| kv_error(self, e))
    }

    async fn keys(&self) -> Result<Vec<String>, BusError> {
        let mut keys = kv::Store::keys(self).await.map_err(|e| kv_error(self, e))?;
        let mut all = Vec::new();
        while let Some(key) = keys.next().await {
            all.push(key.map_err(|e| kv_error(self, e))?);
        }
        Ok(all)
    }

    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, BusError>>, BusError> {
        let entries = self.watch_with_history(key).await.map_err(|e| kv_error(self, e))?;
        Ok(puts(entries, &self.name).map(|change| change.map(|change| change.value)).boxed())
    }

    async fn changes(&self, after: Option<u64>) -> Result<BoxStream<'static, Result<Change, BusError>>, BusError> {
        let entries = match after {
            None => self.watch_all().await,
            Some(revision) => self.watch_all_from_revision(revision + 1).await,
        }
        .map_err(|e| kv_error(self, e))?;
        Ok(puts(entries, &self.name))
    }
}

/// The writes of a key-value watch (deletes and purges left out), errors naming the bucket.
fn puts(entries: kv::Watch, bucket: &str) -> BoxStream<'static, Result<Change, BusError>> {
    let bucket = bucket.to_string();
    entries
        .filter_map(move |entry| {
            let bucket = bucket.clone();
            async move {
                match entry {
                    Ok(entry) if entry.operation == kv::Operation::Put => {
                        Some(Ok(Change { key: entry.key, revision: entry.revision, value: entry.value }))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(BusError::KeyValue { bucket, source: e.into() })),
                }
            }
        })
        .boxed()
}

#[async_trait]
impl Objects for object_store::ObjectStore {
    async fn put(&self, name: &str, mut bytes: &[u8]) -> Result<(), BusError> {
        object_store::ObjectStore::put(self, name, &mut bytes)
            .await
            .map(drop)
            .map_err(|e| BusError::Object { source: e.into() })
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, BusError> {
        let mut object = match object_store::ObjectStore::get(self, name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BusError::Object { source: e.into() }),
        };
        let mut bytes = Vec::with_capacity(object.info().size);
        object.read_to_end(&mut bytes).await.map_err(|e| BusError::Object { source: e.into() })?;
        Ok(Some(bytes))
    }
}

#[async_trait]
impl Requests for async_nats::Client {
    async fn request(&self, subject: &'static str, payload: Bytes) -> Result<Bytes, RequestError> {
        let request = async_nats::Client::request(self, subject, payload);
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(RequestError::NoResponders(subject))
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => Err(RequestError::TimedOut(subject)),
            Ok(Err(e)) => Err(RequestError::Failed { subject, source: e.into() }),
            Err(_) => Err(RequestError::TimedOut(subject)),
        }
    }
}

#[async_trait]
impl Backlog for stream::Stream {
    async fn waiting(&self, consumer: &str) -> Option<u64> {
        match tokio::time::timeout(Duration::from_secs(1), self.consumer_info(consumer)).await {
            Ok(Ok(info)) => Some(info.num_pending + info.num_ack_pending as u64),
            _ => None,
        }
    }
}

/// A bucket another service creates: looked up on first use, and read as empty until it
/// exists (ingest's views of the webhook log work before the webhook service first ran).
pub struct LaterBucket {
    jetstream: jetstream::Context,
    name: &'static str,
    found: tokio::sync::OnceCell<kv::Store>,
}

impl LaterBucket {
    pub fn new(jetstream: jetstream::Context, name: &'static str) -> Self {
        Self { jetstream, name, found: tokio::sync::OnceCell::new() }
    }

    async fn store(&self) -> Option<&kv::Store> {
        self.found.get_or_try_init(|| self.jetstream.get_key_value(self.name)).await.ok()
    }
}

#[async_trait]
impl KeyValue for LaterBucket {
    fn name(&self) -> &str {
        self.name
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        match self.store().await {
            Some(store) => KeyValue::get(store, key).await,
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), BusError> {
        match self.store().await {
            Some(store) => KeyValue::put(store, key, value).await,
            None => {
                Err(BusError::KeyValue { bucket: self.name.into(), source: "the bucket does not exist yet".into() })
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<bool, BusError> {
        match self.store().await {
            Some(store) => KeyValue::create(store, key, value).await,
            None => {
                Err(BusError::KeyValue { bucket: self.name.into(), source: "the bucket does not exist yet".into() })
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BusError> {
        match self.store().await {
            Some(store) => KeyValue::delete(store, key).await,
            None => Ok(()),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, BusError> {
        match self.store().await {
            Some(store) => KeyValue::keys(store).await,
            None => Ok(Vec::new()),
        }
    }

    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, BusError>>, BusError> {
        match self.store().await {
            Some(store) => KeyValue::watch(store, key).await,
            None => Ok(futures::stream::pending().boxed()),
        }
    }

    async fn changes(&self, after: Option<u64>) -> Result<BoxStream<'static, Result<Change, BusError>>, BusError> {
        match self.store().await {
            Some(store) => KeyValue::changes(store, after).await,
            None => Ok(futures::stream::pending().boxed()),
        }
    }
}
