//! `huiying submit "prompt"`: queues a picture straight on NATS, as any client could, and
//! with `--wait` prints its link once the job is done.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use time::OffsetDateTime;

use crate::bus;
use crate::config::Config;
use crate::contract::JOBS_BUCKET;
use crate::contract::events::{EVENT_VERSION, ImageRequested};
use crate::contract::values::{JobId, ModelName, Prompt};
use crate::parts::JobBoard;
use crate::parts::nats::NatsPublisher;
use crate::parts::{self, JsonBucket};

/// What to queue.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// What to draw.
    pub prompt: String,
    /// The model; the generator's default when left out.
    #[arg(long)]
    pub model: Option<String>,
    /// Wait for the picture and print its link (or the failure).
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// The job's id, or with `wait` its picture's link.
pub async fn run(config: &Config, args: SubmitArgs) -> anyhow::Result<String> {
    let prompt = Prompt::parse(args.prompt)?;
    let model = args.model.map(ModelName::parse).transpose()?;
    let client = bus::try_connect(&config.nats, "huiying-submit").await?;
    let js = jetstream::new(client.clone());
    let event = ImageRequested {
        owner: None,
        version: EVENT_VERSION,
        id: JobId::random().to_string(),
        prompt: prompt.into(),
        model: model.map(String::from),
        notify_email: None,
        options: Default::default(),
        callback: Default::default(),
        user: None,
        kind: Default::default(),
        inputs: Vec::new(),
        group: None,
        requested_at: OffsetDateTime::now_utc(),
        deadline: None,
    };
    // Watch before publishing, so a quick job's end is not missed.
    let jobs = JobBoard::new(JsonBucket::new(Arc::new(js.get_key_value(JOBS_BUCKET).await?)));
    parts::publish(&NatsPublisher { client, jetstream: js }, &event).await?;
    if !args.wait {
        return Ok(event.id);
    }
    let Some(status) = jobs.wait_until_final(&event.id, Duration::from_secs(args.timeout)).await? else {
        anyhow::bail!(
            "job {} did not finish within {} s; follow it with GET /jobs/{}",
            event.id,
            args.timeout,
            event.id
        );
    };
    match (status.result, status.error) {
        (Some(done), _) => Ok(done.url),
        (None, Some(failed)) => anyhow::bail!("job {} failed at stage {:?}: {}", event.id, failed.stage, failed.error),
        _ => anyhow::bail!("job {} ended without a result", event.id),
    }
}
