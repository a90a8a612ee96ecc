//! Editing jobs: what a job does to which pictures. An edit is a job like a generation;
//! these fields ride on `image.requested`, `image.generated`, `image.completed` and
//! `image.failed` (absent on a generation, so older readers and writers agree).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a job makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A picture from a prompt alone.
    #[default]
    Generate,
    /// One picture changed as the prompt says (`POST /edit-image`).
    Edit,
    /// Several pictures composed into one (`POST /compose-images`).
    Compose,
    /// One picture redrawn in a style (`POST /style-transfer`).
    Style,
    /// Two pictures fused into one (`POST /fusion-images`).
    Fusion,
}

impl JobKind {
    pub fn is_generate(&self) -> bool {
        *self == JobKind::Generate
    }

    /// The name the original service's `edit_type` used.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Generate => "generate",
            JobKind::Edit => "edit",
            JobKind::Compose => "compose",
            JobKind::Style => "style",
            JobKind::Fusion => "fusion",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [JobKind::Generate, JobKind::Edit, JobKind::Compose, JobKind::Style, JobKind::Fusion]
            .into_iter()
            .find(|kind| kind.name() == text)
    }

    /// How many input pictures the kind takes, at least and at most.
    pub fn inputs(self) -> (usize, usize) {
        match self {
            JobKind::Generate => (0, 0),
            JobKind::Edit | JobKind::Style => (1, 1),
            JobKind::Compose => (2, 10),
            JobKind::Fusion => (2, 2),
        }
    }
}

/// A picture an edit starts from. Its bytes are object `object` of the images object
/// store bucket, put there by ingest (an upload, a stored picture, or a URL it fetched
/// once through the download guard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct InputPicture {
    pub object: String,
    /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`, told by the content.
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    /// What the client named: `upload:<id>`, `record:<job id>` or the URL.
    pub source: String,
    /// Where ingest serves this input while it is kept (24 hours): mails show it.
    #[serde(default)]
    pub url: String,
    /// A mask for the picture before it (transparent where the model may paint), not a
    /// picture of its own; only models that take masks accept one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mask: bool,
}
