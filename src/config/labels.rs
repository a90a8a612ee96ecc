//! `[labels]`: the AI-content labels the store puts on every picture (GB 45438-2025).

use serde::{Deserialize, Serialize};

use super::Language;
use crate::labels::Corner;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// The implicit label: XMP metadata (TC260 `AIGC`, IPTC digital source type) in
    /// every file. On by default.
    pub implicit: bool,
    /// The explicit label: a visible text in a corner of every picture. On by default;
    /// turning it off is the operator's legal choice (see docs/labels.md).
    pub explicit: bool,
    /// `ContentProducer`: your organisation's name, or its filing number (备案号 or
    /// unified social credit code). Empty: "huiying", and a warning at start.
    pub producer: String,
    /// `ContentPropagator`: where pictures are served. Empty: `[cloudflare_r2]
    /// public_url` when pictures go to R2, else `[server] public_url` (or the address
    /// ingest listens on).
    pub propagator: String,
    /// The visible text's default language: "AI生成" (zh-CN) or "AI-generated" (en).
    pub language: Language,
    /// The visible text; empty: as `language` says. Only the built-in font's characters
    /// (printable ASCII and 人工智能生成合成内容由本图片制作标识).
    pub text: String,
    /// `top-left`, `top-right`, `bottom-left` or `bottom-right`.
    pub position: Corner,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        Self {
            implicit: true,
            explicit: true,
            producer: String::new(),
            propagator: String::new(),
            language: Language::ZhCn,
            text: String::new(),
            position: Corner::BottomRight,
        }
    }
}

impl LabelsConfig {
    /// The visible text: `text`, else the language's default.
    pub fn visible_text(&self) -> &str {
        match (self.text.trim(), self.language) {
            ("", Language::ZhCn) => "AI生成",
            ("", Language::En) => "AI-generated",
            (text, _) => text,
        }
    }

    /// `producer`, else the software's name.
    pub fn producer(&self) -> &str {
        match self.producer.trim() {
            "" => "huiying",
            producer => producer,
        }
    }
}
