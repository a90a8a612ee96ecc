//! The one subscriber loop every consumer uses.
//!
//! A [`Stage`] gets a [`Received`] message and answers `Ok(())` or a [`Failure`]; the
//! loop turns that into the acknowledgement ([`decide`]): done → ack (after the side
//! effect, which the stage has finished), transient → nak after the stage's
//! [`RetryPolicy`] delay, anything else → the message is kept as a dead letter, then
//! terminated (poison no retry can fix). While a stage works, the loop sends progress
//! acks so a slow model call is not redelivered to another instance. At shutdown,
//! stages in flight get a grace period; what is still in hand after it is handed back.
//!
//! The loop reads from a [`Source`] of [`Delivery`]s: a JetStream pull consumer in
//! production ([`nats`]), a channel in the unit tests.

pub mod nats;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::contract::events::{EVENT_VERSION, Event};
use crate::failure::{Failure, FailureKind, RetryPolicy};
use crate::parts::PartError;
use crate::parts::Publish;

/// A consumer's work on one message.
pub trait Stage: Clone + Send + Sync + 'static {
    /// Does the side effect (once per job, however often the message comes) or says why
    /// not.
    fn handle(&self, received: Received) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// A delivered message, detached from its acknowledgement handle.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub payload: Bytes,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub stream: String,
    pub stream_sequence: u64,
    pub published: OffsetDateTime,
}

impl Received {
    /// The event in this message; an unreadable one, or one of a newer version than this
    /// build, is permanent.
    pub fn decode<E: Event>(&self) -> Result<E, Failure> {
        let event: E = serde_json::from_slice(&self.payload)
            .map_err(|e| Failure::permanent(format!("not an {} event: {e}", E::SUBJECT)).caused_by(e))?;
        if event.version() > EVENT_VERSION {
            return Err(Failure::permanent(format!(
                "{} event version {} is newer than this build ({EVENT_VERSION})",
                E::SUBJECT,
                event.version()
            )));
        }
        Ok(event)
    }
}

/// What to do with a message once its stage is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The side effect is done (or was done before): acknowledge.
    Done,
    /// Try again after this delay (a transient failure).
    Retry(Duration),
    /// The message can never succeed: keep it as a dead letter, stop delivering it.
    Reject(String),
}

/// The one mapping from a stage's answer to what becomes of the message.
pub fn decide(result: Result<(), Failure>, attempt: u32, policy: &RetryPolicy) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(Failure { kind: FailureKind::Transient { after }, .. }) => Outcome::Retry(policy.delay(attempt, after)),
        Err(failure) => Outcome::Reject(failure.reason),
    }
}

/// The acknowledgements a delivery can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Done; waits for the server to confirm, so a lost ack shows up as an error.
    Done,
    /// Deliver again, after the delay or at once.
    Nak(Option<Duration>),
    /// Never deliver again.
    Term,
    /// Still working: restart the ack timer.
    Progress,
}

/// One message as the loop holds it.
pub trait Delivery: Send + Sync + 'static {
    fn received(&self) -> &Received;
    fn settle(&self, ack: Ack) -> impl Future<Output = Result<(), PartError>> + Send;
}

/// Where the loop gets its messages.
pub trait Source: Send + Sync {
    type Delivery: Delivery;
    /// Messages, at most `batch` buffered at a time. The stream ends when the source
    /// wants to be asked again.
    fn pull(
        &self,
        batch: usize,
    ) -> impl Future<Output = Result<BoxStream<'static, Result<Self::Delivery, PartError>>, PartError>> + Send;
}

/// How the loop works a consumer.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The stage's name in metrics (`generator`, `store`, ...; `subscriber` unless named).
    pub name: &'static str,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// The consumer's ack wait; progress acks go out every third of it.
    pub ack_wait: Duration,
    /// At shutdown, how long stages in flight may still finish before their messages are
    /// handed back (nak) for another instance.
    pub shutdown_grace: Duration,
    /// The stage's retry policy: the delay of each nak.
    pub policy: RetryPolicy,
}

impl Settings {
    pub fn new(concurrency: usize, nats: &NatsConfig, policy: RetryPolicy) -> Self {
        Self { name: "subscriber", concurrency, ack_wait: nats.ack_wait, shutdown_grace: nats.shutdown_grace, policy }
    }

    /// The same settings under the stage's name in metrics.
    pub fn named(self, name: &'static str) -> Self {
        Self { name, ..self }
    }
}

