//! Calling model APIs over HTTP (image models and the translator): one JSON POST with timeouts, and the sorting of
//! its failures into retry-later (with the server's `Retry-After`) or give-up.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde_json::Value;

use crate::config::Secret;
use crate::failure::Failure;

pub(crate) fn client(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().connect_timeout(connect_timeout).timeout(timeout).build()
}

/// POSTs `body` as JSON and returns the JSON answer, or a classified failure that
/// names `provider` and quotes its message (shortened, never a key or base64).
pub(crate) async fn post_json(
    http: &reqwest::Client,
    provider: &str,
    url: &str,
    key: &Secret,
    extra_headers: &[(&str, &str)],
    body: &impl Serialize,
) -> Result<Value, Failure> {
    let mut request = http.post(url).json(body);
    for (name, value) in extra_headers {
        if !value.is_empty() {
            request = request.header(*name, *value);
        }
    }
    json_answer(provider, url, key, request).await
}

/// Sends `request` (any method or body; the key is added here) and returns the JSON
/// answer, classified as [`post_json`] does.
pub(crate) async fn json_answer(
    provider: &str,
    url: &str,
    key: &Secret,
    request: reqwest::RequestBuilder,
) -> Result<Value, Failure> {
    // Self-hosted models (ComfyUI, Automatic1111) take no key.
    let request = if key.is_set() { request.bearer_auth(key.expose()) } else { request };
    let response = request.send().await.map_err(|e| {
        let what = if e.is_timeout() { "timed out" } else { "could not be reached" };
        Failure::transient(format!("{provider} at {url} {what}: {}", error_chain(&e)))
    })?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let text =
        response.text().await.map_err(|e| Failure::transient(format!("{provider}'s answer was cut off: {e}")))?;
    // A provider may echo the key in its answer ("Incorrect API key provided: sk-..."):
    // it must not travel on into events, records and mails.
    let text = redact(&text, key);
    if !status.is_success() {
        let error = format!("{provider} answered {status}: {}", provider_message(&text));
        let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        return Err(if transient { Failure::transient(error).after(retry_after) } else { Failure::permanent(error) });
    }
    serde_json::from_str(&text).map_err(|e| {
        Failure::permanent(format!("{provider}'s answer is not JSON ({e}): {}", shorten(&scrub(&text), 200)))
    })
}

/// `text` with every occurrence of the secret replaced by `***`.
pub(crate) fn redact(text: &str, secret: &Secret) -> String {
    match secret.expose() {
        "" => text.to_string(),
        value => text.replace(value, "***"),
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The provider's own error message when it sent one, else the start of the body.
pub(crate) fn provider_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.pointer("/message")).or_else(|| v.pointer("/error")))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| body.to_string());
    shorten(scrub(message.trim()).as_str(), 300)
}

/// Replaces long base64 runs (pictures inside messages) with a marker.
pub(crate) fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 80 {
            out.push_str("[base64 omitted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// reqwest hides the useful part ("Connection refused") in the error's sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_error_message_is_preferred_and_base64_is_scrubbed() {
        assert_eq!(
            provider_message(r#"{"error":{"message":"No auth credentials found","code":401}}"#),
            "No auth credentials found"
        );
        assert_eq!(provider_message("plain text"), "plain text");
        let blob = "A".repeat(500);
        assert_eq!(
            provider_message(&format!("bad image data:image/png;base64,{blob} here")),
            "bad image data:image/png;base64,[base64 omitted] here"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    }
}
