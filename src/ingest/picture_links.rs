//! Private pictures (`public_pictures = false`): every picture link in a JSON answer is
//! signed on its way out, so a caller can hand it to a browser (an `<img>` sends no key)
//! for `[server] link_days`. One place for every route: job states, records, the
//! synchronous answer, the OpenAI-compatible route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::clock::Clock;
use crate::links::PictureLinks;

/// Largest answer read back to sign (a page of records is far below it).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

pub(crate) async fn sign(
    State(signing): State<Option<Arc<(PictureLinks, Clock)>>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let Some(signing) = signing else { return response };
    let json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let (links, clock) = &*signing;
    links.sign_json(&mut answer, clock());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(answer.to_string()))
}
