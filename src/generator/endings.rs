//! How a job ends at the generator without a picture: failed (with what its last call
//! cost), or cancelled (before the model, or after it with the call's cost).

use time::OffsetDateTime;

use super::providers::Unkept;
use super::{GeneratedImage, Generator};
use crate::contract::budget::BudgetRefusal;
use crate::contract::cost::Cost;
use crate::contract::events::{Cancellation, CheckedRequest, ImageFailed, JobFacts, Stage as JobStage};
use crate::contract::values::JobId;
use crate::failure::{Failure, FailureKind};
use crate::parts;

impl Generator {
    /// A transient failure is retried while the policy allows; otherwise the job ends,
    /// with what its last call cost.
    pub(super) async fn after_failure(&self, job: JobFacts<'_>, unkept: Unkept, attempt: u32) -> Result<(), Failure> {
        let Unkept { failure, cost } = unkept;
        let (stage, transient) = match failure.kind {
            FailureKind::Transient { .. } if !self.policy.is_last(attempt) => {
                tracing::warn!(job = %job.id, error = %failure, attempt, "provider failed; will retry");
                return Err(failure);
            }
            FailureKind::Refused => (JobStage::Request, false),
            FailureKind::Transient { .. } => (JobStage::Generate, true),
            FailureKind::Permanent => (JobStage::Generate, false),
        };
        tracing::warn!(job = %job.id, error = %failure.reason, "generation failed");
        let failed = ImageFailed::new(job, stage, failure.reason, transient, attempt).costing(cost);
        self.jobs.finish(&*self.publisher, &failed).await?;
        Ok(())
    }

    /// Whether the job is cancelled before it reaches the model: someone asked, or its
    /// deadline passed (also before a retry: nobody waits for it any more).
    pub(super) async fn cancellation(&self, request: &CheckedRequest) -> Result<Option<Cancellation>, Failure> {
        if let Some(asked) = self.jobs.cancel_request(&request.id).await? {
            return Ok(Some(Cancellation::asked(&asked)));
        }
        match request.deadline {
            Some(deadline) if deadline <= OffsetDateTime::now_utc() => Ok(Some(Cancellation::deadline())),
            _ => Ok(None),
        }
    }

    /// Ends the job as cancelled before any paid call.
    pub(super) async fn cancel(
        &self,
        job: JobFacts<'_>,
        cancellation: Cancellation,
        attempts: u32,
    ) -> Result<(), Failure> {
        self.cancel_costing(job, cancellation, attempts, Cost::nothing()).await
    }

    /// Ends the job as cancelled: `image.failed` (stage `cancelled`, with what it cost),
    /// then the state.
    pub(super) async fn cancel_costing(
        &self,
        job: JobFacts<'_>,
        cancellation: Cancellation,
        attempts: u32,
        cost: Cost,
    ) -> Result<(), Failure> {
        tracing::info!(job = %job.id, by = ?cancellation.by, "cancelled");
        let cancelled = ImageFailed::cancelled(job, cancellation, attempts).costing(cost);
        self.jobs.finish(&*self.publisher, &cancelled).await?;
        Ok(())
    }

    /// Ends the job refused by a budget, before any call: `image.failed` with stage
    /// `budget` (and which budget, when one was full).
    pub(super) async fn refuse(
        &self,
        job: JobFacts<'_>,
        error: String,
        refusal: Option<BudgetRefusal>,
        attempts: u32,
    ) -> Result<(), Failure> {
        tracing::warn!(job = %job.id, %error, "refused by a budget; the model was not called");
        metrics::counter!("huiying_budget_refusals_total", "stage" => "generator").increment(1);
        let failed = ImageFailed::over_budget(job, error, refusal, attempts);
        self.jobs.finish(&*self.publisher, &failed).await?;
        Ok(())
    }

    /// Ends a held call in the spend ledger: what it cost, or released when it cost
    /// nothing; then publishes the budget alerts that crossed. A lost alert is logged, not
    /// retried: a retry would call the model again.
    pub(super) async fn settle(&self, id: &JobId, drawn: &Result<GeneratedImage, Unkept>) -> Result<(), Failure> {
        let paid = match drawn {
            Ok(image) => Some(&image.cost),
            Err(unkept) if unkept.cost == Cost::nothing() => None,
            Err(unkept) => Some(&unkept.cost),
        };
        for alert in self.spending.settle(id, paid).await? {
            tracing::warn!(budget = %alert.id, spent_usd = alert.spent_usd, limit_usd = alert.limit_usd, "budget alert");
            if let Err(error) = parts::publish(&*self.publisher, &alert).await {
                tracing::error!(budget = %alert.id, %error, "the budget alert could not be published");
            }
        }
        Ok(())
    }

    /// Ends the job: `image.failed`, then the failed state.
    pub(super) async fn fail(
        &self,
        job: JobFacts<'_>,
        stage: JobStage,
        error: String,
        transient: bool,
        attempts: u32,
    ) -> Result<(), Failure> {
        tracing::warn!(job = %job.id, %error, "generation failed");
        let failed = ImageFailed::new(job, stage, error, transient, attempts);
        self.jobs.finish(&*self.publisher, &failed).await?;
        Ok(())
    }
}
