//! Job states in the `huiying_jobs` bucket, so that any ingest can answer
//! `GET /jobs/{id}` whichever process did the work.

use std::time::Duration;

use futures::StreamExt;

use crate::bus::BusError;
use crate::contract::events::Event;
use crate::contract::jobs::JobStatus;
use crate::contract::values::JobId;
use crate::parts::{self, JsonBucket, Publish};

/// Reads and writes job states.
#[derive(Clone)]
pub struct JobBoard {
    states: JsonBucket<JobStatus>,
}

impl JobBoard {
    pub fn new(states: JsonBucket<JobStatus>) -> Self {
        Self { states }
    }

    pub async fn set(&self, status: &JobStatus) -> Result<(), BusError> {
        self.states.put(&status.id, status).await
    }

    /// The job's state, or `None` for an unknown id.
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, BusError> {
        if JobId::parse(id).is_err() {
            return Ok(None);
        }
        self.states.get(id).await
    }

    /// Ends a job: publishes its final event, then records the state it implies. In this
    /// order, so that a state never claims an end nobody was told of.
    pub async fn finish<E>(&self, publisher: &dyn Publish, event: &E) -> Result<(), BusError>
    where
        E: Event,
        for<'a> JobStatus: From<&'a E>,
    {
        parts::publish(publisher, event).await?;
        let status = JobStatus::from(event);
        self.set(&status).await?;
        let state = if status.result.is_some() { "completed" } else { "failed" };
        metrics::counter!("huiying_jobs_finished_total", "kind" => status.kind.name(), "status" => state).increment(1);
        Ok(())
    }

    /// The job's state now, then each change (a state written again is still sent).
    pub async fn watch(
        &self,
        id: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<JobStatus, BusError>>, BusError> {
        self.states.watch(id).await
    }

    /// Every job's changes of state from now on, or after `revision`, with their revisions.
    pub async fn changes(
        &self,
        after: Option<u64>,
    ) -> Result<futures::stream::BoxStream<'static, Result<(u64, JobStatus), BusError>>, BusError> {
        self.states.changes(after).await
    }

    /// Waits until the job is completed or failed; `None` when `timeout` passes first.
    pub async fn wait_until_final(&self, id: &str, timeout: Duration) -> Result<Option<JobStatus>, BusError> {
        // The watch starts with the current value, so nothing between a check and the
        // watch can be missed.
        let mut updates = self.states.watch(id).await?;
        let wait = async {
            while let Some(status) = updates.next().await {
                let status = status?;
                if status.status.is_final() {
                    return Ok(Some(status));
                }
            }
            Ok(None)
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Ok(None))
    }
}
