//! A subscriber of your own, on huiying's stage API: prints each completed picture once.
//!
//! Run it with a NATS login of its own (the `subscriber` template in nats.conf):
//! `NATS_URL=nats://127.0.0.1:4222 NATS_USER=subscriber NATS_PASSWORD=... cargo run --example subscriber`
use std::time::Duration;

use huiying::bus::{ConsumerSpec, Subscriber};
use huiying::contract::events::{IMAGE_COMPLETED, ImageCompleted};
use huiying::failure::{Failure, RetryPolicy};
use huiying::parts::JsonBucket;
use huiying::worker::{self, Received, Stage};

/// Remembers which jobs it printed, so a redelivered event prints nothing.
#[derive(Clone)]
struct Printer {
    printed: JsonBucket<String>,
}

impl Stage for Printer {
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let event: ImageCompleted = received.decode()?; // unreadable: a dead letter, then term
        if self.printed.get(&event.id).await?.is_some() {
            return Ok(()); // done before: ack, do nothing
        }
        println!("{} {}", event.id, event.url); // the side effect, then its record
        self.printed.put(&event.id, &event.url).await?; // NATS away: nak, tried again
        Ok(()) // ack
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = huiying::config::load(None)?.config;
    let shutdown = huiying::cli::shutdown_on_signal();
    let nats = Subscriber::connect(&config.nats, "huiying-example-subscriber", &shutdown).await?;
    let consumer = nats
        .consumer(&ConsumerSpec {
            durable: "subscriber",
            description: "prints completed pictures",
            subjects: &[IMAGE_COMPLETED],
            ack_wait: Duration::from_secs(60),
            max_deliver: -1,
            max_ack_pending: 64,
        })
        .await?;
    let printer = Printer { printed: nats.bucket("subscriber_printed").await? };
    let policy =
        RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(60), jitter: 0.2, max_attempts: 1 };
    worker::run(consumer, nats.publisher(), worker::Settings::new(4, &config.nats, policy), shutdown, printer).await;
    Ok(())
}
