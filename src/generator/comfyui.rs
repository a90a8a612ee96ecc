//! ComfyUI on one's own GPU: the workflow of `[comfyui] workflow_file` (API format), its
//! placeholders filled in, queued with `POST /prompt` → `{"prompt_id"}`, followed with
//! `GET /history/<prompt_id>` (`{}` while queued or running; then its `outputs` and
//! `status`), and its first output picture fetched from `GET /view?filename=&subfolder=&type=`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::EditInput;
use super::model::{ImageAnswer, ImageModel, Picture};
use crate::config::{ComfyUiConfig, Provider, Secret};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::model_api::{self as http, shorten};

const PROVIDER: &str = "ComfyUI";
/// The size of a picture whose request names none.
const DEFAULT_SIDE: u32 = 1024;

pub(super) struct ComfyUiClient {
    http: reqwest::Client,
    base_url: String,
    workflow: Value,
    poll_interval: Duration,
    deadline: Duration,
}

impl ComfyUiClient {
    /// The client, with its workflow read and checked: a workflow without `{{prompt}}`
    /// would draw the same picture for every request.
    pub(super) fn new(config: &ComfyUiConfig) -> anyhow::Result<Self> {
        let file = &config.workflow_file;
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("[comfyui] workflow_file {}: {e}", file.display()))?;
        let workflow: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("[comfyui] workflow_file {} is not JSON: {e}", file.display()))?;
        if !text.contains("{{prompt}}") {
            anyhow::bail!(
                "[comfyui] workflow_file {} has no {{{{prompt}}}}: put it where the prompt goes (a CLIPTextEncode's text)",
                file.display()
            );
        }
        Ok(Self {
            http: http::client(Duration::from_secs(10), config.timeout)?,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            workflow,
            poll_interval: config.poll_interval.max(Duration::from_millis(50)),
            deadline: config.deadline,
        })
    }

    /// Follows the queued workflow until it ends or the deadline passes.
    async fn wait_for(&self, id: &str) -> Result<Value, Failure> {
        let url = format!("{}/history/{id}", self.base_url);
        let give_up = Instant::now() + self.deadline;
        loop {
            match http::json_answer(PROVIDER, &url, &Secret::default(), self.http.get(&url)).await {
                Ok(history) => {
                    if let Some(entry) = history.get(id) {
                        return ended(id, entry);
                    }
                }
                Err(failure) if failure.is_transient() => {
                    tracing::warn!(prompt = id, %failure, "polling ComfyUI failed")
                }
                Err(failure) => return Err(failure),
            }
            if Instant::now() + self.poll_interval > give_up {
                return Err(Failure::transient(format!(
                    "ComfyUI workflow {id} did not finish within {} s ([comfyui] deadline)",
                    self.deadline.as_secs()
                )));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The bytes of an output picture (`{filename, subfolder, type}`), from `/view`.
    async fn fetch(&self, image: &Value) -> Result<Vec<u8>, Failure> {
        let field = |name| image.get(name).and_then(Value::as_str).unwrap_or_default();
        let url = format!("{}/view", self.base_url);
        let query = [("filename", field("filename")), ("subfolder", field("subfolder")), ("type", field("type"))];
        let response = self.http.get(&url).query(&query).send().await.map_err(|e| {
            Failure::transient(format!("ComfyUI at {url} could not be reached: {}", http::error_chain(&e)))
        })?;
        if !response.status().is_success() {
            return Err(Failure::transient(format!("ComfyUI answered {} for its picture", response.status())));
        }
        let bytes =
            response.bytes().await.map_err(|e| Failure::transient(format!("ComfyUI's picture was cut off: {e}")))?;
        Ok(bytes.to_vec())
    }
}

#[async_trait::async_trait]
impl ImageModel for ComfyUiClient {
    fn provider(&self) -> Provider {
        Provider::ComfyUi
    }

    async fn generate(&self, prompt: &str, _model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        let (width, height) = options.dimensions().unwrap_or((DEFAULT_SIDE, DEFAULT_SIDE));
        let values = Values {
            prompt,
            negative_prompt: options.negative_prompt.as_deref().unwrap_or(""),
            // ComfyUI's samplers take seeds up to 2^64 - 1; a request without one gets a new one.
            seed: options.seed.unwrap_or_else(|| fastrand::u64(..u64::from(u32::MAX))),
            width,
            height,
        };
        let body = json!({"prompt": fill(&self.workflow, &values), "client_id": "huiying"});
        let url = format!("{}/prompt", self.base_url);
        let queued = http::post_json(&self.http, PROVIDER, &url, &Secret::default(), &[], &body).await?;
        let Some(id) = queued.get("prompt_id").and_then(Value::as_str).map(String::from) else {
            let said = http::provider_message(&queued.to_string());
            return Err(Failure::permanent(format!("ComfyUI queued nothing: {said}")));
        };
        tracing::info!(prompt = %id, "ComfyUI workflow queued");
        let outputs = self.wait_for(&id).await?;
        let image = outputs
            .as_object()
            .into_iter()
            .flat_map(|nodes| nodes.values())
            .filter_map(|node| node.get("images")?.as_array()?.first())
            .find(|image| image.get("type").and_then(Value::as_str) != Some("temp"))
            .ok_or_else(|| {
                Failure::permanent(format!("ComfyUI workflow {id} saved no picture (add a SaveImage node)"))
            })?;
        let bytes = self.fetch(image).await?;
        Ok(ImageAnswer { picture: Picture::Bytes(bytes), usage: None })
    }

    async fn edit(&self, _: &str, model: &str, _: &[EditInput], _: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        Err(Failure::refused(format!("model {model} (ComfyUI) draws from text here; edits go to another model")))
    }
}

/// What a request puts into the workflow.
struct Values<'a> {
    prompt: &'a str,
    negative_prompt: &'a str,
    seed: u64,
    width: u32,
    height: u32,
}

/// The workflow with its placeholders filled: a string that is exactly `{{seed}}`,
/// `{{width}}` or `{{height}}` becomes that number; `{{prompt}}` and `{{negative_prompt}}`
/// are replaced inside any string.
fn fill(workflow: &Value, values: &Values<'_>) -> Value {
    match workflow {
        Value::String(text) => match text.as_str() {
            "{{seed}}" => json!(values.seed),
            "{{width}}" => json!(values.width),
            "{{height}}" => json!(values.height),
            _ => Value::String(
                text.replace("{{negative_prompt}}", values.negative_prompt).replace("{{prompt}}", values.prompt),
            ),
        },
        Value::Array(items) => Value::Array(items.iter().map(|item| fill(item, values)).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(name, value)| (name.clone(), fill(value, values))).collect())
        }
        other => other.clone(),
    }
}

