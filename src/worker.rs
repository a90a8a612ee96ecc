//! The one subscriber loop every consumer uses.
//!
//! A handler gets a [`Received`] message and answers an [`Outcome`]; the loop turns
//! that into the JetStream acknowledgement: `Done` → ack (after the side effect, which
//! the handler has finished), `Retry` → nak with a delay, `Reject` → term (poison that
//! no retry can fix). While a handler works, the loop sends progress acks so a slow
//! model call is not redelivered to another instance.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::NatsConfig;

/// What to do with a message once its handler is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The side effect is done (or was done before): acknowledge.
    Done,
    /// Try again after this delay (a transient failure).
    Retry(Duration),
    /// The message can never succeed: stop delivering it.
    Reject(String),
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

/// How long the loop waits on others: JetStream for an ack, itself at shutdown.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// The consumer's ack wait; progress acks go out every third of it.
    pub ack_wait: Duration,
    /// At shutdown, how long handlers in flight may still finish before their messages are
    /// handed back (nak) for another instance.
    pub shutdown_grace: Duration,
}

impl Patience {
    pub fn from_config(nats: &NatsConfig) -> Self {
        Self { ack_wait: nats.ack_wait(), shutdown_grace: Duration::from_secs(nats.shutdown_grace) }
    }
}

/// Runs `handler` on every message of `consumer`, at most `concurrency` at once, until
/// `shutdown` fires; then lets the handlers in flight finish within the grace period,
/// hands back the rest, and returns.
pub async fn run<H, F>(
    bus: Bus,
    consumer: PullConsumer,
    concurrency: usize,
    patience: Patience,
    shutdown: CancellationToken,
    handler: H,
) -> anyhow::Result<()>
where
    H: Fn(Received) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let ack_wait = patience.ack_wait;
    let hand_back = CancellationToken::new();
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    'connect: while !shutdown.is_cancelled() {
        // Pull no more than we can work on, so buffered messages do not age unacked.
        let mut messages = match consumer.stream().max_messages_per_batch(concurrency).messages().await {
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
                Some(Ok(message)) => {
                    let (handler, bus, hand_back) = (handler.clone(), bus.clone(), hand_back.clone());
                    in_flight.spawn(async move {
                        handle_one(&bus, message, ack_wait, &hand_back, handler).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => tracing::warn!(%error, "pull consumer reported a problem"),
                None => continue 'connect,
            }
            while in_flight.try_join_next().is_some() {}
        }
    }
    let finish_in_flight = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(patience.shutdown_grace, finish_in_flight).await.is_err() {
        tracing::warn!(grace = ?patience.shutdown_grace, "handing back messages still in hand");
        hand_back.cancel();
        while in_flight.join_next().await.is_some() {}
    }
    Ok(())
}

/// Messages delivered to us but not yet started: handed back at once (nak), so that
/// another instance takes them now rather than after the ack wait.
async fn hand_back_buffered(messages: &mut async_nats::jetstream::consumer::pull::Stream) {
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
            tracing::debug!(%error, "hand-back failed; redelivered after the ack wait");
        }
    }
}

async fn handle_one<H, F>(bus: &Bus, message: Message, ack_wait: Duration, hand_back: &CancellationToken, handler: H)
where
    H: Fn(Received) -> F,
    F: Future<Output = Outcome>,
{
    let received = match message.info() {
        Ok(info) => Received {
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            attempt: u32::try_from(info.delivered).unwrap_or(1).max(1),
            stream: info.stream.to_string(),
            stream_sequence: info.stream_sequence,
            published: info.published,
        },
        Err(error) => {
            tracing::warn!(%error, "message without JetStream metadata; ignoring it");
            return;
        }
    };
    let work = handler(received);
    tokio::pin!(work);
    let period = (ack_wait / 3).max(Duration::from_millis(100));
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            _ = hand_back.cancelled() => {
                // Shutting down and out of time: redeliver it now rather than after ack_wait.
                if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                    tracing::warn!(%error, "hand-back failed; redelivered after the ack wait");
                }
                return;
            }
            _ = keep_alive.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::warn!(%error, "progress ack failed");
                }
            }
        }
    };
    let acked = match &outcome {
        // Wait for the server to confirm, so a lost ack shows up here and not as a duplicate.
        Outcome::Done => message.double_ack().await,
        Outcome::Retry(delay) => message.ack_with(AckKind::Nak(Some(*delay))).await,
        Outcome::Reject(reason) => {
            tracing::warn!(subject = %message.subject, %reason, "rejecting message for good");
            // Kept first, terminated second: a failure here redelivers rather than loses it.
            match bus.dead_letter(&message.subject, message.payload.clone(), reason).await {
                Ok(()) => message.ack_with(AckKind::Term).await,
                Err(error) => {
                    tracing::warn!(%error, "dead letter not stored; will retry");
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await
                }
            }
        }
    };
    if let Err(error) = acked {
        tracing::warn!(%error, ?outcome, "acknowledgement failed; the message will be redelivered");
    }
}

/// Exponential backoff: `base`, `2·base`, `4·base` ... for attempts 1, 2, 3 ..., at most `cap`.
pub fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(cap)
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
