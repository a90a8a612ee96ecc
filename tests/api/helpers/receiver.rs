//! A webhook receiver (Python, verifying with the `standardwebhooks` package).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// The signing secret of the tests' endpoints and per-request webhooks.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Hook {
    pub path: String,
    pub at: f64,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub verified: bool,
    pub verified_with_changed_body: bool,
    pub verified_with_changed_timestamp: bool,
}

impl Hook {
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

pub struct WebhookReceiver {
    process: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebhookReceiver {
    /// Starts it with a plan per path (`("/flaky", "500@2,200")`); other paths answer 200.
    pub async fn start(plans: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hooks.jsonl");
        let port = free_port();
        let script = std::path::Path::new(REPO).join("tests/support/webhook_receiver.py");
        let process = Command::new("python3")
            .arg(script)
            .args([port.to_string(), WEBHOOK_SECRET.into(), log.display().to_string()])
            .args(plans.iter().map(|(path, plan)| format!("{path}={plan}")))
            .stdout(Stdio::null())
            .spawn()
            .expect("the tests need python3 with standardwebhooks");
        let base = format!("http://127.0.0.1:{port}");
        wait_for("the webhook receiver to listen", Duration::from_secs(60), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        Self { process, base, log, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request so far.
    pub fn hooks(&self) -> Vec<Hook> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// The requests to `path`.
    pub fn hooks_at(&self, path: &str) -> Vec<Hook> {
        self.hooks().into_iter().filter(|hook| hook.path == path).collect()
    }

    /// Waits until `path` got at least `count` requests, and returns them.
    pub async fn wait_for_hooks(&self, path: &str, count: usize) -> Vec<Hook> {
        wait_for(&format!("{count} webhook(s) at {path}"), Duration::from_secs(60), || async {
            let hooks = self.hooks_at(path);
            (hooks.len() >= count).then_some(hooks)
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
