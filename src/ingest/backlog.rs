//! What ingest takes in is bounded by: how many jobs wait for or are in generation, and
//! how full the picture bucket is.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::contract::consumers;
use crate::contract::events::ImageRequested;
use crate::parts::{Backlog, Room, Usage};

/// The generator consumer's pending and unacknowledged messages, read at most once a
/// second and counted up locally between readings.
pub(crate) struct QueueBound {
    backlog: Arc<dyn Backlog>,
    max: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl QueueBound {
    pub(crate) fn new(backlog: Arc<dyn Backlog>, max: u64) -> Self {
        Self { backlog, max, last: Mutex::new(None) }
    }

    /// `Some(waiting)` when the queue holds `[server] max_queued_jobs` or more.
    pub(crate) async fn is_full(&self) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let mut last = self.last.lock().await;
        let fresh = last.is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            // Before the generator first ran there is no consumer: nothing to count yet.
            // Unknown counts as empty: the publish that follows decides (503 when NATS is away).
            let waiting = self.backlog.waiting(consumers::GENERATOR).await.unwrap_or(0);
            *last = Some((Instant::now(), waiting));
        }
        let waiting = last.map_or(0, |(_, waiting)| waiting);
        (waiting >= self.max).then_some(waiting)
    }

    /// The generator's backlog now (for `/metrics`); `None` when NATS does not say.
    pub(crate) async fn waiting(&self) -> Option<u64> {
        self.backlog.waiting(crate::contract::consumers::GENERATOR).await
    }

    /// Job `id`'s place in the generator's queue: 1 + the jobs queued before it that the
    /// generator has not finished (1: none ahead). `None` once the job is finished, or when
    /// that is unknown. Reads the messages before it: at most `[server] max_queued_jobs`
    /// of them (10,000 without that bound).
    pub(crate) async fn position(&self, id: &str) -> Option<u64> {
        let message_id = crate::parts::message_id::<ImageRequested>(id);
        let limit = if self.max == 0 { 10_000 } else { self.max };
        let ahead = self.backlog.ahead_of(consumers::GENERATOR, &message_id, limit).await?;
        Some(ahead + 1)
    }

    /// Counts a job queued since the last reading.
    pub(crate) fn queued(&self) {
        if let Ok(mut last) = self.last.try_lock()
            && let Some((_, waiting)) = last.as_mut()
        {
            *waiting += 1;
        }
    }
}

/// The picture bucket's room, read at most once a second.
pub(crate) struct BucketBound {
    room: Arc<dyn Room>,
    last: Mutex<Option<(Instant, Option<Usage>)>>,
}

impl BucketBound {
    pub(crate) fn new(room: Arc<dyn Room>) -> Self {
        Self { room, last: Mutex::new(None) }
    }

    /// `Some(usage)` when the bucket has no room for another picture. Unknown counts as
    /// room: the write that follows decides.
    pub(crate) async fn is_full(&self) -> Option<Usage> {
        let mut last = self.last.lock().await;
        if !last.is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1)) {
            *last = Some((Instant::now(), self.room.usage().await));
        }
        last.and_then(|(_, usage)| usage).filter(Usage::is_full)
    }
}
