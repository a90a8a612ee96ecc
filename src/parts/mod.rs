//! The narrow parts a stage is built from: publishing events, key-value buckets (job
//! states, the notification log, idempotency keys), the picture object store, and
//! request/reply. Each is a trait with one NATS implementation ([`nats`]) and one in
//! memory ([`memory`]) for tests that need no nats-server. Every operation fails with a
//! [`PartError`], whose kind says whether to retry; [`JobBoard`] keeps job states on a
//! bucket.

mod bucket;
mod error;
mod jobs;
pub mod memory;
pub mod nats;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use bucket::JsonBucket;
pub use error::{PartError, PartErrorKind};
pub use jobs::JobBoard;

use crate::contract::events::Event;

/// Publishes messages on the stream and keeps rejected ones.
#[async_trait]
pub trait Publish: Send + Sync {
    /// Publishes and waits until the stream stored it. A repeated `message_id` within the
    /// stream's duplicate window is stored once.
    async fn publish(&self, subject: &str, message_id: String, payload: Bytes) -> Result<(), PartError>;

    /// Keeps a rejected message where an operator can see it, with the reason.
    async fn dead_letter(&self, subject: &str, payload: Bytes, reason: &str) -> Result<(), PartError>;

    /// Whether the connection is up right now (a publish would otherwise wait for it).
    fn is_connected(&self) -> bool {
        true
    }
}

/// Publishes `event` on its subject with its `Nats-Msg-Id` (one message per job and subject).
pub async fn publish<E: Event>(to: &dyn Publish, event: &E) -> Result<(), PartError> {
    let payload = serde_json::to_vec(event).expect("events serialize");
    to.publish(E::SUBJECT, message_id::<E>(event.job_id()), payload.into()).await
}

/// `Nats-Msg-Id` of an event: one message per job and subject.
pub fn message_id<E: Event>(job_id: &str) -> String {
    format!("{}:{job_id}", E::SUBJECT)
}

/// A key-value bucket of raw values; [`JsonBucket`] gives it a type.
#[async_trait]
pub trait KeyValue: Send + Sync {
    /// The bucket's name, for messages.
    fn name(&self) -> &str;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, PartError>;
    async fn put(&self, key: &str, value: Bytes) -> Result<(), PartError>;
    /// Stores `value` unless `key` exists (atomically); false when it existed.
    async fn create(&self, key: &str, value: Bytes) -> Result<bool, PartError>;
    async fn delete(&self, key: &str) -> Result<(), PartError>;
    /// The key's value and revision, for a later [`KeyValue::update`].
    async fn entry(&self, key: &str) -> Result<Option<(Bytes, u64)>, PartError>;
    /// Stores `value` if `key` is still at `revision` (atomically: compare-and-set); false
    /// when another write came first.
    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<bool, PartError>;
    async fn keys(&self) -> Result<Vec<String>, PartError>;
    /// The newest value of every key matching `pattern` (NATS wildcards: `*` one token,
    /// `>` the rest), read once, in the order they were written. Reads the whole match:
    /// for occasional reports and lists, not per job.
    async fn values(&self, pattern: &str) -> Result<Vec<Change>, PartError>;
    /// The key's current value, if any, then every later one.
    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, PartError>>, PartError>;
    /// Every key's changes from now on, or those after `revision` that the bucket still
    /// keeps (the latest of each key at least), each with its key and revision.
    async fn changes(&self, after: Option<u64>) -> Result<BoxStream<'static, Result<Change, PartError>>, PartError>;
}

/// One write to a key-value bucket.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    /// The bucket's sequence number of the write: later writes have larger ones.
    pub revision: u64,
    pub value: Bytes,
}

/// Where generated pictures wait for the store.
#[async_trait]
pub trait Objects: Send + Sync {
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PartError>;
    /// `None` when there is no such object (never written, or expired).
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, PartError>;
    /// The names of the objects there now.
    async fn names(&self) -> Result<Vec<String>, PartError>;
    /// Deletes the object; one that is not there is fine.
    async fn delete(&self, name: &str) -> Result<(), PartError>;
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("nobody answers {0}")]
    NoResponders(&'static str),
    #[error("{0} did not answer in time")]
    TimedOut(&'static str),
    #[error("request to {subject} failed: {source}")]
    Failed {
        subject: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Request/reply to a service (the store's records API).
#[async_trait]
pub trait Requests: Send + Sync {
    async fn request(&self, subject: &'static str, payload: Bytes) -> Result<Bytes, RequestError>;
}

/// How much of a bucket with a size bound is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    /// The bucket's bound; `None`: it has none.
    pub max_bytes: Option<u64>,
}

impl Usage {
    /// No room left for another picture: within 64 MiB (or a tenth, for small bounds) of
    /// the bound, since several writers may be filling it at once.
    pub fn is_full(&self) -> bool {
        self.max_bytes.is_some_and(|max| self.bytes + (max / 10).min(64 << 20) >= max)
    }
}

/// How full the picture bucket is.
#[async_trait]
pub trait Room: Send + Sync {
    /// `None` when unknown (NATS did not answer).
    async fn usage(&self) -> Option<Usage>;
}

/// How many messages a consumer has not finished: pending plus unacknowledged.
#[async_trait]
pub trait Backlog: Send + Sync {
    /// `None` when unknown (no such consumer yet, or NATS did not answer).
    async fn waiting(&self, consumer: &str) -> Option<u64>;
    /// How many messages stand before the one published as `message_id` that `consumer`
    /// has not finished, counted from its oldest unacknowledged one (a message acknowledged
    /// out of turn counts until those before it are). `None` when unknown, when the message
    /// was finished, or when more than `limit` stand before it (counting reads each).
    async fn ahead_of(&self, consumer: &str, message_id: &str, limit: u64) -> Option<u64>;
}
