//! One configuration loader for every binary.
//!
//! Layers, later wins: built-in defaults, then a TOML file (`--config PATH`, else
//! `HUIYING_CONFIG`, else `./config.toml` when present), then environment variables.
//!
//! One rule names every environment variable: `[section] key` is read from
//! `SECTION_KEY` in upper case (`[smtp] host` → `SMTP_HOST`). The original service's
//! short names (`PORT`, `OPENROUTER_API_KEY`, ...) are accepted too; see [`ALIASES`].
//! An environment value is read as the type its key has (number, true/false, text,
//! comma-separated list), so a bad value is reported with the variable's name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The original service's environment names, kept working as aliases.
/// When both an alias and the `SECTION_KEY` name are set, the `SECTION_KEY` name wins.
pub const ALIASES: &[(&str, &str, &str)] = &[
    ("PORT", "server", "port"),
    ("IMAGES_DIR", "server", "images_dir"),
    ("TIMEOUT", "server", "timeout"),
    ("OPENROUTER_API_KEY", "api_keys", "openrouter_api_key"),
    ("MODEL_SCOPE_TOKEN", "api_keys", "model_scope_token"),
    ("OPENAI_API_KEY", "api_keys", "openai_api_key"),
];

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub api_keys: ApiKeysConfig,
    pub models: ModelsConfig,
    pub openrouter: OpenRouterConfig,
    pub openai: OpenAiConfig,
    pub translation: TranslationConfig,
    pub generator: GeneratorConfig,
    pub cloudflare_r2: CloudflareR2Config,
    pub image_processing: ImageProcessingConfig,
    pub logging: LoggingConfig,
    pub smtp: SmtpConfig,
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address ingest listens on. Loopback by default; set `api_keys` before opening it up.
    pub host: String,
    pub port: u16,
    /// Where the store writes images and ingest serves them from.
    pub images_dir: PathBuf,
    /// Seconds `POST /generate-image` waits for the result before answering 202.
    pub timeout: u64,
    /// Absolute base URL that links in events and emails start with.
    /// Empty means `http://localhost:<port>`.
    pub public_url: String,
    /// Keys a client must send as `Authorization: Bearer <key>`; every endpoint but
    /// `/health` then needs one. Empty: no auth (keep `host` on loopback then).
    #[serde(deserialize_with = "secrets_one_or_many")]
    pub api_keys: Vec<Secret>,
    /// Whether picture links (`/static/images/...`) open without an API key, so that the
    /// links in mails work for their readers. `false`: they need a key like the rest.
    pub public_pictures: bool,
    /// Origins (`https://app.example.com`) whose web pages may call the API from a
    /// browser. Empty: no CORS headers (same origin only); `*`: any origin.
    #[serde(deserialize_with = "one_or_many")]
    pub cors_origins: Vec<String>,
    /// Requests per minute one API key (or, without keys, one client address) may make;
    /// more get 429. 0: no limit.
    pub rate_limit_per_minute: u32,
    /// Jobs that may wait for or be in generation at once; `POST /generate-image` answers
    /// 503 with Retry-After beyond that. 0: no bound.
    pub max_queued_jobs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeysConfig {
    pub openrouter_api_key: Secret,
    pub model_scope_token: Secret,
    /// Key for the OpenAI-compatible images API (`[openai] base_url`).
    pub openai_api_key: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Model used when a request names none and an OpenRouter key is set.
    pub default_openrouter_model: String,
    /// Chat model that translates Chinese prompts (used by the translation step).
    pub model_scope_model: String,
    /// Which provider serves which models: `prefix=provider` items, the longest matching
    /// prefix wins; providers are `openrouter`, `openai` and `placeholder`. A model that
    /// matches none goes to OpenRouter when its key is set, else to the OpenAI-compatible API.
    #[serde(deserialize_with = "one_or_many")]
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenRouterConfig {
    pub base_url: String,
    /// Seconds one call may take in all (image models can take a minute).
    pub timeout: u64,
    /// Seconds to wait for the connection.
    pub connect_timeout: u64,
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
    pub timeout: u64,
    pub connect_timeout: u64,
    /// `b64_json` (the picture in the answer) or `url` (a link the generator downloads).
    pub response_format: String,
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
    pub timeout: u64,
    /// Fail the job when translation fails, instead of using the original prompt.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Deliveries of one request before a transient provider failure becomes final.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles with each attempt.
    pub retry_delay: u64,
    /// Requests one generator works on at once.
    pub concurrency: usize,
    /// Largest picture accepted from a provider, in bytes.
    pub max_image_bytes: u64,
    /// Seconds to download a picture a provider returned as a link.
    pub download_timeout: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter: `info`, `debug`, `huiying=debug,async_nats=warn`, ...
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Send real mail when true; otherwise write each mail as an .eml file to `outbox_dir`.
    pub enable: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// The mailbox's authorization code (QQ, 163) or app password (Gmail).
    pub password: Secret,
    /// Sender address, optionally with a display name: `绘影 <me@qq.com>`.
    pub from: String,
    /// Recipient(s): one address, several separated by commas, or a TOML array.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Copy recipients, same forms as `to`.
    #[serde(deserialize_with = "one_or_many")]
    pub cc: Vec<String>,
    /// Blind-copy recipients (not shown in the mail), same forms as `to`.
    #[serde(deserialize_with = "one_or_many")]
    pub bcc: Vec<String>,
    /// Addresses (or `@domain` for a whole domain) that a request may name as its own
    /// recipient with `notify_email`. Empty: requests cannot choose recipients.
    #[serde(deserialize_with = "one_or_many")]
    pub allowed_recipients: Vec<String>,
    /// Also attach the picture inline (`cid:`), so it shows when the link is unreachable.
    pub attach_image: bool,
    /// At most this many mails a minute (providers throttle bursts); 0: no limit.
    pub max_per_minute: u32,
    pub tls: TlsMode,
    /// Extra trusted CA certificate (PEM), e.g. for a self-signed relay.
    pub ca_file: String,
    /// Seconds for connecting and for each SMTP command.
    pub timeout: u64,
    /// Deliveries of one notification before a transient failure becomes final.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles with each attempt.
    pub retry_delay: u64,
    pub outbox_dir: PathBuf,
    /// `zh-CN` (default) or `en`: which template set to use.
    pub language: String,
    pub templates_dir: PathBuf,
}

/// How the mailer secures the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Implicit TLS on port 465, STARTTLS (required) on every other port.
    Auto,
    Starttls,
    Tls,
    /// Plain text; only for a trusted relay on the same host or network.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    /// `nats-server` program that `huiying up` starts when none answers at `url`.
    /// Empty: `.huiying/bin/nats-server`, then `nats-server` on PATH.
    pub server_bin: String,
    /// Configuration file of the nats-server that `huiying up` starts.
    pub server_config: PathBuf,
    /// NATS user this service logs in as (nats.conf has one per service: `ingest`,
    /// `generator`, `store`, `mailer`, and `admin`). Empty: connect without a login.
    /// `huiying up` fills both in when it starts its own nats-server.
    pub user: String,
    pub password: Secret,
    /// Seconds a delivery may stay unacknowledged before JetStream gives it to another
    /// instance. Long model calls send progress acks, so this need not cover them.
    pub ack_wait: u64,
    /// Seconds a stopping service lets the messages in hand finish; the rest are handed
    /// back at once for another instance (keep it below your supervisor's stop timeout).
    pub shutdown_grace: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite file of the store's records.
    pub path: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            images_dir: "images".into(),
            timeout: 60,
            public_url: String::new(),
            api_keys: Vec::new(),
            public_pictures: true,
            cors_origins: Vec::new(),
            rate_limit_per_minute: 0,
            max_queued_jobs: 10_000,
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            default_openrouter_model: "google/gemini-2.5-flash-image-preview:free".into(),
            model_scope_model: "deepseek-ai/DeepSeek-V3.1".into(),
            routes: vec!["dall-e-=openai".into(), "gpt-image-=openai".into(), "huiying/=placeholder".into()],
        }
    }
}

