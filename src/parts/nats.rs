//! The parts on NATS JetStream: the only place that knows how each is done there.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncReadExt;

use super::{
    Backlog, Change, KeyValue, Objects, PartError, PartErrorKind, Publish, RequestError, Requests, Room, Usage,
};
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
    async fn publish(&self, subject: &str, message_id: String, payload: Bytes) -> Result<(), PartError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| {
            PartError::retry_later(format!("publishing to {subject}"), source)
        };
        let message = jetstream::message::PublishMessage::build().payload(payload).message_id(message_id);
        let ack = self.jetstream.send_publish(subject.to_string(), message).await.map_err(|e| failed(e.into()))?;
        ack.await.map_err(|e| failed(e.into()))?;
        Ok(())
    }

    async fn dead_letter(&self, subject: &str, payload: Bytes, reason: &str) -> Result<(), PartError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Huiying-Reason", reason.replace(['\r', '\n'], " ").as_str());
        headers.insert("Huiying-Subject", subject);
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| {
            PartError::retry_later(format!("publishing to {DEAD_LETTER_PREFIX}"), source)
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

fn kv_error(store: &kv::Store, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PartError {
    kv_failed(&store.name, source)
}

fn kv_failed(bucket: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PartError {
    PartError::retry_later(format!("key-value bucket {bucket}"), source)
}

#[async_trait]
impl KeyValue for kv::Store {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PartError> {
        kv::Store::get(self, key).await.map_err(|e| kv_error(self, e))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), PartError> {
        kv::Store::put(self, key, value).await.map(drop).map_err(|e| kv_error(self, e))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<bool, PartError> {
        match kv::Store::create(self, key, value).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(kv_error(self, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PartError> {
        kv::Store::delete(self, key).await.map_err(|e| kv_error(self, e))
    }

    async fn entry(&self, key: &str) -> Result<Option<(Bytes, u64)>, PartError> {
        let entry = kv::Store::entry(self, key).await.map_err(|e| kv_error(self, e))?;
        Ok(entry.filter(|entry| entry.operation == kv::Operation::Put).map(|entry| (entry.value, entry.revision)))
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<bool, PartError> {
        match kv::Store::update(self, key, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(kv_error(self, e)),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, PartError> {
        let mut keys = kv::Store::keys(self).await.map_err(|e| kv_error(self, e))?;
        let mut all = Vec::new();
        while let Some(key) = keys.next().await {
            all.push(key.map_err(|e| kv_error(self, e))?);
        }
        Ok(all)
    }

    async fn values(&self, pattern: &str) -> Result<Vec<Change>, PartError> {
        // A watch starts with each matching key's last write, each entry saying how many
        // are left (`delta`), so the read ends at 0 without waiting for a quiet moment.
        // With nothing matching it would wait for a first write: one direct get asks first.
        match self.stream.direct_get_next_for_subject(format!("{}{pattern}", self.prefix), None).await {
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(kv_error(self, e)),
            Ok(_) => {}
        }
        let read = async {
            let mut entries = self.watch_with_history(pattern).await.map_err(|e| kv_error(self, e))?;
            let mut values = Vec::new();
            while let Some(entry) = entries.next().await {
                let entry = entry.map_err(|e| kv_error(self, e))?;
                let last = entry.delta == 0;
                if entry.operation == kv::Operation::Put {
                    values.push(Change { key: entry.key, revision: entry.revision, value: entry.value });
                }
                if last {
                    break;
                }
            }
            Ok(values)
        };
        // The one match expiring between the get and the watch would leave it waiting.
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .map_err(|_| kv_failed(&self.name, format!("reading every {pattern} took over 30 s")))?
    }

    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, PartError>>, PartError> {
        let entries = self.watch_with_history(key).await.map_err(|e| kv_error(self, e))?;
        Ok(puts(entries, &self.name).map(|change| change.map(|change| change.value)).boxed())
    }

    async fn changes(&self, after: Option<u64>) -> Result<BoxStream<'static, Result<Change, PartError>>, PartError> {
        let entries = match after {
            None => self.watch_all().await,
            Some(revision) => self.watch_all_from_revision(revision + 1).await,
        }
        .map_err(|e| kv_error(self, e))?;
        Ok(puts(entries, &self.name))
    }
}

/// The writes of a key-value watch (deletes and purges left out), errors naming the bucket.
fn puts(entries: kv::Watch, bucket: &str) -> BoxStream<'static, Result<Change, PartError>> {
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
                    Err(e) => Some(Err(kv_failed(&bucket, e))),
                }
            }
        })
        .boxed()
}

fn objects_failed(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PartError {
    PartError::retry_later("object store", source)
}

#[async_trait]
impl Objects for object_store::ObjectStore {
    async fn put(&self, name: &str, mut bytes: &[u8]) -> Result<(), PartError> {
        object_store::ObjectStore::put(self, name, &mut bytes).await.map(drop).map_err(objects_failed)
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, PartError> {
        let mut object = match object_store::ObjectStore::get(self, name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(objects_failed(e)),
        };
        let mut bytes = Vec::with_capacity(object.info().size);
        object.read_to_end(&mut bytes).await.map_err(objects_failed)?;
        Ok(Some(bytes))
    }

    async fn names(&self) -> Result<Vec<String>, PartError> {
        let mut listing = object_store::ObjectStore::list(self).await.map_err(objects_failed)?;
        let mut names = Vec::new();
        while let Some(info) = listing.next().await {
            names.push(info.map_err(objects_failed)?.name);
        }
        Ok(names)
    }

    async fn delete(&self, name: &str) -> Result<(), PartError> {
        match object_store::ObjectStore::delete(self, name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(objects_failed(e)),
        }
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

/// The job stream with the connection that reads it: what is waiting, and where a job
/// stands in the queue.
pub struct JobQueue {
    pub client: async_nats::Client,
    pub stream: stream::Stream,
}

#[async_trait]
impl Backlog for JobQueue {
    async fn waiting(&self, consumer: &str) -> Option<u64> {
        match tokio::time::timeout(Duration::from_secs(1), self.stream.consumer_info(consumer)).await {
            Ok(Ok(info)) => Some(info.num_pending + info.num_ack_pending as u64),
            _ => None,
        }
    }

    async fn ahead_of(&self, consumer: &str, message_id: &str, limit: u64) -> Option<u64> {
        use jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
        let count = async {
            let info = self.stream.consumer_info(consumer).await.ok()?;
            // What the consumer has not finished starts after its ack floor; an ordered
            // consumer of headers alone reads from there to the message.
            let config = push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: info.config.filter_subject.clone(),
                filter_subjects: info.config.filter_subjects.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: info.ack_floor.stream_sequence + 1 },
                replay_policy: ReplayPolicy::Instant,
                headers_only: true,
                ..Default::default()
            };
            let reader = self.stream.create_consumer(config).await.ok()?;
            let waiting = reader.cached_info().num_pending.min(limit);
            let mut messages = reader.messages().await.ok()?;
            for ahead in 0..waiting {
                let message = messages.next().await?.ok()?;
                let id = message.headers.as_ref().and_then(|headers| headers.get("Nats-Msg-Id"));
                if id.is_some_and(|id| id.as_str() == message_id) {
                    return Some(ahead);
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(2), count).await.ok().flatten()
    }
}

/// The stream behind a bucket (`OBJ_huiying_images`) says how full it is.
#[async_trait]
impl Room for stream::Stream {
    async fn usage(&self) -> Option<Usage> {
        let mut stream = self.clone();
        match tokio::time::timeout(Duration::from_secs(1), stream.info()).await {
            Ok(Ok(info)) => Some(Usage {
                bytes: info.state.bytes,
                max_bytes: u64::try_from(info.config.max_bytes).ok().filter(|max| *max > 0),
            }),
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

    fn missing(&self) -> PartError {
        PartError::new(PartErrorKind::NotFound, format!("key-value bucket {}", self.name), "it does not exist yet")
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

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::get(store, key).await,
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), PartError> {
        match self.store().await {
            Some(store) => KeyValue::put(store, key, value).await,
            None => Err(self.missing()),
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<bool, PartError> {
        match self.store().await {
            Some(store) => KeyValue::create(store, key, value).await,
            None => Err(self.missing()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PartError> {
        match self.store().await {
            Some(store) => KeyValue::delete(store, key).await,
            None => Ok(()),
        }
    }

    async fn entry(&self, key: &str) -> Result<Option<(Bytes, u64)>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::entry(store, key).await,
            None => Ok(None),
        }
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<bool, PartError> {
        match self.store().await {
            Some(store) => KeyValue::update(store, key, value, revision).await,
            None => Err(self.missing()),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::keys(store).await,
            None => Ok(Vec::new()),
        }
    }

    async fn values(&self, pattern: &str) -> Result<Vec<Change>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::values(store, pattern).await,
            None => Ok(Vec::new()),
        }
    }

    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, PartError>>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::watch(store, key).await,
            None => Ok(futures::stream::pending().boxed()),
        }
    }

    async fn changes(&self, after: Option<u64>) -> Result<BoxStream<'static, Result<Change, PartError>>, PartError> {
        match self.store().await {
            Some(store) => KeyValue::changes(store, after).await,
            None => Ok(futures::stream::pending().boxed()),
        }
    }
}
