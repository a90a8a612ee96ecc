//! One paid call to a model, inside its budget; and the fallbacks a model names, tried
//! when its provider still fails after its retries.

use super::budget::Admission;
use super::providers::Unkept;
use super::{EditInput, GeneratedImage, Generator};
use crate::contract::budget::BudgetRefusal;
use crate::contract::events::{CheckedRequest, Fallback, JobKind};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::values::ModelName;
use crate::failure::Failure;

/// What came of asking one model.
pub(super) enum Call {
    /// A budget kept the model from being called.
    Refused { error: String, refusal: Option<BudgetRefusal> },
    /// The model was asked: its picture, or why not and what that cost.
    Made(Result<GeneratedImage, Unkept>),
}

/// The picture that was drawn (or the last failure), by which model, and whether a
/// fallback drew it.
pub(super) struct Drawn {
    pub(super) result: Result<GeneratedImage, Unkept>,
    pub(super) model: ModelName,
    pub(super) fallback: Option<Fallback>,
}

impl Generator {
    /// Asks `model` for the picture: its estimate held against the budgets first, the
    /// call settled after. The error is NATS (the delivery is retried).
    pub(super) async fn call(
        &self,
        request: &CheckedRequest,
        model: &ModelName,
        prompt: &str,
        inputs: &[EditInput],
    ) -> Result<Call, Failure> {
        let estimate = self.providers.estimate(model, &request.options);
        let admission = self.spending.reserve(&request.id, request.owner.as_deref(), model, estimate).await?;
        if let Admission::Refused { error, refusal } = admission {
            return Ok(Call::Refused { error, refusal });
        }
        let generating = JobStatus::new(&request.id, JobState::Generating, &request.prompt, Some(model))
            .of_kind(request.kind)
            .owned_by(request.owner.as_deref());
        self.jobs.set(&generating).await?;
        tracing::info!(job = %request.id, %model, kind = request.kind.name(), "generating");
        let drawn = match request.kind {
            JobKind::Generate => self.providers.generate(prompt, model, &request.options, self.strict_options).await,
            _ => self.providers.edit(prompt, model, inputs, &request.options).await,
        };
        let result = match &drawn {
            Ok(_) => "ok",
            Err(unkept) if unkept.failure.is_transient() => "transient_error",
            Err(_) => "error",
        };
        let provider = self.providers.provider_name(model);
        metrics::counter!("huiying_provider_calls_total", "provider" => provider, "model" => model.to_string(), "result" => result)
            .increment(1);
        if admission == Admission::Held {
            self.settle(&request.id, &drawn).await?;
        }
        Ok(Call::Made(drawn))
    }

    /// After the model asked for failed on its last attempt with a failure worth another
    /// try, its fallbacks are asked at once, one call each, in order: the retries were
    /// spent on the first, and a user waits. A refusal (content, options) never falls back.
    pub(super) async fn fall_back(
        &self,
        request: &CheckedRequest,
        first: Unkept,
        attempt: u32,
        prompt: &str,
        inputs: &[EditInput],
    ) -> Result<Drawn, Failure> {
        let model = &request.model;
        let fallbacks = self.providers.fallbacks_of(model);
        if !first.failure.is_transient() || !self.policy.is_last(attempt) || fallbacks.is_empty() {
            return Ok(Drawn { result: Err(first), model: model.clone(), fallback: None });
        }
        let mut reasons = vec![format!("{model}: {}", first.failure.reason)];
        let mut last = first;
        for next in fallbacks {
            if self.cancellation(request).await?.is_some() {
                break;
            }
            let Ok(next) = ModelName::parse(next) else { continue };
            tracing::warn!(job = %request.id, from = %model, to = %next, "falling back");
            match self.call(request, &next, prompt, inputs).await? {
                Call::Refused { error, .. } => reasons.push(format!("{next}: {error}")),
                Call::Made(Ok(image)) => {
                    let fallback = Fallback { requested_model: model.to_string(), reason: reasons.join("; ") };
                    return Ok(Drawn { result: Ok(image), model: next, fallback: Some(fallback) });
                }
                Call::Made(Err(unkept)) => {
                    reasons.push(format!("{next}: {}", unkept.failure.reason));
                    last = unkept;
                }
            }
        }
        // Every model failed: the job's error names each.
        let failure = Failure::transient(reasons.join("; "));
        Ok(Drawn { result: Err(Unkept { failure, cost: last.cost }), model: model.clone(), fallback: None })
    }
}
