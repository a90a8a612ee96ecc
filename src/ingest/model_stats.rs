//! `GET /models/stats`: how each model has done, from the job states kept (the last 7
//! days): jobs ended, failures, median time and cost of a picture, and how often a
//! comparison's pick was its picture. An ordinary key sees its own jobs; an admin all.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::jobs::all_seen_by;
use crate::contract::jobs::{JobState, JobStatus};

/// One model's figures.
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub(super) struct ModelStats {
    pub model: String,
    /// Jobs that ended with a picture or a failure (cancelled ones are not the model's doing).
    pub jobs: u64,
    pub failures: u64,
    /// From request to stored picture, over the pictures made.
    pub median_duration_ms: Option<u64>,
    /// Over the pictures made whose cost is known.
    pub median_cost_usd: Option<f64>,
    /// Groups whose pick this model drew.
    pub picks: u64,
}

#[utoipa::path(
    get, path = "/models/stats", tag = "models", summary = "How each model has done",
    description = "Per model, over the jobs kept (the last 7 days; an ordinary key's own, an admin's all): jobs ended, failures, median time and cost of a picture, picks. Reads every kept job state: a report, not for polling.",
    responses((status = 200, description = "One entry per model, by name", body = serde_json::Value),
        (status = 503, description = "NATS is away", body = ErrorBody))
)]
pub(super) async fn model_stats(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let unavailable = |_| ApiError::queue_unavailable();
    let jobs = all_seen_by(&state, &caller).await?;
    let picked: Vec<String> = (state.jobs.all_groups().await.map_err(unavailable)?)
        .into_iter()
        .filter(|group| caller.may_see(group.owner.as_deref()))
        .filter_map(|group| group.picked)
        .collect();
    Ok(Json(serde_json::json!({"models": stats(&jobs, &picked)})).into_response())
}

/// The figures of each model over `jobs`, `picked` naming the jobs chosen.
pub(super) fn stats(jobs: &[JobStatus], picked: &[String]) -> Vec<ModelStats> {
    #[derive(Default)]
    struct Tally {
        jobs: u64,
        failures: u64,
        durations: Vec<u64>,
        costs: Vec<f64>,
        picks: u64,
    }
    let mut models: BTreeMap<String, Tally> = BTreeMap::new();
    let model_of: HashMap<&str, &str> =
        jobs.iter().filter_map(|job| Some((job.id.as_str(), job.model.as_deref()?))).collect();
    for job in jobs {
        let Some(model) = &job.model else { continue };
        let tally = models.entry(model.clone()).or_default();
        match (job.status, &job.result) {
            (JobState::Completed, Some(done)) => {
                tally.jobs += 1;
                tally.durations.push(done.duration_ms);
                tally.costs.extend(done.cost.cost_usd);
            }
            (JobState::Failed, _) => {
                tally.jobs += 1;
                tally.failures += 1;
            }
            _ => {}
        }
    }
    for job in picked {
        if let Some(tally) = model_of.get(job.as_str()).and_then(|model| models.get_mut(*model)) {
            tally.picks += 1;
        }
    }
    models
        .into_iter()
        .filter(|(_, tally)| tally.jobs > 0)
        .map(|(model, mut tally)| ModelStats {
            model,
            jobs: tally.jobs,
            failures: tally.failures,
            median_duration_ms: median(&mut tally.durations, |a, b| a.cmp(b)),
            median_cost_usd: median(&mut tally.costs, f64::total_cmp),
            picks: tally.picks,
        })
        .collect()
}

/// The middle value (the lower of the two middle ones for an even count).
fn median<T: Copy>(values: &mut [T], order: impl Fn(&T, &T) -> std::cmp::Ordering) -> Option<T> {
    values.sort_by(order);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::jobs::JobState;

    fn ended(id: &str, model: &str, state: JobState) -> JobStatus {
        JobStatus::new(&id.into(), state, "a cat", Some(model))
    }

    #[test]
    fn failures_count_as_jobs_cancels_do_not_and_a_pick_goes_to_the_model_that_drew_it() {
        let jobs = [
            ended("a", "m1", JobState::Failed),
            ended("b", "m1", JobState::Cancelled),
            ended("c", "m2", JobState::Failed),
            ended("d", "m2", JobState::Queued),
        ];
        let figures = stats(&jobs, &["c".to_string()]);
        assert_eq!(figures.len(), 2);
        assert_eq!((figures[0].model.as_str(), figures[0].jobs, figures[0].failures), ("m1", 1, 1));
        assert_eq!((figures[1].model.as_str(), figures[1].jobs, figures[1].picks), ("m2", 1, 1));
        assert_eq!(figures[1].median_duration_ms, None);
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&mut [30, 10, 20], |a: &u64, b| a.cmp(b)), Some(20));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0], f64::total_cmp), Some(2.0));
        assert_eq!(median(&mut Vec::<u64>::new(), |a, b| a.cmp(b)), None);
    }
}
