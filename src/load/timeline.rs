//! Each job's way through the pipeline, read back after a run: when it was requested,
//! generated, completed and mailed (the stream's and the mail log's timestamps), the
//! stage latencies from those, and `jobs.csv` for `--keep`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use time::OffsetDateTime;

/// When each job passed each point, from the stream's and the mail log's timestamps.
#[derive(Default)]
pub(super) struct Timeline {
    requested: Option<OffsetDateTime>,
    generated: Option<OffsetDateTime>,
    completed: Option<OffsetDateTime>,
    mailed: Option<OffsetDateTime>,
}

/// When each job passed each point, read from the stream's and the mail log's timestamps.
pub(super) async fn timelines(admin: &async_nats::Client) -> anyhow::Result<HashMap<String, Timeline>> {
    let js = jetstream::new(admin.clone());
    let mut jobs: HashMap<String, Timeline> = HashMap::new();
    let mail_prefix = format!("$KV.{}.", crate::contract::MAIL_BUCKET);
    for stream_name in [crate::contract::STREAM.to_string(), format!("KV_{}", crate::contract::MAIL_BUCKET)] {
        let stream = js.get_stream(&stream_name).await?;
        let total = stream.cached_info().state.messages;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig { ..Default::default() })
            .await
            .context("reading the stream")?;
        let mut messages = consumer.messages().await?.take(total as usize);
        while let Some(message) = messages.next().await {
            let message = message?;
            let published = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.published;
            let subject = message.subject.as_str();
            if let Some(key) = subject.strip_prefix(&mail_prefix) {
                if let Some(id) = key.strip_suffix(".completed") {
                    jobs.entry(id.to_string()).or_default().mailed.get_or_insert(published);
                }
                continue;
            }
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload) else { continue };
            let Some(id) = event["id"].as_str() else { continue };
            let timeline = jobs.entry(id.to_string()).or_default();
            let point = match subject {
                "image.requested" => &mut timeline.requested,
                "image.generated" => &mut timeline.generated,
                "image.completed" => &mut timeline.completed,
                _ => continue,
            };
            point.get_or_insert(published);
        }
    }
    Ok(jobs)
}

/// Per-stage latencies in milliseconds: (name, values).
pub(super) fn stage_latencies(jobs: &HashMap<String, Timeline>) -> Vec<(&'static str, Vec<f64>)> {
    let between = |from: fn(&Timeline) -> Option<OffsetDateTime>, to: fn(&Timeline) -> Option<OffsetDateTime>| {
        jobs.values().filter_map(|t| Some((to(t)? - from(t)?).as_seconds_f64() * 1000.0)).collect::<Vec<f64>>()
    };
    vec![
        ("generator (requested → generated)", between(|t| t.requested, |t| t.generated)),
        ("store (generated → completed)", between(|t| t.generated, |t| t.completed)),
        ("mailer (completed → mail written)", between(|t| t.completed, |t| t.mailed)),
        ("end to end (requested → mail written)", between(|t| t.requested, |t| t.mailed)),
    ]
}

/// `jobs.csv` in the kept folder: each job's points in milliseconds after the first
/// request, in the order requested, to see when the slow ones were.
pub(super) fn write(dir: &Path, jobs: &HashMap<String, Timeline>) -> anyhow::Result<()> {
    let start = jobs.values().filter_map(|t| t.requested).min();
    let mut rows: Vec<(&String, &Timeline)> = jobs.iter().filter(|(_, t)| t.requested.is_some()).collect();
    rows.sort_by_key(|(_, t)| t.requested);
    let mut csv = String::from("job,requested,generated,completed,mailed\n");
    for (id, t) in rows {
        let ms = |point: Option<OffsetDateTime>| match (point, start) {
            (Some(point), Some(start)) => format!("{:.1}", (point - start).as_seconds_f64() * 1000.0),
            _ => String::new(),
        };
        let points = [t.requested, t.generated, t.completed, t.mailed].map(ms);
        csv.push_str(&format!("{id},{}\n", points.join(",")));
    }
    std::fs::write(dir.join("jobs.csv"), csv)?;
    Ok(())
}
