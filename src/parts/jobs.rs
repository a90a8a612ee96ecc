//! Job states in the `huiying_jobs` bucket, so that any ingest can answer
//! `GET /jobs/{id}` whichever process did the work.

use std::time::Duration;

use futures::StreamExt;

use super::{JsonBucket, PartError, Publish};
use crate::contract::events::Event;
use crate::contract::groups::{Group, group_key};
use crate::contract::jobs::{CancelRequest, DeletedJob, JobStatus, NotifyTargets};
use crate::contract::values::JobId;

/// Reads and writes job states.
#[derive(Clone)]
pub struct JobBoard {
    states: JsonBucket<JobStatus>,
    /// Requests to stop a job, beside its state (key `<id>.cancel`).
    cancels: JsonBucket<CancelRequest>,
    /// Marks of deleted jobs (key `<id>.deleted`).
    deleted: JsonBucket<DeletedJob>,
    /// Whom each job notifies (key `<id>.notify`).
    targets: JsonBucket<NotifyTargets>,
    /// Jobs asked for together (key `<group id>.group`).
    groups: JsonBucket<Group>,
}

/// Where a job's cancel request is kept: beside its state, so no other bucket (or
/// permission) is needed. Job ids hold no dots, so no job's state has this key.
fn cancel_key(id: &str) -> String {
    format!("{id}.cancel")
}

impl JobBoard {
    pub fn new(states: JsonBucket<JobStatus>) -> Self {
        Self {
            cancels: states.holding(),
            deleted: states.holding(),
            targets: states.holding(),
            groups: states.holding(),
            states,
        }
    }

    /// Asks every stage to stop the job. The first request stands; a repeat changes nothing.
    pub async fn request_cancel(&self, id: &str, request: &CancelRequest) -> Result<(), PartError> {
        self.cancels.create(&cancel_key(id), request).await.map(|_| ())
    }

    /// The job's cancel request, if someone asked.
    pub async fn cancel_request(&self, id: &str) -> Result<Option<CancelRequest>, PartError> {
        self.cancels.get(&cancel_key(id)).await
    }

    /// Records a new job's first state, unless a stage already recorded one (then it
    /// is left as it is, and the answer is false).
    pub async fn open(&self, status: &JobStatus) -> Result<bool, PartError> {
        self.states.create(&status.id, status).await
    }

    pub async fn set(&self, status: &JobStatus) -> Result<(), PartError> {
        self.states.put(&status.id, status).await
    }

    /// The job's state, or `None` for an unknown id.
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, PartError> {
        if JobId::parse(id).is_err() {
            return Ok(None);
        }
        self.states.get(id).await
    }

    /// Keeps whom the job notifies, out of its events.
    pub async fn set_targets(&self, id: &str, targets: &NotifyTargets) -> Result<(), PartError> {
        self.targets.put(&format!("{id}.notify"), targets).await
    }

    /// Whom the job notifies, when ingest kept that beside its state.
    pub async fn targets(&self, id: &str) -> Result<Option<NotifyTargets>, PartError> {
        self.targets.get(&format!("{id}.notify")).await
    }

    /// Keeps a group of jobs (before its first job is queued, so that whoever sees a job
    /// of it finds it).
    pub async fn set_group(&self, group: &Group) -> Result<(), PartError> {
        self.groups.put(&group_key(&group.id), group).await
    }

    /// The group `id`, when there is one.
    pub async fn group(&self, id: &str) -> Result<Option<Group>, PartError> {
        if JobId::parse(id).is_err() {
            return Ok(None);
        }
        self.groups.get(&group_key(id)).await
    }

    /// Forgets a deleted job: its state, cancel request and targets go, a mark of who
    /// owned it stays.
    pub async fn forget(&self, id: &str, deleted: &DeletedJob) -> Result<(), PartError> {
        self.deleted.put(&format!("{id}.deleted"), deleted).await?;
        self.states.delete(id).await?;
        self.targets.delete(&format!("{id}.notify")).await?;
        self.cancels.delete(&cancel_key(id)).await
    }

