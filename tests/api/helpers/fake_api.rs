//! Stand-ins for the internet APIs on loopback.

use std::collections::HashMap;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use huiying::config::{Config, Secret};
use tokio::task::JoinHandle;

/// One scripted answer of a fake internet API.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl FakeResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        Self { status: 200, headers: vec![], body }
    }

    /// An error in the shape OpenAI-style APIs use.
    pub fn error(status: u16, message: &str) -> Self {
        Self { status, headers: vec![], body: serde_json::json!({"error": {"message": message, "code": status}}) }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// OpenRouter's answer carrying `image` as a base64 `data:` URL.
pub fn openrouter_image(image: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(image));
    openrouter_image_url(&url)
}

/// OpenRouter's answer carrying a link to the picture.
pub fn openrouter_image_url(url: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "gen-test",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Here is your image.", "images": [{"type": "image_url", "image_url": {"url": url}}]}
        }]
    })
}

/// A chat answer with text only (a translation, or a model that did not draw).
pub fn chat_text(text: &str) -> serde_json::Value {
    serde_json::json!({"id": "chat-test", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})
}

/// A small PNG.
pub fn tiny_png() -> Vec<u8> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 120, 40]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    png.into_inner()
}

/// Stand-ins for the internet APIs (OpenRouter, OpenAI-compatible images, ModelScope) on
/// loopback, speaking their wire format. Each POST path answers its script in order and
/// repeats the last answer; `GET /files/<name>` serves registered bytes.
pub struct FakeApi {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct FakeState {
    scripts: Mutex<HashMap<String, Vec<FakeResponse>>>,
    calls: Mutex<Vec<FakeRequest>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    delay: Mutex<Duration>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// The body as sent (multipart forms are not JSON).
    pub raw: Vec<u8>,
}

pub const OPENROUTER_PATH: &str = "/api/v1/chat/completions";
pub const OPENAI_PATH: &str = "/v1/images/generations";
pub const MODELSCOPE_PATH: &str = "/modelscope/v1/chat/completions";
pub const OPENAI_EDITS_PATH: &str = "/v1/images/edits";
pub const MODELSCOPE_IMAGES_PATH: &str = "/modelscope/v1/images/generations";

impl FakeApi {
    pub async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let state: Arc<FakeState> = Arc::default();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = shared.clone();
            async move {
                use axum::response::IntoResponse;
                let path = request.uri().path().to_string();
                if let Some(name) = path.strip_prefix("/files/") {
                    let file = state.files.lock().unwrap().get(name).cloned();
                    return match file {
                        Some(bytes) => ([("content-type", "image/png")], bytes).into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    };
                }
                let headers = request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
                let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_in_flight.fetch_max(now, Ordering::SeqCst);
                state.calls.lock().unwrap().push(FakeRequest {
                    path: path.clone(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                    raw: body.to_vec(),
                });
                let delay = *state.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                let answer = {
                    let mut scripts = state.scripts.lock().unwrap();
                    match scripts.get_mut(&path) {
                        Some(script) if script.len() > 1 => Some(script.remove(0)),
                        Some(script) => script.first().cloned(),
                        None => None,
                    }
                };
                let Some(answer) = answer else { return axum::http::StatusCode::NOT_FOUND.into_response() };
                let mut response =
                    (axum::http::StatusCode::from_u16(answer.status).unwrap(), axum::Json(answer.body)).into_response();
                for (name, value) in answer.headers {
                    response
                        .headers_mut()
                        .insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { address, state, task }
    }

    /// Scripts the answers of one POST path.
    pub fn respond(&self, path: &str, answers: Vec<FakeResponse>) {
        self.state.scripts.lock().unwrap().insert(path.into(), answers);
    }

    pub fn serve_file(&self, name: &str, bytes: Vec<u8>) -> String {
        self.state.files.lock().unwrap().insert(name.into(), bytes);
        format!("{}/files/{name}", self.address)
    }

    /// Every answer waits this long first (a slow model).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    pub fn calls(&self, path: &str) -> Vec<FakeRequest> {
        self.state.calls.lock().unwrap().iter().filter(|c| c.path == path).cloned().collect()
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Points the configuration's providers at this server.
    pub fn configure(&self, config: &mut Config) {
        config.api_keys.openrouter_api_key = Secret::new("sk-or-test-key");
        config.openrouter.base_url = format!("{}/api/v1", self.address);
        config.api_keys.openai_api_key = Secret::new("sk-openai-test-key");
        config.openai.base_url = format!("{}/v1", self.address);
        config.api_keys.model_scope_token = Secret::new("ms-test-token");
        config.translation.base_url = format!("{}/modelscope/v1", self.address);
        config.modelscope.base_url = format!("{}/modelscope/v1", self.address);
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
