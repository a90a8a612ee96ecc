//! The sections of the configuration file and their defaults (all but `[smtp]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::KeyConfig;
use super::values::{
    CorsOrigin, ResponseFormat, Route, Secret, TimeZoneName, one_or_many_parsed, seconds, secrets_one_or_many,
};
use crate::failure::RetryPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address ingest listens on. Loopback by default; set `api_keys` before opening it up.
    pub host: String,
    pub port: u16,
    /// Where the store writes images and ingest serves them from.
    pub images_dir: PathBuf,
    /// Seconds `POST /generate-image` waits for the result before answering 202.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Absolute base URL that links in events and emails start with.
    /// Empty means `http://localhost:<port>`.
    pub public_url: String,
    /// Keys a client must send as `Authorization: Bearer <key>`; every endpoint but
    /// `/health` then needs one. Empty: no auth (keep `host` on loopback then).
    #[serde(deserialize_with = "secrets_one_or_many")]
    pub api_keys: Vec<Secret>,
    /// Keys that see and manage every job (named `admin-1`, `admin-2`, ...).
    #[serde(deserialize_with = "secrets_one_or_many")]
    pub admin_keys: Vec<Secret>,
    /// Named keys, each with its rights and quota (`[[server.keys]]`).
    pub keys: Vec<KeyConfig>,
    /// Where a day starts for quotas (IANA name, `Asia/Shanghai`); `UTC` by default.
    pub timezone: TimeZoneName,
    /// Whether picture links (`/static/images/...`) open without an API key, so that the
    /// links in mails work for their readers. `false`: they need a key like the rest.
    pub public_pictures: bool,
    /// Keys that sign links only huiying may make (one-click unsubscribe): the first
    /// signs, every one is accepted, so a key can be rotated. Empty: huiying makes one at
    /// first start and keeps it in NATS, where every service finds it.
    #[serde(deserialize_with = "secrets_one_or_many")]
    pub link_keys: Vec<Secret>,
    /// Days a picture link in a mail opens without a key, when pictures are private
    /// (`public_pictures = false`).
    pub link_days: u32,
    /// Origins (`https://app.example.com`) whose web pages may call the API from a
    /// browser. Empty: no CORS headers (same origin only); `*`: any origin.
    #[serde(deserialize_with = "one_or_many_parsed")]
    pub cors_origins: Vec<CorsOrigin>,
    /// Requests per minute one API key (or, without keys, one client address) may make;
    /// more get 429. 0: no limit.
    pub rate_limit_per_minute: u32,
    /// Jobs that may wait for or be in generation at once; `POST /generate-image` answers
    /// 503 with Retry-After beyond that. 0: no bound.
    pub max_queued_jobs: u64,
    /// An option the chosen model cannot honour (`size` on OpenRouter, `quality` on the
    /// placeholder ...) fails the job with 400 instead of being left out (and named in the
    /// `Huiying-Ignored` header), as the original service left it out.
    pub strict_options: bool,
    /// The most pictures one request may ask for (`n`); each is a job of its own.
    pub max_n: u32,
    /// The most models one comparison (`POST /compare`) may name.
    pub max_compare: u32,
    /// Seconds ingest holds a request NATS cannot take yet (a cluster electing a stream
    /// leader after one died, or ingest's connection moving to another node of it), to
    /// publish it once NATS can: the client sees a slower answer, not a 503. On one
    /// server, a NATS that is gone is answered 503 at once. 0: never hold.
    #[serde(with = "seconds")]
    pub failover_wait: Duration,
    /// Serve beyond this machine (`host` not loopback) without `api_keys`: anyone who
    /// reaches the port may then queue paid jobs and read every picture. Ingest refuses
    /// to start that way unless this says so.
    pub allow_open: bool,
    /// Let an edit's `image_url` point at loopback, private or link-local addresses. Off,
    /// an API client cannot make huiying fetch from inside your network (and serve what it
    /// got at `/inputs/...`). `[generator] allow_private_urls` is for model answers only.
    pub allow_private_edit_inputs: bool,
    /// Set when the file is the original service's: `timeout` then does not cut the
    /// synchronous wait short (see [`ServerConfig::sync_wait`]). Never read from a file.
    #[serde(skip)]
    pub original_timeout: bool,
}