impl Default for OpenRouterConfig {
    fn default() -> Self {
        Self {
            base_url: "https://openrouter.ai/api/v1".into(),
            timeout: 180,
            connect_timeout: 10,
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
            timeout: 180,
            connect_timeout: 10,
            response_format: "b64_json".into(),
            default_model: "dall-e-3".into(),
            max_concurrency: 4,
            requests_per_minute: 0,
        }
    }
}

impl Default for TranslationConfig {
    fn default() -> Self {
        Self { enable: true, base_url: "https://api-inference.modelscope.cn/v1".into(), timeout: 30, required: false }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_delay: 5,
            concurrency: 4,
            max_image_bytes: 20 * 1024 * 1024,
            download_timeout: 60,
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

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            enable: false,
            host: String::new(),
            port: 587,
            username: String::new(),
            password: Secret::default(),
            from: String::new(),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            allowed_recipients: Vec::new(),
            attach_image: false,
            max_per_minute: 0,
            tls: TlsMode::Auto,
            ca_file: String::new(),
            timeout: 30,
            max_attempts: 10,
            retry_delay: 30,
            outbox_dir: "outbox".into(),
            language: "zh-CN".into(),
            templates_dir: "templates".into(),
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            server_bin: String::new(),
            server_config: "nats.conf".into(),
            user: String::new(),
            password: Secret::default(),
            ack_wait: 60,
            shutdown_grace: 20,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { path: "huiying.db".into() }
    }
}

