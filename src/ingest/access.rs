//! Who may call the API and how often: API keys, per-caller rate limits and CORS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::error::ApiError;
use crate::clock::Clock;
use crate::config::{ApiKey, CorsOrigin, ServerConfig};
use crate::limit::RateLimit;
use crate::links::{LinkCheck, LinkKeys};

/// Paths anyone may fetch: the health check, the web page (it holds no data and asks
/// for the key itself), unsubscribe links, the API's description (`/openapi.json`; `/docs` is outside this
/// check), and, unless `[server] public_pictures` is off, stored pictures and
/// edits' input pictures, whose links go out in emails (their names hold the job id).
fn is_open(path: &str, public_pictures: bool) -> bool {
    path == "/health"
        || path == "/api/health"
        || path == "/"
        || path == "/openapi.json"
        // One-click unsubscribe from a mail: its signed token is the proof.
        || path.starts_with("/unsubscribe/")
        || (public_pictures && path.starts_with(crate::contract::STATIC_IMAGES_PATH))
        // An edit's input pictures, which its mail shows beside the result (job-id names).
        || (public_pictures && (path.starts_with("/inputs/") || path.starts_with("/api/inputs/")))
        // A private bucket's pictures, by a redirect to a short-lived presigned URL.
        || (public_pictures && (path.starts_with("/r2/images/") || path.starts_with("/api/r2/images/")))
}

/// Callers remembered for rate limiting before idle ones are forgotten.
const MAX_TRACKED_CALLERS: usize = 10_000;

/// Who is calling, as [`check`] found out: ingest's answers depend on it.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No keys are configured: the machine's user, who sees and manages everything.
    Anyone,
    /// A configured key.
    Key(Arc<ApiKey>),
}

impl Caller {
    /// The name a job this caller queues belongs to (none without keys).
    pub(crate) fn owner(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Key(key) => Some(&key.name),
        }
    }

    /// Sees and manages every job, and sees notification targets unmasked.
    pub(crate) fn is_admin(&self) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Key(key) => key.admin,
        }
    }

    /// Whether this caller may see (and manage) what belongs to `owner`. What belongs to
    /// no key (published straight to NATS, or queued before keys) is for admins only.
    pub(crate) fn may_see(&self, owner: Option<&str>) -> bool {
        self.is_admin() || (owner.is_some() && owner == self.owner())
    }

    /// The owner a list must be narrowed to: none for admins (who may ask for one).
    pub(crate) fn only_owner(&self) -> Option<String> {
        (!self.is_admin()).then(|| self.owner().unwrap_or_default().to_string())
    }

    /// The key's daily job quota, if it has one.
    pub(crate) fn jobs_per_day(&self) -> Option<std::num::NonZeroU64> {
        match self {
            Caller::Anyone => None,
            Caller::Key(key) => key.jobs_per_day,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// [`check`] tells every route behind it; a route outside it (public pictures) never
    /// asks, and one that did would be refused rather than taken for an admin.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "send the header Authorization: Bearer <key>"))
    }
}

pub(crate) struct Access {
    keys: Vec<Arc<ApiKey>>,
    public_pictures: bool,
    /// With private pictures: the keys and clock that open signed picture links.
    signed_pictures: Option<(LinkKeys, Clock)>,
    per_minute: u32,
    callers: Mutex<HashMap<String, Arc<RateLimit>>>,
}

impl Access {
    pub(crate) fn new(server: &ServerConfig) -> Self {
        Self {
            keys: server.api_keys().into_iter().map(Arc::new).collect(),
            public_pictures: server.public_pictures,
            signed_pictures: None,
            per_minute: server.rate_limit_per_minute,
            callers: Mutex::default(),
        }
    }

    /// Private pictures open without a key through the links huiying signed (mails).
    pub(crate) fn opening_signed_pictures(mut self, keys: LinkKeys, clock: Clock) -> Self {
        self.signed_pictures = Some((keys, clock));
        self
    }

    /// A signed picture link's verdict: `None` when the request is no such link.
    fn signed_picture(&self, request: &Request) -> Option<Result<(), Response>> {
        let (keys, clock) = self.signed_pictures.as_ref().filter(|_| !self.public_pictures)?;
        let path = request.uri().path();
        let query = request.uri().query().filter(|q| q.contains("sig="))?;
        let picture = path.starts_with(crate::contract::STATIC_IMAGES_PATH)
            || path.starts_with("/inputs/")
            || path.starts_with("/r2/images/");
        if !picture || request.method() != Method::GET {
            return None;
        }
        Some(match keys.check_picture(path, query, clock().unix_timestamp()) {
            LinkCheck::Open => Ok(()),
            LinkCheck::Forged => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "this picture link is not valid").into_response())
            }
            LinkCheck::Expired => Err(ApiError::new(
                StatusCode::GONE,
                "this picture link has expired; open the picture from huiying's page or ask for a new link",
            )
            .into_response()),
        })
    }

    /// Which configured key `presented` is (compared in constant time with every key).
    fn key(&self, presented: &str) -> Option<Arc<ApiKey>> {
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.secret.expose().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(key.clone());
            }
        }
        found
    }

    /// Counts a request of `caller`; 429 with Retry-After when over the limit.
    async fn count(&self, caller: String) -> Result<(), Response> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let limit = {
            let mut callers = self.callers.lock().await;
            if callers.len() >= MAX_TRACKED_CALLERS {
                let mut idle = Vec::new();
                for (name, limit) in callers.iter() {
                    if limit.is_idle().await {
                        idle.push(name.clone());
                    }
                }
                for name in idle {
                    callers.remove(&name);
                }
            }
            callers.entry(caller).or_insert_with(|| Arc::new(RateLimit::per_minute(self.per_minute))).clone()
        };
        limit.try_acquire().await.map_err(|wait| {
            let seconds = wait.as_secs() + 1;
            let message = format!("more than {} requests in a minute; try again in {seconds} s", self.per_minute);
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).retry_after(seconds).into_response()
        })
    }
}

/// Middleware: 401 without a key, 403 with a wrong one, 429 over the rate limit.
pub(crate) async fn check(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS || is_open(request.uri().path(), access.public_pictures) {
        return next.run(request).await;
    }
    match access.signed_picture(&request) {
        Some(Ok(())) => return next.run(request).await,
        Some(Err(refused)) => return refused,
        None => {}
    }
    let caller = if access.keys.is_empty() {
        request.extensions_mut().insert(Caller::Anyone);
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    } else {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
        let Some(presented) = presented.map(str::trim) else {
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs an API key: send the header Authorization: Bearer <key>",
            );
            let mut response = error.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        };
        match access.key(presented) {
            Some(key) => {
                let name = key.name.clone();
                request.extensions_mut().insert(Caller::Key(key));
                name
            }
            None => return ApiError::new(StatusCode::FORBIDDEN, "this API key is not valid here").into_response(),
        }
    };
    if let Err(too_many) = access.count(caller).await {
        return too_many;
    }
    next.run(request).await
}

/// `[server] cors_origins` as a CORS layer; `None` when empty (no CORS headers at all).
pub(crate) fn cors(server: &ServerConfig) -> Option<CorsLayer> {
    if server.cors_origins.is_empty() {
        return None;
    }
    let origins = if server.cors_origins.contains(&CorsOrigin::Any) {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(server.cors_origins.iter().filter_map(|origin| match origin {
            CorsOrigin::Exact(origin) => HeaderValue::from_str(origin).ok(),
            CorsOrigin::Any => None,
        }))
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("idempotency-key"),
                header::HeaderName::from_static("prefer"),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}
