//! The options a request may set besides its prompt (they ride on `image.requested`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{InvalidValue, MAX_PROMPT_CHARS};

/// What users of image APIs expect to set besides the prompt. A provider that cannot
/// honour one refuses the job (stage `request`); nothing is silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationOptions {
    /// `WIDTHxHEIGHT`, e.g. `1024x1024`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Pictures per request; one job makes one picture, so only 1 is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// What the picture should not show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// For repeatable results where the model supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `standard`, `hd` ... as the model names them (OpenAI-compatible APIs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// `vivid`, `natural` ... as the model names them (OpenAI-compatible APIs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Parameters of the model's own API that have no field here (OpenRouter's
    /// `image_config` with `aspect_ratio` for Gemini, gpt-image's `background` ...): each
    /// is passed through where the provider's allow-list names it, else left out and
    /// named (`extra.<name>`) in `Huiying-Ignored`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// At most this many `extra` parameters, this large in all (as JSON).
const MAX_EXTRA: usize = 20;
const MAX_EXTRA_BYTES: usize = 8 * 1024;

impl GenerationOptions {
    /// Checks the values themselves (whether a provider supports them is its business).
    pub fn check(&self) -> Result<(), InvalidValue> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(InvalidValue::new(
                "n",
                format!("n is {n}; each job makes one picture, so n must be 1 (ingest makes n jobs of one request)"),
            ));
        }
        if let Some(size) = &self.size {
            let parsed = size.split_once('x').and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
            match parsed {
                Some((w, h)) if (64..=4096).contains(&w) && (64..=4096).contains(&h) => {}
                _ => {
                    return Err(InvalidValue::new(
                        "size",
                        format!("size {size:?} must be WIDTHxHEIGHT with each side from 64 to 4096, e.g. 1024x1024"),
                    ));
                }
            }
        }
        for (name, value) in [("quality", &self.quality), ("style", &self.style)] {
            if let Some(value) = value
                && (value.trim().is_empty() || value.chars().count() > 50 || value.chars().any(char::is_control))
            {
                return Err(InvalidValue::new(name, format!("{name} {value:?} must be a short word, e.g. hd")));
            }
        }
        if self.extra.len() > MAX_EXTRA
            || serde_json::to_vec(&self.extra).map_or(0, |json| json.len()) > MAX_EXTRA_BYTES
        {
            return Err(InvalidValue::new(
                "extra",
                format!("extra holds at most {MAX_EXTRA} parameters and {} KiB", MAX_EXTRA_BYTES / 1024),
            ));
        }
        if let Some(negative) = &self.negative_prompt
            && negative.chars().count() > MAX_PROMPT_CHARS
        {
            return Err(InvalidValue::new(
                "negative_prompt",
                format!("negative_prompt is longer than {MAX_PROMPT_CHARS} characters"),
            ));
        }
        Ok(())
    }

    /// `size` as width and height, when it is set (checked: each side 64 to 4096).
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        let (width, height) = self.size.as_deref()?.split_once('x')?;
        Some((width.parse().ok()?, height.parse().ok()?))
    }

    /// The names of the options that are set.
    pub fn set(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.size.is_some() {
            names.push("size");
        }
        if self.n.is_some() {
            names.push("n");
        }
        if self.negative_prompt.is_some() {
            names.push("negative_prompt");
        }
        if self.seed.is_some() {
            names.push("seed");
        }
        if self.quality.is_some() {
            names.push("quality");
        }
        if self.style.is_some() {
            names.push("style");
        }
        names
    }

    /// These options without the ones named.
    pub fn without(&self, names: &[&str]) -> Self {
        let keep = |name: &str| !names.contains(&name);
        Self {
            size: self.size.clone().filter(|_| keep("size")),
            n: self.n.filter(|_| keep("n")),
            negative_prompt: self.negative_prompt.clone().filter(|_| keep("negative_prompt")),
            seed: self.seed.filter(|_| keep("seed")),
            quality: self.quality.clone().filter(|_| keep("quality")),
            style: self.style.clone().filter(|_| keep("style")),
            extra: self.extra.clone(),
        }
    }

    /// Puts the `extra` parameters into a provider's JSON `body`, beside its own fields.
    pub fn put_extra(&self, body: &mut serde_json::Value) {
        for (name, value) in &self.extra {
            body[name] = value.clone();
        }
    }

    /// These options with only the `extra` parameters `passes` names, and the names
    /// (`extra.<name>`) of those left out.
    pub fn extra_within(self, passes: &[&str]) -> (Self, Vec<String>) {
        let (kept, dropped): (serde_json::Map<_, _>, serde_json::Map<_, _>) =
            self.extra.into_iter().partition(|(name, _)| passes.contains(&name.as_str()));
        let dropped = dropped.keys().map(|name| format!("extra.{name}")).collect();
        (Self { extra: kept, ..self }, dropped)
    }
}
