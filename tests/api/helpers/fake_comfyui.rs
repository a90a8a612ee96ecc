//! A stand-in for ComfyUI on loopback, speaking its HTTP API: `POST /prompt` queues a
//! workflow, `GET /history/<id>` is `{}` at the first look (still running) and then the
//! finished entry with its SaveImage output, `GET /view` serves that picture.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub struct FakeComfyUi {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    state: Arc<Queue>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Queue {
    /// Each queued workflow (the body's `prompt`), in order.
    workflows: Mutex<Vec<Value>>,
    /// How often each prompt id's history was looked at.
    looks: Mutex<HashMap<String, u32>>,
    picture: Vec<u8>,
}

impl FakeComfyUi {
    /// Draws `picture` for every workflow.
    pub async fn start(picture: Vec<u8>) -> Self {
        let state = Arc::new(Queue { picture, ..Default::default() });
        let app = axum::Router::new()
            .route("/prompt", post(queue))
            .route("/history/{id}", get(history))
            .route("/view", get(view))
            .route("/system_stats", get(|| async { axum::Json(json!({"system": {"os": "posix"}, "devices": []})) }))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, state, task }
    }

    /// The workflows queued so far, as ComfyUI received them.
    pub fn workflows(&self) -> Vec<Value> {
        self.state.workflows.lock().unwrap().clone()
    }
}

impl Drop for FakeComfyUi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn queue(State(state): State<Arc<Queue>>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let mut workflows = state.workflows.lock().unwrap();
    workflows.push(body["prompt"].clone());
    let number = workflows.len();
    axum::Json(json!({"prompt_id": format!("prompt-{number}"), "number": number, "node_errors": {}}))
}

async fn history(State(state): State<Arc<Queue>>, Path(id): Path<String>) -> axum::Json<Value> {
    let looks = {
        let mut looks = state.looks.lock().unwrap();
        let count = looks.entry(id.clone()).or_default();
        *count += 1;
        *count
    };
    if looks == 1 {
        return axum::Json(json!({}));
    }
    let image = json!({"filename": format!("huiying_{id}_.png"), "subfolder": "", "type": "output"});
    axum::Json(json!({ id: {
        "prompt": [],
        "outputs": {"9": {"images": [image]}},
        "status": {"status_str": "success", "completed": true, "messages": []}
    }}))
}

async fn view(
    State(state): State<Arc<Queue>>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let known = query.get("filename").is_some_and(|name| name.starts_with("huiying_prompt-"));
    match known && query.get("type").map(String::as_str) == Some("output") {
        true => ([("content-type", "image/png")], state.picture.clone()).into_response(),
        false => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}
