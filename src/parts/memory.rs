//! The parts in memory, for tests that run a stage or a route without a nats-server.
//! They behave as JetStream does where stages rely on it: a repeated message id is
//! stored once, `create` is atomic, and a watch sees the current value then every change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::{Backlog, Change, KeyValue, Objects, PartError, Publish, RequestError, Requests, Room, Usage};
use crate::contract::events::Event;

fn unavailable(what: &str) -> PartError {
    PartError::retry_later(format!("key-value bucket {what}"), "switched off by the test")
}

/// A published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub subject: String,
    pub message_id: String,
    pub payload: Bytes,
}

/// The stream in memory: what was published and what was dead-lettered.
#[derive(Default)]
pub struct MemoryStream {
    published: Mutex<Vec<Published>>,
    seen: Mutex<HashSet<String>>,
    dead: Mutex<Vec<(String, String)>>,
    down: AtomicBool,
    acks_lost: AtomicBool,
    leaderless: AtomicBool,
    silent: AtomicBool,
}

impl MemoryStream {
    /// While set, publishing stores the message but reports a failure, as when the
    /// acknowledgement is lost (a cluster node dying after it stored the message).
    pub fn set_acks_lost(&self, lost: bool) {
        self.acks_lost.store(lost, Ordering::SeqCst);
    }

    /// While set, publishing fails without storing, the connection up: a cluster whose
    /// stream has no leader (electing one after the last died).
    pub fn set_leaderless(&self, leaderless: bool) {
        self.leaderless.store(leaderless, Ordering::SeqCst);
    }

    /// While set, a publish is never answered: sent through a node the network cut off.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// Every event of type `E` published so far, in order.
    pub fn events<E: Event>(&self) -> Vec<E> {
        let published = self.published.lock().unwrap();
        published
            .iter()
            .filter(|p| p.subject == E::SUBJECT)
            .map(|p| serde_json::from_slice(&p.payload).expect("published events decode"))
            .collect()
    }

    /// How many messages were published in all.
    pub fn count(&self) -> usize {
        self.published.lock().unwrap().len()
    }

    /// `(subject, reason)` of each dead letter.
    pub fn dead_letters(&self) -> Vec<(String, String)> {
        self.dead.lock().unwrap().clone()
    }

    /// While down, publishing fails as it does when NATS is away.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl Publish for MemoryStream {
    async fn publish(&self, subject: &str, message_id: String, payload: Bytes) -> Result<(), PartError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PartError::retry_later(format!("publishing to {subject}"), "NATS is down (test)"));
        }
        if self.leaderless.load(Ordering::SeqCst) {
            return Err(PartError::retry_later(format!("publishing to {subject}"), "no stream leader (test)"));
        }
        if self.silent.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.seen.lock().unwrap().insert(message_id.clone()) {
            self.published.lock().unwrap().push(Published { subject: subject.into(), message_id, payload });
        }
        if self.acks_lost.load(Ordering::SeqCst) {
            return Err(PartError::retry_later(format!("publishing to {subject}"), "ack lost (test)"));
        }
        Ok(())
    }

    async fn dead_letter(&self, subject: &str, _payload: Bytes, reason: &str) -> Result<(), PartError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PartError::retry_later(format!("publishing to {subject}"), "NATS is down (test)"));
        }
        self.dead.lock().unwrap().push((subject.into(), reason.into()));
        Ok(())
    }

    fn is_connected(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}

/// A key-value bucket in memory.
pub struct MemoryKv {
    name: String,
    entries: Mutex<BTreeMap<String, Bytes>>,
    changes: broadcast::Sender<(String, Bytes)>,
    /// Every write, numbered, for `changes`.
    writes: broadcast::Sender<Change>,
    revision: std::sync::atomic::AtomicU64,
    /// Each key's last write, for `entry` and `update`.
    revisions: Mutex<HashMap<String, u64>>,
    down: AtomicBool,
    read_only: AtomicBool,
}

impl MemoryKv {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            entries: Mutex::default(),
            changes: broadcast::channel(1024).0,
            writes: broadcast::channel(1024).0,
            revision: std::sync::atomic::AtomicU64::new(0),
            revisions: Mutex::default(),
            down: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
        }
    }

    /// While read-only, reads work and writes fail, as on a cluster whose bucket has lost
    /// its leader (replicas still answer direct gets).
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::SeqCst);
    }

    fn check_write(&self) -> Result<(), PartError> {
        self.check()?;
        if self.read_only.load(Ordering::SeqCst) { Err(unavailable(&self.name)) } else { Ok(()) }
    }

    /// Writes raw bytes, as a damaged or foreign entry would be.
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        self.entries.lock().unwrap().insert(key.into(), Bytes::copy_from_slice(value));
        self.next_revision(key);
    }

    /// While down, every call fails as it does when NATS is away.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), PartError> {
        if self.down.load(Ordering::SeqCst) { Err(unavailable(&self.name)) } else { Ok(()) }
    }

    fn store(&self, key: &str, value: Bytes) {
        self.entries.lock().unwrap().insert(key.into(), value.clone());
        self.announce(key, value);
    }

    /// Numbers a write of `key`: later writes have larger numbers.
    fn next_revision(&self, key: &str) -> u64 {
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        self.revisions.lock().unwrap().insert(key.into(), revision);
        revision
    }

    fn announce(&self, key: &str, value: Bytes) {
        let revision = self.next_revision(key);
        let _ = self.writes.send(Change { key: key.into(), revision, value: value.clone() });
        let _ = self.changes.send((key.into(), value));
    }
}

