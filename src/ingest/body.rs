//! Reading requests: JSON bodies, and the headers that shape an answer.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use super::error::ApiError;
use super::leniency;

/// The body of a JSON request, whatever its `Content-Type` says, as the original read it
/// (strictly: 415 for another type; none counts as JSON), and `{"error"}` answers for
/// bodies that are too large or broken off.
pub(super) fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if leniency::strict() && essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the body as application/json, not {essence}"),
        ));
    }
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        }
        status => ApiError::new(status, rejection.body_text()),
    })
}

/// A JSON object as `T`, naming the field and the problem when it is wrong. Fields `T`
/// does not know are left out and named in `Huiying-Ignored` (strictly: refused).
pub(super) fn parse_object<T: DeserializeOwned>(body: &[u8], example: &str) -> Result<T, ApiError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    // serde would also read a struct from an array: only an object is a request.
    if !json.is_object() {
        return Err(ApiError::bad_request(format!("invalid request: the body must be a JSON object like {example}")));
    }
    // No text huiying keeps may hold a NUL (PostgreSQL refuses it): refused where it enters.
    if let Some(path) = nul_in(&json) {
        return Err(ApiError::bad_request(format!(
            "invalid field {path}: it holds a NUL character (U+0000), a control character no field may hold"
        )));
    }
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let value = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(json, &mut note)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid request: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid field {path}: {inner}"))
        }
    })?;
    if !unknown.is_empty() && leniency::strict() {
        return Err(ApiError::bad_request(format!(
            "unknown field {} ([server] strict_options refuses fields it does not know)",
            unknown.join(", ")
        )));
    }
    leniency::ignored(&unknown);
    Ok(value)
}

/// Where in `json` a string (or a key) holds a NUL character, as a field path.
pub(super) fn nul_in(json: &serde_json::Value) -> Option<String> {
    match json {
        serde_json::Value::String(text) if text.contains('\0') => Some(".".into()),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(n, item)| nul_in(item).map(|path| join_path(&format!("[{n}]"), &path)))
        }
        serde_json::Value::Object(fields) => fields.iter().find_map(|(name, value)| match name.contains('\0') {
            true => Some(name.escape_default().to_string()),
            false => nul_in(value).map(|path| join_path(name, &path)),
        }),
        _ => None,
    }
}

fn join_path(head: &str, rest: &str) -> String {
    match rest {
        "." => head.to_string(),
        rest if rest.starts_with('[') => format!("{head}{rest}"),
        rest => format!("{head}.{rest}"),
    }
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(key.to_string()))
}

/// The longest `Prefer: wait=N` honoured: an answer held longer than this helps nobody.
const MAX_PREFERRED_WAIT: Duration = Duration::from_secs(600);

/// What `Prefer` (RFC 7240) says about waiting: `wait=N` is the per-request form of
/// `[server] timeout` (at most ten minutes); a bare `wait` means the server's.
pub(super) enum WaitPreference {
    None,
    ServerDefault,
    Seconds(Duration),
}

impl WaitPreference {
    /// How long to wait: `absent` without a preference, `server` for a bare `wait`.
    pub(super) fn or(self, absent: Duration, server: Duration) -> Duration {
        match self {
            WaitPreference::None => absent,
            WaitPreference::ServerDefault => server,
            WaitPreference::Seconds(seconds) => seconds,
        }
    }
}

pub(super) fn preferred_wait(headers: &HeaderMap) -> WaitPreference {
    let preferences = headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    let mut found = WaitPreference::None;
    for preference in preferences {
        let preference = preference.trim().to_ascii_lowercase();
        if preference == "wait" {
            found = WaitPreference::ServerDefault;
        } else if let Some(seconds) = preference.strip_prefix("wait=").and_then(|n| n.trim().parse::<u64>().ok()) {
            return WaitPreference::Seconds(Duration::from_secs(seconds).min(MAX_PREFERRED_WAIT));
        }
    }
    found
}

/// `Prefer: respond-async` (RFC 7240) asks for 202 at once.
pub(super) fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// The longest `deadline` taken: a job nobody waits a week for is not worth queuing.
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request's `deadline`: seconds from now, or an RFC 3339 time.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum DeadlineValue {
    Seconds(f64),
    At(String),
}

impl DeadlineValue {
    /// When the job stops being wanted; refused when it is not in the next seven days.
    pub(super) fn at(&self, now: time::OffsetDateTime) -> Result<time::OffsetDateTime, ApiError> {
        let at = match self {
            DeadlineValue::Seconds(seconds) if seconds.is_finite() && *seconds > 0.0 => {
                now + Duration::from_secs_f64(seconds.min(MAX_DEADLINE.as_secs_f64()))
            }
            DeadlineValue::Seconds(_) => {
                return Err(ApiError::bad_request("deadline must be a positive number of seconds"));
            }
            DeadlineValue::At(text) => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| {
                    ApiError::bad_request(format!(
                        "deadline must be seconds from now or an RFC 3339 time like 2026-12-02T15:04:05Z, got {text:?}"
                    ))
                })?
            }
        };
        if at <= now {
            return Err(ApiError::bad_request("deadline has already passed"));
        }
        if at - now > MAX_DEADLINE {
            return Err(ApiError::bad_request("deadline must be within seven days"));
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_nul_anywhere_in_a_body_is_found_and_named_by_its_path() {
        assert_eq!(nul_in(&json!({"prompt": "a cat"})), None);
        assert_eq!(nul_in(&json!({"image_url": "https://example.com/a.png#\u{0}"})).as_deref(), Some("image_url"));
        assert_eq!(nul_in(&json!({"image_urls": ["ok", "b\u{0}"]})).as_deref(), Some("image_urls[1]"));
        assert_eq!(nul_in(&json!({"a": {"b": "\u{0}"}})).as_deref(), Some("a.b"));
    }
}
