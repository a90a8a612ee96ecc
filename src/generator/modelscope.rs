//! ModelScope's asynchronous image API, as the original service used it for
//! `Qwen/Qwen-Image-Edit`: submit with `X-ModelScope-Async-Mode: true`, then poll the
//! task until it succeeds, fails, or `[modelscope] deadline` passes.
//!
//! Submit: `POST {base_url}/images/generations` `{"model", "prompt", "image_url"}` →
//! `{"task_id"}`. Poll: `GET {base_url}/tasks/<task_id>` with
//! `X-ModelScope-Task-Type: image_generation` → `{"task_status": "PENDING" | "RUNNING" |
//! "SUCCEED" | "FAILED", "output_images": [url], ...}`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::EditInput;
use super::model::{ImageAnswer, ImageModel};
use crate::config::{ModelScopeConfig, Provider, Secret};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::model_api::{self as http, shorten};

const PROVIDER: &str = "ModelScope";

#[derive(Clone)]
pub(super) struct ModelScopeClient {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    poll_interval: Duration,
    deadline: Duration,
}

impl ModelScopeClient {
    pub(super) fn new(config: &ModelScopeConfig, token: Secret) -> reqwest::Result<Self> {
        Ok(Self {
            http: http::client(Duration::from_secs(10), config.timeout)?,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            token,
            poll_interval: config.poll_interval.max(Duration::from_millis(100)),
            deadline: config.deadline,
        })
    }

    /// Edits `input` as `prompt` says. `image_url` is the link the client gave when there
    /// was one (ModelScope fetches it itself, as it did for the original), else the
    /// picture as a `data:` URL.
    async fn edit_one(&self, prompt: &str, model: &str, input: &EditInput) -> Result<ImageAnswer, Failure> {
        let submit = format!("{}/images/generations", self.base_url);
        let body = json!({"model": model, "prompt": prompt, "image_url": input.url_for_provider()});
        let headers = [("X-ModelScope-Async-Mode", "true")];
        let answer = http::post_json(&self.http, PROVIDER, &submit, &self.token, &headers, &body).await?;
        let Some(task) = answer.get("task_id").and_then(Value::as_str).map(String::from) else {
            return Err(Failure::permanent(format!(
                "ModelScope answered without a task_id: {}",
                http::provider_message(&answer.to_string())
            )));
        };
        tracing::info!(%task, %model, "ModelScope task submitted");
        self.wait_for(&task).await
    }

    /// Polls the task until it ends or the deadline passes (then no further polls).
    async fn wait_for(&self, task: &str) -> Result<ImageAnswer, Failure> {
        let url = format!("{}/tasks/{task}", self.base_url);
        let give_up = Instant::now() + self.deadline;
        loop {
            tokio::time::sleep(self.poll_interval).await;
            let request = self.http.get(&url).header("X-ModelScope-Task-Type", "image_generation");
            match http::json_answer(PROVIDER, &url, &self.token, request).await {
                Ok(status) => match status.get("task_status").and_then(Value::as_str).unwrap_or("") {
                    "SUCCEED" => {
                        let image = status.pointer("/output_images/0").and_then(Value::as_str);
                        return image.map(|url| ImageAnswer::at(url, status.get("usage"))).ok_or_else(|| {
                            Failure::permanent(format!("ModelScope task {task} succeeded without an output image"))
                        });
                    }
                    "FAILED" => {
                        let why = status.get("errors").or_else(|| status.get("message")).map(Value::to_string);
                        return Err(Failure::permanent(format!(
                            "ModelScope task {task} failed: {}",
                            why.map(|w| shorten(&http::scrub(&w), 200)).unwrap_or_else(|| "no reason given".into())
                        )));
                    }
                    _ => {}
                },
                // A poll that fails is tried again at the next interval, until the deadline.
                Err(failure) if failure.is_transient() => tracing::warn!(%task, %failure, "polling ModelScope failed"),
                Err(failure) => return Err(failure),
            }
            if Instant::now() + self.poll_interval > give_up {
                return Err(Failure::permanent(format!(
                    "ModelScope task {task} did not finish within {} s ([modelscope] deadline)",
                    self.deadline.as_secs()
                )));
            }
        }
    }
}

#[async_trait::async_trait]
impl ImageModel for ModelScopeClient {
    fn provider(&self) -> Provider {
        Provider::ModelScope
    }

    async fn generate(&self, _prompt: &str, model: &str, _options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        Err(Failure::refused(format!(
            "model {model} edits pictures (ModelScope's image API here); use it with /edit-image, \
             /style-transfer, /compose-images or /fusion-images"
        )))
    }

    /// One input picture: [`Provider::max_edit_inputs`] is 1, checked before the call.
    async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        _options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        let [input] = inputs else {
            return Err(Failure::refused(format!("model {model} edits exactly one picture")));
        };
        self.edit_one(prompt, model, input).await
    }
}