impl ServerConfig {
    /// The base of every absolute link, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://localhost:{}", self.port)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }

    pub fn wait_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

impl NatsConfig {
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait.max(1))
    }
}

impl SmtpConfig {
    /// Whether a request may send its notification to `address` (`allowed_recipients`).
    pub fn allows_recipient(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        self.allowed_recipients.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.strip_prefix('@') {
                Some(domain) => address.rsplit_once('@').is_some_and(|(_, d)| d == domain),
                None => address == allowed,
            }
        })
    }

    /// The mode actually used on this port.
    pub fn effective_tls(&self) -> TlsMode {
        match self.tls {
            TlsMode::Auto if self.port == 465 => TlsMode::Tls,
            TlsMode::Auto => TlsMode::Starttls,
            other => other,
        }
    }
}

/// Reads a list from a TOML array or from one string of comma-separated items.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text.split(',').map(String::from).collect(),
        OneOrMany::Many(items) => items,
    };
    Ok(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn secrets_one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    Ok(one_or_many(deserializer)?.into_iter().map(Secret).collect())
}

/// A password or key: readable only through [`Secret::expose`], never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "Secret(***)" } else { "Secret(<unset>)" })
    }
}

/// Why a configuration could not be loaded. `Display` is the one line a user sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("bad configuration: {key} (from {origin}): {problem}")]
    Invalid { key: String, origin: String, problem: String },
}

/// A loaded configuration and the file it came from, if any.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
}

/// Loads the configuration from the process environment and the file it names.
pub fn load(explicit_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    load_from(explicit_file, std::env::vars())
}

/// Loads the configuration with the given environment (tests pass their own).
pub fn load_from(
    explicit_file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = env.into_iter().collect();
    let file = explicit_file
        .map(Path::to_path_buf)
        .or_else(|| env.get("HUIYING_CONFIG").filter(|p| !p.is_empty()).map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("config.toml")).filter(|p| p.is_file()));

    let mut merged = defaults_table();
    let mut origins: HashMap<String, String> = HashMap::new();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        for (section, values) in table {
            let Some(values) = values.as_table() else {
                return Err(ConfigError::Invalid {
                    key: section,
                    origin: path.display().to_string(),
                    problem: "expected a [section] table".into(),
                });
            };
            for (key, value) in values {
                origins.insert(format!("{section}.{key}"), path.display().to_string());
                section_mut(&mut merged, &section).insert(key.clone(), value.clone());
            }
        }
    }
    apply_env(&mut merged, &mut origins, &env)?;

    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        let origin = origins.get(&key).cloned().unwrap_or_else(|| "defaults".into());
        ConfigError::Invalid { key, origin, problem: e.into_inner().to_string() }
    })?;
    validate(&config, &origins)?;
    Ok(Loaded { config, file })
}

fn defaults_table() -> toml::Table {
    toml::Table::try_from(Config::default()).expect("the default configuration serializes")
}

fn section_mut<'a>(table: &'a mut toml::Table, section: &str) -> &'a mut toml::Table {
    table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("sections are tables")
}

