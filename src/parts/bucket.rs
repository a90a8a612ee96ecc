//! A key-value bucket whose values are JSON of one type.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeyValue, PartError};

/// Typed access to a [`KeyValue`] bucket. An entry that does not decode is an error
/// (one no retry helps: [`super::PartErrorKind::GiveUp`]), never read as absent: absent would let a stage do its side
/// effect (a mail, say) a second time.
pub struct JsonBucket<T> {
    kv: Arc<dyn KeyValue>,
    value: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonBucket<T> {
    fn clone(&self) -> Self {
        Self { kv: self.kv.clone(), value: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> JsonBucket<T> {
    pub fn new(kv: Arc<dyn KeyValue>) -> Self {
        Self { kv, value: PhantomData }
    }

    /// The same bucket, read as `U` (for keys of another kind beside these).
    pub fn holding<U>(&self) -> JsonBucket<U> {
        JsonBucket { kv: self.kv.clone(), value: PhantomData }
    }

    pub async fn get(&self, key: &str) -> Result<Option<T>, PartError> {
        match self.kv.get(key).await? {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub async fn put(&self, key: &str, value: &T) -> Result<(), PartError> {
        self.kv.put(key, encode(value)).await
    }

    /// Stores `value` unless `key` exists; false when it existed.
    pub async fn create(&self, key: &str, value: &T) -> Result<bool, PartError> {
        self.kv.create(key, encode(value)).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), PartError> {
        self.kv.delete(key).await
    }

    pub async fn keys(&self) -> Result<Vec<String>, PartError> {
        self.kv.keys().await
    }

    /// The newest value of every key matching `pattern` (see [`KeyValue::values`]), in the
    /// order they were written; entries that are not `T` are skipped (logged).
    pub async fn values(&self, pattern: &str) -> Result<Vec<T>, PartError> {
        let changes = self.kv.values(pattern).await?;
        Ok(changes
            .into_iter()
            .filter_map(|change| match serde_json::from_slice(&change.value) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(bucket = %self.kv.name(), key = %change.key, %error, "skipping an unreadable entry");
                    None
                }
            })
            .collect())
    }

    /// Every key's changes from now on, or after `revision`, read as `T`; entries that
    /// are not `T` are skipped (logged).
    pub async fn changes(
        &self,
        after: Option<u64>,
    ) -> Result<BoxStream<'static, Result<(u64, T), PartError>>, PartError> {
        self.changes_where(after, |_| true).await
    }

    /// [`Self::changes`] of the keys `keep` accepts.
    pub async fn changes_where(
        &self,
        after: Option<u64>,
        keep: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<BoxStream<'static, Result<(u64, T), PartError>>, PartError> {
        let bucket = self.kv.name().to_string();
        let changes = self.kv.changes(after).await?;
        let keep = Arc::new(keep);
        Ok(changes
            .filter_map(move |change| {
                let (bucket, keep) = (bucket.clone(), keep.clone());
                async move {
                    match change {
                        Ok(change) if !keep(&change.key) => None,
                        Ok(change) => match serde_json::from_slice(&change.value) {
                            Ok(value) => Some(Ok((change.revision, value))),
                            Err(error) => {
                                tracing::warn!(%bucket, key = %change.key, %error, "skipping an unreadable entry");
                                None
                            }
                        },
                        Err(error) => Some(Err(error)),
                    }
                }
            })
            .boxed())
    }

    pub async fn watch(&self, key: &str) -> Result<BoxStream<'static, Result<T, PartError>>, PartError> {
        let (bucket, key) = (self.kv.name().to_string(), key.to_string());
        let updates = self.kv.watch(&key).await?;
        Ok(updates
            .map(move |update| {
                let bytes = update?;
                serde_json::from_slice(&bytes).map_err(|source| unreadable(&bucket, &key, source))
            })
            .boxed())
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<T, PartError> {
        serde_json::from_slice(bytes).map_err(|source| {
            let error = unreadable(self.kv.name(), key, source);
            tracing::error!(%error, "unreadable key-value entry");
            error
        })
    }
}

/// An entry that is not what this build wrote: surfaced, never read as absent.
fn unreadable(bucket: &str, key: &str, source: serde_json::Error) -> PartError {
    PartError::give_up(format!("key-value bucket {bucket}: entry {key:?} is unreadable"), source)
}

fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value).expect("bucket values serialize").into()
}
