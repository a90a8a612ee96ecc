//! How strict a request body is read: as the original service read it (Gin's JSON
//! binding): any `Content-Type`, and fields huiying does not know left out, each named in
//! the answer's `Huiying-Ignored` header; or, with `[server] strict_options = true`, a 415
//! for a body not sent as JSON and a 400 for an unknown field.
//!
//! The rule and the fields ignored live for one request in a task-local scope that the
//! [`read_bodies`] layer opens, so that [`super::body`] can consult and fill it without
//! every handler passing it along.

use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static RULES: Rules;
}

struct Rules {
    strict: bool,
    ignored: Mutex<Vec<String>>,
}

/// Whether this request's body is read strictly (outside a request: leniently).
pub(super) fn strict() -> bool {
    RULES.try_with(|rules| rules.strict).unwrap_or(false)
}

/// Notes fields of the body that were left out, for `Huiying-Ignored`.
pub(super) fn ignored(fields: &[String]) {
    let _ = RULES.try_with(|rules| rules.ignored.lock().expect("not poisoned").extend_from_slice(fields));
}

/// The layer: runs the request under `[server] strict_options`, then adds the fields its
/// body had that were left out to `Huiying-Ignored` (beside the options a model left out).
pub(super) async fn read_bodies(State(strict): State<bool>, request: Request, next: Next) -> Response {
    let rules = Rules { strict, ignored: Mutex::default() };
    RULES
        .scope(rules, async move {
            let mut response = next.run(request).await;
            let fields = RULES.with(|rules| std::mem::take(&mut *rules.ignored.lock().expect("not poisoned")));
            if !fields.is_empty() {
                let headers = response.headers_mut();
                let mut names: Vec<String> = headers
                    .get("huiying-ignored")
                    .and_then(|value| value.to_str().ok())
                    .map(|value| value.split(", ").map(String::from).collect())
                    .unwrap_or_default();
                names.extend(fields);
                if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
                    headers.insert("huiying-ignored", value);
                }
            }
            response
        })
        .await
}