/// How long a synchronous request waits under an original service's config file.
pub const ORIGINAL_SYNC_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeysConfig {
    pub openrouter_api_key: Secret,
    pub model_scope_token: Secret,
    /// Key for the OpenAI-compatible images API (`[openai] base_url`).
    pub openai_api_key: Secret,
}

/// `[models]`: its own keys, then one table per model name (`[models."<name>"]`).
/// Not `deny_unknown_fields` (serde cannot with a flattened map); a misspelt key of
/// its own still fails, as a model table it is not.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelsConfig {
    /// Model used when a request names none and an OpenRouter key is set.
    pub default_openrouter_model: String,
    /// Chat model that translates Chinese prompts (used by the translation step).
    pub model_scope_model: String,
    /// Model for edits (edit, compose, style, fusion) that name none. Empty:
    /// `Qwen/Qwen-Image-Edit` when `model_scope_token` is set, else the generation default.
    pub default_edit_model: String,
    /// Which provider serves which models: `prefix=provider` items, the longest matching
    /// prefix wins; providers are `openrouter`, `openai` and `placeholder`. A model that
    /// matches none goes to OpenRouter when its key is set, else to the OpenAI-compatible API.
    #[serde(deserialize_with = "one_or_many_parsed")]
    pub routes: Vec<Route>,
    /// `[models."<name>"]`: settings of one model, by its name.
    #[serde(flatten)]
    pub each: std::collections::BTreeMap<String, ModelSettings>,
}