    /// The mark of a job deleted earlier, if it was.
    pub async fn deleted(&self, id: &str) -> Result<Option<DeletedJob>, PartError> {
        if JobId::parse(id).is_err() {
            return Ok(None);
        }
        self.deleted.get(&format!("{id}.deleted")).await
    }

    /// Marks record number `number` deleted too (`DELETE /records/7` names it so).
    pub async fn forget_record(&self, number: i64, deleted: &DeletedJob) -> Result<(), PartError> {
        self.deleted.put(&format!("record-{number}.deleted"), deleted).await
    }

    /// The mark of record number `number`, deleted earlier, if it was.
    pub async fn deleted_record(&self, number: i64) -> Result<Option<DeletedJob>, PartError> {
        self.deleted.get(&format!("record-{number}.deleted")).await
    }

    /// Ends a job: publishes its final event, then records the state it implies. In this
    /// order, so that a state never claims an end nobody was told of.
    pub async fn finish<E>(&self, publisher: &dyn Publish, event: &E) -> Result<(), PartError>
    where
        E: Event,
        for<'a> JobStatus: From<&'a E>,
    {
        super::publish(publisher, event).await?;
        let status = JobStatus::from(event);
        self.set(&status).await?;
        metrics::counter!("huiying_jobs_finished_total", "kind" => status.kind.name(), "status" => status.status.name())
            .increment(1);
        let cost = status.result.as_ref().map(|done| &done.cost).or(status.error.as_ref().map(|failed| &failed.cost));
        if let Some(usd) = cost.and_then(|cost| cost.cost_usd).filter(|usd| *usd > 0.0) {
            // USD are not whole: a gauge that only rises, read as a counter (`rate()` works).
            let (model, key) = (status.model.clone().unwrap_or_default(), status.owner.clone().unwrap_or_default());
            metrics::gauge!("huiying_cost_usd_total", "model" => model, "key" => key).increment(usd);
        }
        Ok(())
    }

    /// The job's state now, then each change (a state written again is still sent).
    pub async fn watch(
        &self,
        id: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<JobStatus, PartError>>, PartError> {
        self.states.watch(id).await
    }

    /// Every job's changes of state from now on, or after `revision`, with their revisions.
    pub async fn changes(
        &self,
        after: Option<u64>,
    ) -> Result<futures::stream::BoxStream<'static, Result<(u64, JobStatus), PartError>>, PartError> {
        self.states.changes_where(after, |key| !key.contains('.')).await
    }

    /// Every job state kept (the last 7 days), oldest change first. Reads them all: for
    /// lists and reports, not per job.
    pub async fn all(&self) -> Result<Vec<JobStatus>, PartError> {
        // Job ids hold no dots: one token is a state, two are what is kept beside it.
        self.states.values("*").await
    }

    /// Every group kept, oldest change first.
    pub async fn all_groups(&self) -> Result<Vec<Group>, PartError> {
        self.groups.values(&group_key("*")).await
    }

    /// Waits until the job is completed or failed; `None` when `timeout` passes first.
    pub async fn wait_until_final(&self, id: &str, timeout: Duration) -> Result<Option<JobStatus>, PartError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::contract::JOBS_BUCKET;
    use crate::contract::jobs::JobState;
    use crate::parts::memory::MemoryKv;

    #[tokio::test]
    async fn a_first_state_never_sets_back_a_job_a_stage_already_took() {
        let board = JobBoard::new(JsonBucket::new(Arc::new(MemoryKv::new(JOBS_BUCKET))));
        let queued = JobStatus::new(&"job-1".into(), JobState::Queued, "a red fox", None);
        let generating = JobStatus::new(&"job-1".into(), JobState::Generating, "a red fox", None);
        // The generator was quicker than ingest's first write: queued comes too late.
        board.set(&generating).await.unwrap();
        assert!(!board.open(&queued).await.unwrap());
        assert_eq!(board.get("job-1").await.unwrap().unwrap().status, JobState::Generating);
        // The usual order.
        let other = JobStatus::new(&"job-2".into(), JobState::Queued, "a cat", None);
        assert!(board.open(&other).await.unwrap());
        assert_eq!(board.get("job-2").await.unwrap().unwrap().status, JobState::Queued);
    }
}
