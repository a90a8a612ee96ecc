//! `GET /records`, `GET /records/{id}`, `GET /images`: asked of the store over NATS, so
//! that ingest, on any host, never opens the database.

use crate::contract::events::JobKind;
use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use crate::contract::records::{
    Answer, IMAGES_LIST, ImageFile, ImageList, ImagePage, RECORDS_GET, RECORDS_LIST, RecordQuery, RecordView,
    RecordViewPage,
};
use crate::contract::values::JobId;
use crate::parts::RequestError;

/// Asks the store; its answer, or an error a client can act on.
pub(super) async fn ask_store<T: DeserializeOwned>(
    state: &AppState,
    subject: &'static str,
    payload: Bytes,
) -> Result<T, ApiError> {
    let reply = state.store.request(subject, payload).await.map_err(|error| match error {
        RequestError::NoResponders(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is not running; try again shortly")
        }
        RequestError::TimedOut(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the store did not answer in time"),
        RequestError::Failed { .. } => {
            tracing::warn!(%error, "store request failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer; try again shortly")
        }
    })?;
    match serde_json::from_slice::<Answer<T>>(&reply) {
        Ok(Answer::Ok(value)) => Ok(value),
        Ok(Answer::Error { status, message }) => {
            Err(ApiError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message))
        }
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("the store's answer was unreadable: {e}"))),
    }
}

/// `GET /records?page&limit&keyword&model&date_from&date_to&implicit_label&explicit_label`
/// (dates are UTC days, inclusive; labels `true` or `false`).
#[utoipa::path(
    get, path = "/records", tag = "records", summary = "Stored pictures, newest first",
    params(
        ("page" = Option<u32>, Query), ("limit" = Option<u32>, Query, description = "at most 100"),
        ("keyword" = Option<String>, Query, description = "in either prompt, Chinese or English"),
        ("model" = Option<String>, Query), ("kind" = Option<String>, Query, description = "generate, edit, compose, style, fusion"),
        ("date_from" = Option<String>, Query, description = "YYYY-MM-DD, UTC, inclusive"),
        ("date_to" = Option<String>, Query, description = "YYYY-MM-DD, UTC, inclusive"),
        ("implicit_label" = Option<bool>, Query), ("explicit_label" = Option<bool>, Query),
    ),
    responses((status = 200, body = RecordViewPage), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "The store is not running", body = ErrorBody))
)]
pub(super) async fn list_records(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = record_query(&params, &caller)?;
    Ok(Json(records_page(&state, query).await?).into_response())
}

/// A page of records from the store, in as many answers as it takes: a page larger than
/// one NATS message comes in parts (`more`), each asked for past the records received.
pub(super) async fn records_page(state: &AppState, mut query: RecordQuery) -> Result<RecordViewPage, ApiError> {
    let mut page: Option<RecordViewPage> = None;
    loop {
        let payload = serde_json::to_vec(&query).expect("queries serialize");
        let part: RecordViewPage = ask_store(state, RECORDS_LIST, payload.into()).await?;
        let (more, received) = (part.more, part.records.len() as u32);
        match page.as_mut() {
            None => page = Some(part),
            Some(page) => page.records.extend(part.records),
        }
        // `received` is never 0 with `more` set (a part holds one record at least).
        if !more || received == 0 {
            break;
        }
        query.skip += received;
    }
    let mut page = page.expect("asked at least once");
    page.more = false;
    Ok(page)
}

