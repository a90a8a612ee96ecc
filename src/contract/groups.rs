//! Jobs asked for together: `n` pictures of one request. Each picture is a job of its
//! own (stored, recorded, counted against quotas and budgets like any), carrying a
//! [`GroupRef`]; the group itself is kept beside the job states (key `<group id>.group`),
//! so `GET /groups/{id}` and the mailer's one mail for the whole find its members.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Which group a job belongs to, and its place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct GroupRef {
    /// The group's id (a job id that no job has).
    pub id: String,
    /// 0-based place of this job in the group.
    pub index: u32,
    /// How many jobs the group has.
    pub size: u32,
}

/// Who is told when a group's jobs end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupNotify {
    /// One mail when every job has ended, listing them all.
    #[default]
    Summary,
    /// A mail per job, as for jobs asked for alone.
    Each,
    /// No mail.
    None,
}

/// A group, as ingest keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub id: String,
    /// The job ids, in order.
    pub members: Vec<String>,
    pub prompt: String,
    #[serde(default)]
    pub notify: GroupNotify,
    /// The API key's name that asked (absent: no key's, admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Why the group has fewer jobs than were asked for (a quota or budget filled up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_short: Option<String>,
    /// The job chosen as the group's best (`POST /groups/{id}/pick`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked: Option<String>,
}

/// Where a group is kept in the job-state bucket. Job ids hold no dots, so no job's
/// state has this key.
pub fn group_key(id: &str) -> String {
    format!("{id}.group")
}
