//! Configuration values that are parsed into types where they are read, so that a
//! mistake stops the program at start with the key's name.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// Reads a list from a TOML array or from one string of comma-separated items.
pub(super) fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
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

pub(super) fn secrets_one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    Ok(one_or_many(deserializer)?.into_iter().map(Secret).collect())
}

/// Reads a list (as [`one_or_many`]) and parses each item.
pub(super) fn one_or_many_parsed<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    one_or_many(deserializer)?.iter().map(|item| item.parse().map_err(serde::de::Error::custom)).collect()
}

/// Durations are written as whole seconds.
pub(super) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::config) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
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

/// An IANA time zone (`Asia/Shanghai`, `UTC`), known to exist at start.
#[derive(Clone, Debug)]
pub struct TimeZoneName {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl TimeZoneName {
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        Self { name: "UTC".into(), zone: jiff::tz::TimeZone::UTC }
    }
}

impl PartialEq for TimeZoneName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl FromStr for TimeZoneName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let name = text.trim();
        match jiff::tz::TimeZone::get(name) {
            Ok(zone) => Ok(Self { name: name.to_string(), zone }),
            Err(_) => Err(format!("{name:?} is not a time zone name (IANA names: UTC, Asia/Shanghai, ...)")),
        }
    }
}

impl Serialize for TimeZoneName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for TimeZoneName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An image API huiying can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenRouter,
    OpenAi,
    /// ModelScope's asynchronous image API (`Qwen/Qwen-Image-Edit`), with `model_scope_token`.
    ModelScope,
    /// The offline placeholder: draws the prompt's text, never passed off as AI.
    Placeholder,
    /// ComfyUI on one's own GPU: a workflow from `[comfyui] workflow_file`.
    ComfyUi,
    /// The Automatic1111 / Forge web UI's API on one's own GPU.
    Automatic1111,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenRouter => "openrouter",
            Provider::OpenAi => "openai",
            Provider::ModelScope => "modelscope",
            Provider::Placeholder => "placeholder",
            Provider::ComfyUi => "comfyui",
            Provider::Automatic1111 => "automatic1111",
        }
    }

    /// The request options this provider honours (others are left out and named, or
    /// refused with `[server] strict_options`).
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Provider::Placeholder => &["size", "seed", "n"],
            Provider::OpenRouter => &["seed", "n"],
            Provider::OpenAi => &["size", "n", "quality", "style"],
            Provider::ModelScope => &["n"],
            Provider::ComfyUi | Provider::Automatic1111 => &["size", "negative_prompt", "seed", "n"],
        }
    }

    /// Whether an edit with `model` may carry a mask (OpenAI-compatible `/images/edits`).
    pub fn takes_mask(self) -> bool {
        self == Provider::OpenAi
    }

    /// How many input pictures one edit call with `model` takes: a compose or fusion with
    /// more is refused naming the model, never cut down to the first picture.
    pub fn max_edit_inputs(self, model: &str) -> usize {
        match self {
            // Chat models with image input (Gemini and others) take several pictures.
            Provider::OpenRouter => 10,
            // dall-e-2 edits one picture; gpt-image-1 takes up to 16.
            Provider::OpenAi if model.starts_with("dall-e") => 1,
            Provider::OpenAi => 10,
            // Qwen/Qwen-Image-Edit takes one image_url.
            Provider::ModelScope => 1,
            Provider::Placeholder => 10,
            // img2img starts from one picture; the ComfyUI workflow here draws from text.
            Provider::Automatic1111 => 1,
            Provider::ComfyUi => 0,
        }
    }
}

/// `prefix=provider` in `[models] routes`: models whose names start with `prefix` go to
/// `provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub provider: Provider,
}

impl FromStr for Route {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let provider = |name: &str| {
            [
                Provider::OpenRouter,
                Provider::OpenAi,
                Provider::ModelScope,
                Provider::Placeholder,
                Provider::ComfyUi,
                Provider::Automatic1111,
            ]
            .into_iter()
            .find(|p| p.name() == name)
        };
        match text.split_once('=') {
            Some((prefix, name)) if !prefix.is_empty() && provider(name).is_some() => {
                Ok(Self { prefix: prefix.into(), provider: provider(name).expect("checked") })
            }
            _ => Err(format!(
                "{text:?} is not prefix=provider with provider openrouter, openai, modelscope, placeholder, \
                 comfyui or automatic1111"
            )),
        }
    }
}

impl Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}={}", self.prefix, self.provider.name()))
    }
}

/// An origin whose web pages may call the API (`[server] cors_origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `*`: any origin.
    Any,
    /// Scheme and host (and port), without a trailing slash: `https://app.example.com`.
    Exact(String),
}

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(origin: &str) -> Result<Self, String> {
        if origin == "*" {
            return Ok(Self::Any);
        }
        let trimmed = origin.trim_end_matches('/');
        let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !trimmed.split("://").nth(1).unwrap_or("").contains('/')
            && origin.is_ascii()
            && !origin.contains(char::is_whitespace)
            && axum::http::HeaderValue::from_str(trimmed).is_ok();
        if !well_formed {
            return Err(format!(
                "{origin:?} is not an origin like \"https://app.example.com\" (scheme and host, no path) or \"*\""
            ));
        }
        Ok(Self::Exact(trimmed.into()))
    }
}

impl Serialize for CorsOrigin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CorsOrigin::Any => serializer.serialize_str("*"),
            CorsOrigin::Exact(origin) => serializer.serialize_str(origin),
        }
    }
}

/// How the OpenAI-compatible API hands back the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseFormat {
    /// In the answer, as base64.
    #[serde(rename = "b64_json")]
    B64Json,
    /// As a link the generator downloads.
    #[serde(rename = "url")]
    Url,
}

/// Which template set the mailer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Language {
    /// The templates' folder name.
    pub fn tag(self) -> &'static str {
        match self {
            Language::ZhCn => "zh-CN",
            Language::En => "en",
        }
    }
}

/// The NATS servers to connect to: one, or several members of one cluster (the client
/// keeps them as its server pool and reconnects to any). Written as a TOML array or as
/// one comma-separated string (the form `NATS_URL` takes).
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServers(Vec<String>);

impl NatsServers {
    /// The servers, each a URL such as `nats://10.0.0.1:4222`.
    pub fn urls(&self) -> &[String] {
        &self.0
    }

    /// The first server (the one `huiying up` checks and, when local, starts).
    pub fn first(&self) -> &str {
        &self.0[0]
    }
}

impl FromStr for NatsServers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let urls: Vec<String> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        Self::try_from(urls)
    }
}

impl TryFrom<Vec<String>> for NatsServers {
    type Error = String;

    fn try_from(urls: Vec<String>) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("name at least one NATS server".into());
        }
        for url in &urls {
            url.parse::<async_nats::ServerAddr>().map_err(|e| format!("{url:?} is not a NATS server address: {e}"))?;
        }
        Ok(Self(urls))
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl fmt::Debug for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for NatsServers {
    /// As one string, so that the environment's comma-separated form overlays it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NatsServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::try_from(one_or_many(deserializer)?).map_err(serde::de::Error::custom)
    }
}
