//! `[comfyui]` and `[automatic1111]`: image models on one's own GPU. Neither needs a key;
//! each is used once its `base_url` (and ComfyUI's workflow) is set.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::seconds;

/// ComfyUI: a workflow (its API format, exported with "Save (API)") queued through
/// `POST /prompt`, followed through `GET /history/<id>`, its picture fetched from `/view`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComfyUiConfig {
    /// e.g. `http://127.0.0.1:8188`; empty: ComfyUI is not used.
    pub base_url: String,
    /// The workflow, with `{{prompt}}`, `{{negative_prompt}}`, `{{seed}}`, `{{width}}` and
    /// `{{height}}` where the request's values go (a relative path: from the working directory).
    pub workflow_file: PathBuf,
    /// Between looks at the queued workflow.
    #[serde(with = "seconds")]
    pub poll_interval: Duration,
    /// A workflow that has not finished by then fails the job.
    #[serde(with = "seconds")]
    pub deadline: Duration,
    /// One HTTP call.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Workflows queued at once from one generator (ComfyUI runs its queue one at a time).
    pub max_concurrency: usize,
}

impl ComfyUiConfig {
    pub fn is_set(&self) -> bool {
        !self.base_url.trim().is_empty() && !self.workflow_file.as_os_str().is_empty()
    }
}

impl Default for ComfyUiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            workflow_file: PathBuf::new(),
            poll_interval: Duration::from_secs(1),
            deadline: Duration::from_secs(600),
            timeout: Duration::from_secs(60),
            max_concurrency: 2,
        }
    }
}

/// The Automatic1111 / Forge web UI's API (`--api`): `POST /sdapi/v1/txt2img` and
/// `/sdapi/v1/img2img`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Automatic1111Config {
    /// e.g. `http://127.0.0.1:7860`; empty: not used.
    pub base_url: String,
    /// One call (a picture is drawn within it).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Calls in flight at once from one generator.
    pub max_concurrency: usize,
}

impl Automatic1111Config {
    pub fn is_set(&self) -> bool {
        !self.base_url.trim().is_empty()
    }
}

impl Default for Automatic1111Config {
    fn default() -> Self {
        Self { base_url: String::new(), timeout: Duration::from_secs(600), max_concurrency: 1 }
    }
}