#[async_trait]
impl KeyValue for MemoryKv {
    fn name(&self) -> &str {
        &self.name
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PartError> {
        self.check()?;
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), PartError> {
        self.check_write()?;
        self.store(key, value);
        Ok(())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<bool, PartError> {
        self.check_write()?;
        let mut entries = self.entries.lock().unwrap();
        if entries.contains_key(key) {
            return Ok(false);
        }
        entries.insert(key.into(), value.clone());
        self.announce(key, value);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<(), PartError> {
        self.check_write()?;
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }

    async fn entry(&self, key: &str) -> Result<Option<(Bytes, u64)>, PartError> {
        self.check()?;
        let entries = self.entries.lock().unwrap();
        Ok(entries.get(key).map(|value| (value.clone(), self.revisions.lock().unwrap()[key])))
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<bool, PartError> {
        self.check_write()?;
        // Holding the entries while comparing and writing makes the two one step.
        let mut entries = self.entries.lock().unwrap();
        if self.revisions.lock().unwrap().get(key) != Some(&revision) {
            return Ok(false);
        }
        entries.insert(key.into(), value.clone());
        self.announce(key, value);
        Ok(true)
    }

    async fn keys(&self) -> Result<Vec<String>, PartError> {
        self.check()?;
        Ok(self.entries.lock().unwrap().keys().cloned().collect())
    }

    async fn values(&self, pattern: &str) -> Result<Vec<Change>, PartError> {
        self.check()?;
        let revisions = self.revisions.lock().unwrap().clone();
        let mut values: Vec<Change> = (self.entries.lock().unwrap().iter())
            .filter(|(key, _)| matches_pattern(key, pattern))
            .map(|(key, value)| Change { key: key.clone(), revision: revisions[key], value: value.clone() })
            .collect();
        values.sort_by_key(|change| change.revision);
        Ok(values)
    }

    async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes, PartError>>, PartError> {
        self.check()?;
        // Subscribe before reading the current value, so no change falls in between.
        let changes = tokio_stream_of(self.changes.subscribe(), key.to_string());
        let current = self.entries.lock().unwrap().get(key).cloned();
        Ok(futures::stream::iter(current.map(Ok)).chain(changes).boxed())
    }

    /// From now on only: memory keeps no history to resume from.
    async fn changes(&self, _after: Option<u64>) -> Result<BoxStream<'static, Result<Change, PartError>>, PartError> {
        self.check()?;
        let receiver = self.writes.subscribe();
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((Ok(change), receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }
}

fn tokio_stream_of(
    receiver: broadcast::Receiver<(String, Bytes)>,
    key: String,
) -> BoxStream<'static, Result<Bytes, PartError>> {
    futures::stream::unfold((receiver, key), |(mut receiver, key)| async move {
        loop {
            match receiver.recv().await {
                Ok((changed, value)) if changed == key => return Some((Ok(value), (receiver, key))),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// The picture object store in memory.
#[derive(Default)]
pub struct MemoryObjects {
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryObjects {
    pub fn names(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl Objects for MemoryObjects {
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PartError> {
        self.objects.lock().unwrap().insert(name.into(), bytes.to_vec());
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, PartError> {
        Ok(self.objects.lock().unwrap().get(name).cloned())
    }

    async fn names(&self) -> Result<Vec<String>, PartError> {
        Ok(self.objects.lock().unwrap().keys().cloned().collect())
    }

    async fn delete(&self, name: &str) -> Result<(), PartError> {
        self.objects.lock().unwrap().remove(name);
        Ok(())
    }
}

/// A service that answers each subject with a fixed reply, or nobody.
#[derive(Default)]
pub struct MemoryReplies {
    replies: Mutex<HashMap<&'static str, Bytes>>,
}

impl MemoryReplies {
    pub fn answer(&self, subject: &'static str, reply: impl Into<Bytes>) {
        self.replies.lock().unwrap().insert(subject, reply.into());
    }
}

#[async_trait]
impl Requests for MemoryReplies {
    async fn request(&self, subject: &'static str, _payload: Bytes) -> Result<Bytes, RequestError> {
        self.replies.lock().unwrap().get(subject).cloned().ok_or(RequestError::NoResponders(subject))
    }
}

/// A consumer backlog of a fixed size.
pub struct FixedBacklog(pub Option<u64>);

/// A bucket as full as the test says.
#[derive(Default)]
pub struct FixedRoom(pub std::sync::Mutex<Option<Usage>>);

#[async_trait]
impl Room for FixedRoom {
    async fn usage(&self) -> Option<Usage> {
        *self.0.lock().unwrap()
    }
}

#[async_trait]
impl Backlog for FixedBacklog {
    async fn waiting(&self, _consumer: &str) -> Option<u64> {
        self.0
    }

    async fn ahead_of(&self, _consumer: &str, _message_id: &str, _limit: u64) -> Option<u64> {
        None
    }
}

/// Whether `key` matches a NATS subject `pattern` (`*` one token, `>` the rest).
fn matches_pattern(key: &str, pattern: &str) -> bool {
    let (mut keys, mut patterns) = (key.split('.'), pattern.split('.'));
    loop {
        match (patterns.next(), keys.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(want), Some(token)) if want == token => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