/// A finished history entry's `outputs`, or why the workflow failed.
fn ended(id: &str, entry: &Value) -> Result<Value, Failure> {
    let status = entry.pointer("/status/status_str").and_then(Value::as_str).unwrap_or("success");
    if status == "error" {
        // The execution_error message names the node and the exception.
        let messages = entry.pointer("/status/messages").and_then(Value::as_array).cloned().unwrap_or_default();
        let why = messages
            .iter()
            .filter(|message| message.get(0).and_then(Value::as_str) == Some("execution_error"))
            .find_map(|message| message.pointer("/1/exception_message").and_then(Value::as_str))
            .unwrap_or("no reason given");
        return Err(Failure::permanent(format!("ComfyUI workflow {id} failed: {}", shorten(why, 300))));
    }
    Ok(entry.get("outputs").cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_the_requests_values_numbers_as_numbers() {
        let workflow = json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "masterpiece, {{prompt}}"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}"}}
        });
        let values = Values { prompt: "a fox", negative_prompt: "dogs", seed: 42, width: 640, height: 360 };
        let filled = fill(&workflow, &values);
        assert_eq!(filled["3"]["inputs"], json!({"seed": 42, "steps": 20}));
        assert_eq!(filled["5"]["inputs"], json!({"width": 640, "height": 360}));
        assert_eq!(filled["6"]["inputs"]["text"], "masterpiece, a fox");
        assert_eq!(filled["7"]["inputs"]["text"], "dogs");
    }

    #[test]
    fn a_failed_workflow_says_which_exception_stopped_it() {
        let entry = json!({"status": {"status_str": "error", "completed": false, "messages": [
            ["execution_start", {"prompt_id": "p"}],
            ["execution_error", {"node_id": "4", "exception_message": "checkpoint not found: sd_xl.safetensors"}]
        ]}});
        let failure = ended("p", &entry).unwrap_err();
        assert!(failure.reason.contains("checkpoint not found"), "{failure}");
    }
}