/// Runs `stage` on every message of `source`, at most `concurrency` at once, until
/// `shutdown` fires; then lets the stages in flight finish within the grace period,
/// hands back the rest, and returns.
pub async fn run<S: Source, T: Stage>(
    source: S,
    dead_letters: Arc<dyn Publish>,
    settings: Settings,
    shutdown: CancellationToken,
    stage: T,
) {
    let hand_back = CancellationToken::new();
    let concurrency = settings.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    'connect: while !shutdown.is_cancelled() {
        // Pull no more than we can work on, so buffered messages do not age unacked.
        let mut messages = match source.pull(concurrency).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot pull messages; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => break 'connect,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'connect,
                }
            }
        };
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => {
                    hand_back_buffered(&mut messages).await;
                    break 'connect;
                }
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    hand_back_buffered(&mut messages).await;
                    break 'connect;
                }
                next = messages.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let (stage, dead_letters, hand_back) = (stage.clone(), dead_letters.clone(), hand_back.clone());
                    in_flight.spawn(async move {
                        handle_one(delivery, &stage, &*dead_letters, &settings, &hand_back).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => {
                    // The pull may have gone with a server (a cluster node died, the
                    // consumer's leader moved): start it afresh rather than wait it out.
                    tracing::warn!(%error, "pull consumer reported a problem; pulling afresh");
                    hand_back_buffered(&mut messages).await;
                    continue 'connect;
                }
                None => continue 'connect,
            }
            while in_flight.try_join_next().is_some() {}
        }
    }
    let finish_in_flight = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.shutdown_grace, finish_in_flight).await.is_err() {
        tracing::warn!(grace = ?settings.shutdown_grace, "handing back messages still in hand");
        hand_back.cancel();
        while in_flight.join_next().await.is_some() {}
    }
}

/// Messages delivered to us but not yet started: handed back at once (nak), so that
/// another instance takes them now rather than after the ack wait.
async fn hand_back_buffered<D: Delivery>(messages: &mut BoxStream<'static, Result<D, PartError>>) {
    while let Some(Some(Ok(delivery))) = messages.next().now_or_never() {
        if let Err(error) = delivery.settle(Ack::Nak(None)).await {
            tracing::debug!(%error, "hand-back failed; redelivered after the ack wait");
        }
    }
}

async fn handle_one<D: Delivery, T: Stage>(
    delivery: D,
    stage: &T,
    dead_letters: &dyn Publish,
    settings: &Settings,
    hand_back: &CancellationToken,
) {
    let received = delivery.received().clone();
    let started = std::time::Instant::now();
    let work = stage.handle(received.clone());
    tokio::pin!(work);
    let period = (settings.ack_wait / 3).max(Duration::from_millis(100));
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = hand_back.cancelled() => {
                // Shutting down and out of time: redeliver it now rather than after ack_wait.
                if let Err(error) = delivery.settle(Ack::Nak(None)).await {
                    tracing::warn!(%error, "hand-back failed; redelivered after the ack wait");
                }
                return;
            }
            _ = keep_alive.tick() => {
                if let Err(error) = delivery.settle(Ack::Progress).await {
                    tracing::warn!(%error, "progress ack failed");
                }
            }
        }
    };
    let outcome = decide(result, received.attempt, &settings.policy);
    let name = settings.name;
    metrics::histogram!("huiying_stage_duration_seconds", "stage" => name).record(started.elapsed().as_secs_f64());
    let result = match outcome {
        Outcome::Done => "done",
        Outcome::Retry(_) => "retry",
        Outcome::Reject(_) => "reject",
    };
    metrics::counter!("huiying_stage_deliveries_total", "stage" => name, "outcome" => result).increment(1);
    let settled = match &outcome {
        Outcome::Done => delivery.settle(Ack::Done).await,
        Outcome::Retry(delay) => {
            tracing::debug!(subject = %received.subject, attempt = received.attempt, ?delay, "will retry");
            delivery.settle(Ack::Nak(Some(*delay))).await
        }
        Outcome::Reject(reason) => {
            tracing::warn!(subject = %received.subject, %reason, "rejecting message for good");
            // Kept first, terminated second: a failure here redelivers rather than loses it.
            match dead_letters.dead_letter(&received.subject, received.payload.clone(), reason).await {
                Ok(()) => delivery.settle(Ack::Term).await,
                Err(error) => {
                    tracing::warn!(%error, "dead letter not stored; will retry");
                    delivery.settle(Ack::Nak(Some(Duration::from_secs(5)))).await
                }
            }
        }
    };
    if let Err(error) = settled {
        tracing::warn!(%error, ?outcome, "acknowledgement failed; the message will be redelivered");
    }
}

/// Fault-injection hook for the crash tests: when the environment variable
/// `HUIYING_CRASH_AT` names this point, the process aborts here as if killed (no
/// cleanup, no acknowledgement). Unset in normal runs, where it costs one lookup.
pub fn crash_point(point: &str) {
    if std::env::var_os("HUIYING_CRASH_AT").is_some_and(|value| value == point) {
        eprintln!("HUIYING_CRASH_AT={point}: aborting here on purpose");
        std::process::abort();
    }
}