/// The parameters of `GET /records` as a query, naming the one that is wrong. An
/// ordinary key's query is narrowed to its own records; an admin may name an `owner`.
pub(super) fn record_query(params: &HashMap<String, String>, caller: &Caller) -> Result<RecordQuery, ApiError> {
    const KNOWN: [&str; 10] = [
        "page",
        "limit",
        "keyword",
        "model",
        "date_from",
        "date_to",
        "implicit_label",
        "explicit_label",
        "kind",
        "owner",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown parameter {unknown:?}; known: {}", KNOWN.join(", "))));
    }
    let number = |name: &str, default: u32, max: u32| page_number(params, name, default, max);
    let date = |name: &str| -> Result<Option<time::Date>, ApiError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        params
            .get(name)
            .map(|text| {
                time::Date::parse(text, format).map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name} must be a date like 2026-11-29 (YYYY-MM-DD, UTC), got {text:?}"
                    ))
                })
            })
            .transpose()
    };
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match params.get(name).map(|t| t.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad_request(format!("{name} must be true or false, got {:?}", params[name]))),
        }
    };
    let text = |name: &str| params.get(name).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let query = RecordQuery {
        page: number("page", 1, u32::MAX)?,
        limit: number("limit", 20, 100)?,
        keyword: text("keyword"),
        model: text("model"),
        date_from: date("date_from")?,
        date_to: date("date_to")?,
        implicit_label: flag("implicit_label")?,
        explicit_label: flag("explicit_label")?,
        kind: match text("kind") {
            None => None,
            Some(kind) => Some(JobKind::parse(&kind).ok_or_else(|| {
                ApiError::bad_request(format!("kind must be generate, edit, compose, style or fusion, got {kind:?}"))
            })?),
        },
        edits_only: false,
        owner: match (caller.only_owner(), text("owner")) {
            (Some(own), None) => Some(own),
            (Some(own), Some(named)) if named == own => Some(own),
            (Some(_), Some(_)) => return Err(ApiError::bad_request("owner is for admin keys; yours are all you see")),
            (None, named) => named,
        },
        skip: 0,
    };
    if query.keyword.as_ref().is_some_and(|k| k.chars().count() > 200) {
        return Err(ApiError::bad_request("keyword is longer than 200 characters"));
    }
    if let (Some(from), Some(to)) = (query.date_from, query.date_to)
        && from > to
    {
        return Err(ApiError::bad_request(format!("date_from ({from}) is after date_to ({to})")));
    }
    Ok(query)
}

/// A paging parameter. Out of range is clamped, as the original service did: below 1 is
/// the default, above `max` is `max`. Not a number is a 400.
pub(super) fn page_number(
    params: &HashMap<String, String>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match params.get(name).map(|t| t.trim()).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n < 1 => Ok(default),
            Ok(n) => Ok(n.min(i64::from(max)) as u32),
            Err(_) => Err(ApiError::bad_request(format!("{name} must be a whole number, got {text:?}"))),
        },
    }
}

/// `GET /records/{id}`: the record's number (the `id` that `/records` shows, as the
/// original service's clients use it) or its job id.
#[utoipa::path(
    get, path = "/records/{id}", tag = "records", summary = "One record, by number or job id",
    params(("id" = String, Path)),
    responses((status = 200, body = RecordView), (status = 404, description = "No such record", body = ErrorBody))
)]
pub(super) async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(owned_record(&state, &caller, &id).await?).into_response())
}

/// Record `id` (number or job id) when `caller` may see it; else 404, as for none.
pub(super) async fn owned_record(state: &AppState, caller: &Caller, id: &str) -> Result<RecordView, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no record with id {id:?}"));
    let key = match id.parse::<i64>() {
        Ok(number) => number.to_string(),
        Err(_) => match JobId::parse(id) {
            Ok(job) => String::from(job),
            Err(_) => return Err(missing()),
        },
    };
    let record: RecordView = ask_store(state, RECORDS_GET, key.into()).await?;
    match caller.may_see(record.record.owner.as_deref()) {
        true => Ok(record),
        false => Err(missing()),
    }
}

/// `?page=` and `?limit=` (at most 1000, the default): newest first.
#[utoipa::path(
    get, path = "/images", tag = "records", summary = "Picture files in the images folder, a page at a time",
    params(("page" = Option<u32>, Query), ("limit" = Option<u32>, Query, description = "at most 1000 (the default)")),
    responses((status = 200, body = ImageList))
)]
pub(super) async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !["page", "limit"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown parameter {unknown:?}; known: page, limit")));
    }
    let wanted = ImagePage {
        page: page_number(&params, "page", 1, u32::MAX)?,
        limit: page_number(&params, "limit", ImagePage::MAX_LIMIT, ImagePage::MAX_LIMIT)?,
    };
    if let Some(owner) = caller.only_owner() {
        return Ok(Json(own_images(&state, owner, wanted).await?).into_response());
    }
    let payload = serde_json::to_vec(&wanted).expect("queries serialize");
    let images: ImageList = ask_store(&state, IMAGES_LIST, payload.into()).await?;
    Ok(Json(images).into_response())
}

/// The folder's listing as an ordinary key sees it: the files of its own records (the
/// folder itself does not know whose a file is), at most 100 a page.
async fn own_images(state: &AppState, owner: String, wanted: ImagePage) -> Result<ImageList, ApiError> {
    let query =
        RecordQuery { page: wanted.page, limit: wanted.limit.min(100), owner: Some(owner), ..RecordQuery::default() };
    let page = records_page(state, query).await?;
    let images = page
        .records
        .into_iter()
        .map(|view| ImageFile {
            filename: view.record.filename(),
            url: view.local_url,
            created_time: view.record.created_at,
            size: view.record.file_size,
        })
        .collect();
    Ok(ImageList { images, total: page.total, page: page.page, limit: page.limit, pages: page.pages })
}
