//! The loop's source on JetStream: a durable pull consumer.

use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{Ack, Delivery, Received, Source};
use crate::parts::PartError;

/// How long one pull request waits for messages, and how often the server says it is alive.
const PULL_EXPIRES: std::time::Duration = std::time::Duration::from_secs(10);
const PULL_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(3);

/// A JetStream message and what the loop reads of it.
pub struct NatsDelivery {
    message: Message,
    received: Received,
}

impl Delivery for NatsDelivery {
    fn received(&self) -> &Received {
        &self.received
    }

    async fn settle(&self, ack: Ack) -> Result<(), PartError> {
        let result = match ack {
            Ack::Done => self.message.double_ack().await,
            Ack::Nak(delay) => self.message.ack_with(AckKind::Nak(delay)).await,
            Ack::Term => self.message.ack_with(AckKind::Term).await,
            Ack::Progress => self.message.ack_with(AckKind::Progress).await,
        };
        result.map_err(|source| PartError::retry_later("acknowledging a delivery", source))
    }
}

impl Source for PullConsumer {
    type Delivery = NatsDelivery;

    async fn pull(&self, batch: usize) -> Result<BoxStream<'static, Result<NatsDelivery, PartError>>, PartError> {
        let messages = self
            .stream()
            .max_messages_per_batch(batch)
            // Short pulls with heartbeats: a pull lost with a server is noticed within
            // seconds (the defaults, 30 s and 15 s, stalled a failover for half a minute).
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| PartError::retry_later("pulling messages", e))?;
        Ok(messages
            .filter_map(|message| async move {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => return Some(Err(PartError::retry_later("pulling messages", e))),
                };
                match message.info() {
                    Ok(info) => {
                        let received = Received {
                            subject: message.subject.to_string(),
                            payload: message.payload.clone(),
                            attempt: u32::try_from(info.delivered).unwrap_or(1).max(1),
                            stream: info.stream.to_string(),
                            stream_sequence: info.stream_sequence,
                            published: info.published,
                        };
                        Some(Ok(NatsDelivery { received, message }))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "message without JetStream metadata; ignoring it");
                        None
                    }
                }
            })
            .boxed())
    }
}
