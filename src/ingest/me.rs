//! `GET /me`: which key the caller is, as the web page needs it (an admin's gallery can
//! filter by owner). Never the key itself.

use axum::Json;
use serde::Serialize;

use super::access::Caller;

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Me {
    /// The key's name; absent when the server takes requests without keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// Sees and manages every key's jobs.
    admin: bool,
    /// The key's daily job quota, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs_per_day: Option<u64>,
}

#[utoipa::path(
    get, path = "/me", tag = "operations", summary = "Which API key this is",
    responses((status = 200, body = Me))
)]
pub(super) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        key: caller.owner().map(String::from),
        admin: caller.is_admin(),
        jobs_per_day: caller.jobs_per_day().map(|n| n.get()),
    })
}
