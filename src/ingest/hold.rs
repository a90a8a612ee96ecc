//! Holding a request that NATS cannot take yet, rather than answering 503: a cluster
//! elects a new leader of the job stream 4 to 9 s after the old one dies, and ingest's
//! connection to a node that died moves to another in moments. For up to `[server]
//! failover_wait` (less when the client asks `Prefer: wait=N`), each write is tried again
//! until NATS takes it; every one is safe to repeat (a publish carries the job's
//! `Nats-Msg-Id`, which JetStream keeps once; a claim or state is create-only).

use std::future::Future;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use super::AppState;
use super::body::{WaitPreference, preferred_wait};
use crate::parts::PartError;

/// The first pause between tries; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// The longest one try waits for an answer on a cluster. A write sent while no node leads
/// the stream, or through a node cut off by the network, is never answered; waiting out the
/// client's own 5 s for it would spend the hold on one try.
const LONGEST_TRY: Duration = Duration::from_secs(2);

/// How long one request may still be held.
pub(super) struct Hold {
    until: Instant,
    /// On a cluster a lost connection comes back through another node; on one server
    /// it comes back only with the server.
    cluster: bool,
}

impl Hold {
    pub(super) fn new(state: &AppState, headers: &HeaderMap) -> Self {
        let mut wait = state.settings.failover_wait;
        if let WaitPreference::Seconds(asked) = preferred_wait(headers) {
            wait = wait.min(asked);
        }
        Self { until: Instant::now() + wait, cluster: state.settings.nats_cluster }
    }

    /// Waits until ingest is connected to NATS; false when it is not by the end of the
    /// hold, or at once on one server.
    pub(super) async fn connected(&self, state: &AppState) -> bool {
        while !state.publisher.is_connected() {
            if !self.cluster || Instant::now() + FIRST_PAUSE > self.until {
                return false;
            }
            tokio::time::sleep(FIRST_PAUSE).await;
        }
        true
    }

    /// `write`, tried again while NATS cannot take it, until the hold is over.
    pub(super) async fn on<T, F, Fut>(&self, state: &AppState, mut write: F) -> Result<T, PartError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PartError>>,
    {
        let mut pause = FIRST_PAUSE;
        loop {
            let tried = if self.cluster {
                tokio::time::timeout(LONGEST_TRY, write()).await.unwrap_or_else(|_| {
                    Err(PartError::retry_later("writing to NATS", format!("no answer in {LONGEST_TRY:?}")))
                })
            } else {
                write().await
            };
            let error = match tried {
                Ok(done) => return Ok(done),
                Err(error) => error,
            };
            let connected = state.publisher.is_connected() || self.cluster;
            if !connected || Instant::now() + pause > self.until {
                return Err(error);
            }
            tracing::debug!(%error, "NATS cannot take the job yet; holding the request");
            metrics::counter!("huiying_requests_held_total").increment(1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}
