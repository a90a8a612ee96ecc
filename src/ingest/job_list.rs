//! `GET /jobs`: the caller's jobs (an admin's: every key's), most recently changed first,
//! a page at a time, from the job states kept (the last 7 days).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::jobs::{all_seen_by, shown_to};
use crate::contract::jobs::{JobState, JobStatus};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(super) struct JobListQuery {
    /// Only jobs in these states, comma-separated (`queued,generating`).
    state: Option<String>,
    /// Only jobs whose state changed at or after this time (RFC 3339).
    since: Option<String>,
    /// 1 to 200; 50 when absent.
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// What a page asks for, parsed.
#[derive(Debug, PartialEq)]
pub(super) struct Wanted {
    states: Vec<JobState>,
    since: Option<OffsetDateTime>,
    limit: usize,
    /// The last job of the page before: (when it changed, its id).
    after: Option<(i128, String)>,
}

impl TryFrom<JobListQuery> for Wanted {
    type Error = ApiError;

    fn try_from(query: JobListQuery) -> Result<Self, ApiError> {
        let states = (query.state.iter().flat_map(|states| states.split(',')))
            .filter(|name| !name.trim().is_empty())
            .map(|name| {
                serde_json::from_value(json!(name.trim())).map_err(|_| {
                    ApiError::bad_request(format!(
                        "state {name:?} is none of queued, translating, generating, storing, completed, failed, cancelled"
                    ))
                })
            })
            .collect::<Result<Vec<JobState>, ApiError>>()?;
        let since = match &query.since {
            None => None,
            Some(text) => Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                ApiError::bad_request(format!("since must be a time like 2026-12-07T08:00:00Z, got {text:?}"))
            })?),
        };
        let limit = match &query.limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {text:?}")))?,
        };
        let after = match &query.cursor {
            None => None,
            Some(cursor) => Some(
                cursor
                    .split_once('.')
                    .and_then(|(nanos, id)| Some((nanos.parse::<i128>().ok()?, id.to_string())))
                    .ok_or_else(|| ApiError::bad_request("cursor must be a next_cursor this route gave"))?,
            ),
        };
        Ok(Self { states, since, limit, after })
    }
}

#[utoipa::path(
    get, path = "/jobs", tag = "jobs", summary = "The caller's jobs, most recently changed first",
    description = "From the job states kept (the last 7 days); an ordinary key's own jobs, an admin's every key's. Reads every kept state: a page costs the same however deep. Waiting jobs' `queue_position` is in `GET /jobs/{id}`.",
    params(JobListQuery),
    responses((status = 200, description = "`jobs` (as GET /jobs/{id} shows each) and `next_cursor` (null on the last page)", body = serde_json::Value),
        (status = 400, description = "A bad parameter", body = ErrorBody))
)]
pub(super) async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<JobListQuery>,
) -> Result<Response, ApiError> {
    let wanted = Wanted::try_from(query)?;
    let (jobs, next) = page(all_seen_by(&state, &caller).await?, &wanted);
    let jobs: Vec<JobStatus> = jobs.into_iter().map(|job| shown_to(&caller, job)).collect();
    Ok(Json(json!({"jobs": jobs, "next_cursor": next})).into_response())
}

/// The page of `jobs` that `wanted` names, and the cursor of the next (if any).
pub(super) fn page(mut jobs: Vec<JobStatus>, wanted: &Wanted) -> (Vec<JobStatus>, Option<String>) {
    let place = |job: &JobStatus| (job.updated_at.unix_timestamp_nanos(), job.id.to_string());
    jobs.retain(|job| {
        (wanted.states.is_empty() || wanted.states.contains(&job.status))
            && wanted.since.is_none_or(|since| job.updated_at >= since)
            && wanted.after.as_ref().is_none_or(|after| place(job) < *after)
    });
    jobs.sort_by_key(|job| std::cmp::Reverse(place(job)));
    let more = jobs.len() > wanted.limit;
    jobs.truncate(wanted.limit);
    let next = more.then(|| jobs.last().map(place)).flatten().map(|(nanos, id)| format!("{nanos}.{id}"));
    (jobs, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState, minute: i64) -> JobStatus {
        let mut job = JobStatus::new(&id.into(), state, "a fox", None);
        job.updated_at = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute);
        job
    }

    fn wanted(query: &[(&str, &str)]) -> Result<Wanted, String> {
        let mut asked = JobListQuery::default();
        for (name, value) in query {
            let field = match *name {
                "state" => &mut asked.state,
                "since" => &mut asked.since,
                "limit" => &mut asked.limit,
                _ => &mut asked.cursor,
            };
            *field = Some(value.to_string());
        }
        Wanted::try_from(asked).map_err(|refused| refused.message().to_string())
    }

    #[test]
    fn pages_follow_each_other_newest_first_without_a_job_twice_or_missed() {
        let jobs: Vec<JobStatus> = (0..5).map(|n| job(&format!("j{n}"), JobState::Completed, n)).collect();
        let (first, next) = page(jobs.clone(), &wanted(&[("limit", "2")]).unwrap());
        assert_eq!(first.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(), ["j4", "j3"]);
        let (second, next) = page(jobs.clone(), &wanted(&[("limit", "2"), ("cursor", &next.unwrap())]).unwrap());
        assert_eq!(second.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(), ["j2", "j1"]);
        let (last, next) = page(jobs, &wanted(&[("limit", "2"), ("cursor", &next.unwrap())]).unwrap());
        assert_eq!((last.len(), next), (1, None));
    }

    #[test]
    fn state_and_since_filter_and_bad_values_are_refused_by_name() {
        let jobs = vec![job("a", JobState::Queued, 1), job("b", JobState::Failed, 2), job("c", JobState::Queued, 3)];
        let (queued, _) = page(jobs.clone(), &wanted(&[("state", "queued")]).unwrap());
        assert_eq!(queued.len(), 2);
        let (recent, _) = page(jobs, &wanted(&[("since", "1970-01-01T00:02:00Z")]).unwrap());
        assert_eq!(recent.iter().map(|j| j.id.to_string()).collect::<Vec<_>>(), ["c", "b"]);
        for (name, value) in
            [("state", "waiting"), ("since", "yesterday"), ("limit", "0"), ("limit", "500"), ("cursor", "x")]
        {
            let refused = wanted(&[(name, value)]).unwrap_err();
            assert!(refused.contains(name), "{name}: {refused}");
        }
    }
}
