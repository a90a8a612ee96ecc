//! `[modelscope]`: ModelScope's asynchronous image API (`Qwen/Qwen-Image-Edit`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::seconds;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelScopeConfig {
    /// API base: `POST {base_url}/images/generations`, `GET {base_url}/tasks/<id>`.
    pub base_url: String,
    /// Between polls of a task (the original polled every 5 s).
    #[serde(with = "seconds")]
    pub poll_interval: Duration,
    /// A task that has not finished by then fails the job; polling stops.
    #[serde(with = "seconds")]
    pub deadline: Duration,
    /// One HTTP call.
    #[serde(with = "seconds")]
    pub timeout: Duration,
}

impl Default for ModelScopeConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api-inference.modelscope.cn/v1".into(),
            poll_interval: Duration::from_secs(5),
            deadline: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
        }
    }
}