/// Overlays environment variables onto `merged`, each read as its key's default type.
fn apply_env(
    merged: &mut toml::Table,
    origins: &mut HashMap<String, String>,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let defaults = defaults_table();
    // Aliases first, so that the SECTION_KEY names written after them win.
    let mut overrides: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for (alias, section, key) in ALIASES {
        if let Some(value) = env.get(*alias) {
            overrides.insert((section.to_string(), key.to_string()), (alias.to_string(), value.clone()));
        }
    }
    for (section, keys) in &defaults {
        let prefix = format!("{}_", section.to_uppercase());
        let vars: HashMap<String, String> = envy::prefixed(prefix.as_str())
            .from_iter(env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .expect("a map of strings always deserializes");
        let keys = keys.as_table().expect("sections are tables");
        for (key, value) in vars {
            if keys.contains_key(&key) {
                let name = format!("{prefix}{}", key.to_uppercase());
                overrides.insert((section.clone(), key), (name, value));
            }
        }
    }
    for ((section, key), (var, raw)) in overrides {
        let template = &defaults[&section][&key];
        let value = parse_env_value(template, &raw).map_err(|problem| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            origin: format!("environment variable {var}"),
            problem,
        })?;
        origins.insert(format!("{section}.{key}"), format!("environment variable {var}"));
        section_mut(merged, &section).insert(key, value);
    }
    Ok(())
}

/// Reads an environment string as the TOML type of the key's default value.
fn parse_env_value(template: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    let text = raw.trim();
    match template {
        toml::Value::Integer(_) => {
            text.parse::<i64>().map(toml::Value::Integer).map_err(|_| format!("expected a whole number, got {raw:?}"))
        }
        toml::Value::Boolean(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        toml::Value::Array(_) => Ok(toml::Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        )),
        _ => Ok(toml::Value::String(raw.to_string())),
    }
}

/// Checks that cannot be expressed as types.
fn validate(config: &Config, origins: &HashMap<String, String>) -> Result<(), ConfigError> {
    let invalid = |key: &str, problem: String| ConfigError::Invalid {
        key: key.to_string(),
        origin: origins.get(key).cloned().unwrap_or_else(|| "defaults".into()),
        problem,
    };
    let smtp = &config.smtp;
    if smtp.enable {
        for (key, value) in [("smtp.host", &smtp.host), ("smtp.from", &smtp.from)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must be set when smtp.enable is true".into()));
            }
        }
        if smtp.to.is_empty() {
            return Err(invalid("smtp.to", "must name at least one recipient when smtp.enable is true".into()));
        }
        if smtp.port == 0 {
            return Err(invalid("smtp.port", "must be a port number from 1 to 65535".into()));
        }
    }
    if !matches!(smtp.language.as_str(), "zh-CN" | "en") {
        return Err(invalid("smtp.language", format!("expected \"zh-CN\" or \"en\", got {:?}", smtp.language)));
    }
    let quality = config.image_processing.quality;
    if !(1..=100).contains(&quality) {
        return Err(invalid("image_processing.quality", format!("expected 1 to 100, got {quality}")));
    }
    let r2 = &config.cloudflare_r2;
    if !r2.bucket.is_empty() && r2.public_url.is_empty() {
        return Err(invalid(
            "cloudflare_r2.public_url",
            "must be set with a bucket: it is the bucket's public domain, so that links open".into(),
        ));
    }
    for route in &config.models.routes {
        match route.split_once('=') {
            Some((prefix, "openrouter" | "openai" | "placeholder")) if !prefix.is_empty() => {}
            _ => {
                return Err(invalid(
                    "models.routes",
                    format!("{route:?} is not prefix=provider with provider openrouter, openai or placeholder"),
                ));
            }
        }
    }
    if !matches!(config.openai.response_format.as_str(), "b64_json" | "url") {
        return Err(invalid(
            "openai.response_format",
            format!("expected \"b64_json\" or \"url\", got {:?}", config.openai.response_format),
        ));
    }
    for origin in &config.server.cors_origins {
        let well_formed = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.trim_end_matches('/').split("://").nth(1).unwrap_or("").contains('/')
                && origin.is_ascii()
                && !origin.contains(char::is_whitespace));
        if !well_formed {
            return Err(invalid(
                "server.cors_origins",
                format!(
                    "{origin:?} is not an origin like \"https://app.example.com\" (scheme and host, no path) or \"*\""
                ),
            ));
        }
    }
    if config.nats.user.is_empty() == config.nats.password.is_set() {
        return Err(invalid("nats.user", "set nats.user and nats.password together (or neither)".into()));
    }
    if config.generator.max_attempts == 0 {
        return Err(invalid("generator.max_attempts", "must be at least 1".into()));
    }
    if smtp.max_attempts == 0 {
        return Err(invalid("smtp.max_attempts", "must be at least 1".into()));
    }
    let public_url = &config.server.public_url;
    if !(public_url.is_empty() || public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(invalid("server.public_url", "must start with http:// or https://".into()));
    }
    Ok(())
}
