//! Translating Chinese prompts (the generator before drawing, ingest for `POST /translate`) to English before generation (the original service's
//! `english_prompt`): most image models understand English best, and file names are made
//! of English keywords.

use serde_json::json;

use crate::config::Config;
use crate::failure::Failure;
use crate::model_api as http;

/// Whether `text` holds CJK ideographs (any block, not only the basic one).
pub(crate) fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c as u32,
            0x3400..=0x4DBF     // Extension A
            | 0x4E00..=0x9FFF   // Unified Ideographs
            | 0xF900..=0xFAFF   // Compatibility Ideographs
            | 0x20000..=0x2A6DF // Extension B
            | 0x2A700..=0x2EBEF // Extensions C to F
            | 0x2F800..=0x2FA1F // Compatibility Supplement
            | 0x30000..=0x323AF // Extensions G and H
        )
    })
}

/// An OpenAI-compatible chat endpoint that translates (ModelScope by default).
#[derive(Clone)]
pub(crate) struct Translator {
    http: reqwest::Client,
    url: String,
    model: String,
    token: crate::config::Secret,
}

impl Translator {
    /// `None` when translation is switched off or has no token.
    pub(crate) fn from_config(config: &Config) -> reqwest::Result<Option<Self>> {
        let token = &config.api_keys.model_scope_token;
        if !config.translation.enable || !token.is_set() {
            return Ok(None);
        }
        Ok(Some(Self {
            http: http::client(std::time::Duration::from_secs(10), config.translation.timeout)?,
            url: format!("{}/chat/completions", config.translation.base_url.trim_end_matches('/')),
            model: config.models.model_scope_model.clone(),
            token: token.clone(),
        }))
    }

    /// The English version of `text`.
    pub(crate) async fn translate(&self, text: &str) -> Result<String, Failure> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "Translate the user's image prompt into English. Keep every detail. Reply with the translation only, no quotes, no explanations."},
                {"role": "user", "content": text},
            ],
        });
        let answer = http::post_json(&self.http, "the translation service", &self.url, &self.token, &[], &body).await?;
        let translated = answer
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .map(|c| c.trim().trim_matches('"').trim().to_string())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Failure::permanent("the translation service answered without text"))?;
        Ok(translated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideographs_from_every_block_count_as_chinese_and_kana_or_latin_do_not() {
        for text in ["一只猫", "a 猫", "𠀀 (Extension B)", "\u{3400}", "\u{F900}", "\u{30000}"] {
            assert!(has_cjk(text), "{text}");
        }
        for text in ["a cat", "café", "ひらがな", "한국어", ""] {
            assert!(!has_cjk(text), "{text}");
        }
    }
}