/// `[models."<name>"]`: what huiying does with one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Models tried in order when this one's provider still fails after its retries
    /// (5xx, timeouts, 429 past the retry budget), never when it refuses the request.
    pub fallback: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenRouterConfig {
    pub base_url: String,
    /// Seconds one call may take in all (image models can take a minute).
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Seconds to wait for the connection.
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// Sent as `HTTP-Referer` (OpenRouter's app attribution).
    pub http_referer: String,
    /// Sent as `X-Title`.
    pub x_title: String,
    /// Calls in flight at once from one generator.
    pub max_concurrency: usize,
    /// Calls started per minute (free tiers allow about 20); 0: no limit.
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base of an OpenAI-compatible images API (OpenAI, LocalAI, ...).
    pub base_url: String,
    #[serde(with = "seconds")]
    pub timeout: Duration,
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// `b64_json` (the picture in the answer) or `url` (a link the generator downloads).
    pub response_format: ResponseFormat,
    /// Model used when a request names none and only this API has a key.
    pub default_model: String,
    pub max_concurrency: usize,
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranslationConfig {
    /// Translate prompts holding Chinese before generation (needs `model_scope_token`).
    pub enable: bool,
    /// OpenAI-compatible chat endpoint; the model is `[models] model_scope_model`.
    pub base_url: String,
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Fail the job when translation fails, instead of using the original prompt.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Deliveries of one request before a transient provider failure becomes final.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles with each attempt.
    #[serde(with = "seconds")]
    pub retry_delay: Duration,
    /// Requests one generator works on at once.
    pub concurrency: usize,
    /// Largest picture accepted from a provider, in bytes.
    pub max_image_bytes: u64,
    /// Seconds to download a picture a provider returned as a link.
    #[serde(with = "seconds")]
    pub download_timeout: Duration,
    /// Allow downloading from loopback, private and link-local addresses. Off: such links
    /// are refused, so a provider's answer cannot reach into your network.
    pub allow_private_urls: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudflareR2Config {
    pub account_id: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub endpoint: String,
    pub bucket: String,
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageProcessingConfig {
    pub enable_resize: bool,
    pub max_width: u32,
    pub max_height: u32,
    /// 1-100, for lossy formats.
    pub quality: u8,
    pub format: ImageFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl<'de> Deserialize<'de> for ImageFormat {
    /// `jpeg` or `jpg`, `png`, `webp`, in any case (the original took `jpg` and `JPEG`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(ImageFormat::Jpeg),
            "png" => Ok(ImageFormat::Png),
            "webp" => Ok(ImageFormat::Webp),
            _ => Err(serde::de::Error::custom(format!("expected jpeg (or jpg), png or webp, got {text:?}"))),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of a small listener serving `GET /metrics` (Prometheus) for the
    /// services in this process; empty: none (ingest always serves `/metrics`).
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter: `info`, `debug`, `huiying=debug,async_nats=warn`, ...
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            images_dir: "images".into(),
            timeout: Duration::from_secs(60),
            public_url: String::new(),
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            keys: Vec::new(),
            timezone: TimeZoneName::default(),
            public_pictures: true,
            link_keys: Vec::new(),
            link_days: 30,
            cors_origins: Vec::new(),
            rate_limit_per_minute: 0,
            max_queued_jobs: 10_000,
            strict_options: false,
            max_n: 10,
            max_compare: 4,
            failover_wait: Duration::from_secs(15),
            allow_open: false,
            allow_private_edit_inputs: false,
            original_timeout: false,
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            default_openrouter_model: "google/gemini-2.5-flash-image-preview:free".into(),
            model_scope_model: "deepseek-ai/DeepSeek-V3.1".into(),
            default_edit_model: String::new(),
            routes: [
                "dall-e-=openai",
                "gpt-image-=openai",
                "huiying/=placeholder",
                "Qwen/Qwen-Image=modelscope",
                "comfyui/=comfyui",
                "automatic1111/=automatic1111",
            ]
            .into_iter()
            .map(|route| route.parse().expect("the default routes parse"))
            .collect(),
            each: Default::default(),
        }
    }
}

impl Default for OpenRouterConfig {
    fn default() -> Self {
        Self {
            base_url: "https://openrouter.ai/api/v1".into(),
            timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(10),
            http_referer: String::new(),
            x_title: "huiying".into(),
            max_concurrency: 4,
            requests_per_minute: 0,
        }
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(10),
            response_format: ResponseFormat::B64Json,
            default_model: "dall-e-3".into(),
            max_concurrency: 4,
            requests_per_minute: 0,
        }
    }
}

impl Default for TranslationConfig {
    fn default() -> Self {
        Self {
            enable: true,
            base_url: "https://api-inference.modelscope.cn/v1".into(),
            timeout: Duration::from_secs(30),
            required: false,
        }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_delay: Duration::from_secs(5),
            concurrency: 4,
            max_image_bytes: 20 * 1024 * 1024,
            download_timeout: Duration::from_secs(60),
            allow_private_urls: false,
        }
    }
}

impl Default for ImageProcessingConfig {
    fn default() -> Self {
        Self { enable_resize: true, max_width: 1920, max_height: 1080, quality: 85, format: ImageFormat::Jpeg }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: "info".into() }
    }
}

impl CloudflareR2Config {
    /// What R2 still needs besides a bucket; empty when it is complete.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.access_key_id.is_empty() {
            missing.push("access_key_id");
        }
        if !self.access_key_secret.is_set() {
            missing.push("access_key_secret");
        }
        if self.endpoint.is_empty() && self.account_id.is_empty() {
            missing.push("endpoint (or account_id)");
        }
        missing
    }

    /// Whether pictures go to R2: a bucket and everything it needs.
    pub fn is_on(&self) -> bool {
        !self.bucket.is_empty() && self.missing().is_empty()
    }
}

impl ServerConfig {
    /// How long a synchronous `POST /generate-image` waits before answering 202.
    pub fn sync_wait(&self) -> Duration {
        if self.original_timeout { ORIGINAL_SYNC_WAIT } else { self.timeout }
    }

    /// The base of every absolute link, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://localhost:{}", self.port)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

impl GeneratorConfig {
    /// Provider failures: `retry_delay`, doubling to ten minutes, `max_attempts` tries.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_delay,
            cap: Duration::from_secs(600),
            jitter: 0.2,
            max_attempts: self.max_attempts,
        }
    }
}
