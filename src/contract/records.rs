//! The records request/reply API: ingest asks, any store instance answers (NATS service
//! API, one queue group), so that ingest never opens the database.

use serde::{Deserialize, Serialize};
use time::Date;

use super::events::{JobKind, Labels};

/// `RecordQuery` → `RecordViewPage`.
pub const RECORDS_LIST: &str = "huiying.records.list";
/// A job id (the bare bytes) → `RecordView`.
pub const RECORDS_GET: &str = "huiying.records.get";
/// Empty → `ImageList`.
pub const IMAGES_LIST: &str = "huiying.images.list";
/// A job id (the bare bytes) → `true` when its record, picture, thumbnail and R2 / S3
/// copy were deleted, `false` when it had no record. Who may ask is ingest's to decide.
pub const RECORDS_DELETE: &str = "huiying.records.delete";

/// `PickRequest` → the number of records changed (0: the job has no record).
pub const RECORDS_PICK: &str = "huiying.records.pick";

/// Marks `job` as its group's pick, and no other picture of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickRequest {
    pub group_id: String,
    pub job_id: String,
}

/// Every reply: `{"ok": ...}` or `{"error": {"status", "message"}}` (status as in HTTP).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer<T> {
    Ok(T),
    Error { status: u16, message: String },
}

/// One stored picture, with the original service's fields plus the job id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Row number; 0 before insertion.
    #[serde(default)]
    pub id: i64,
    /// Text, like the rest of a record: records are read back from a database that imports
    /// and older versions wrote too, and one odd row must not hide the others.
    pub job_id: String,
    pub original_prompt: String,
    pub english_prompt: String,
    pub model: String,
    pub local_path: String,
    pub r2_url: Option<String>,
    /// Why the R2 upload failed, when it did (the picture is then local only).
    #[serde(default)]
    pub r2_error: Option<String>,
    pub file_size: u64,
    pub width: u32,
    pub height: u32,
    pub format: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// Who asked, as the request's `user` said.
    #[serde(default)]
    pub user: Option<String>,
    /// The API key's name the picture belongs to; none: no key's (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What the job cost (`cost_usd` null when unknown: pictures stored before costs, imports).
    #[serde(flatten)]
    pub cost: super::cost::Cost,
    /// Set when a fallback drew the picture (`model`) instead of the model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<super::events::Fallback>,
    /// The group the job belongs to (one of `n` pictures, a comparison, a batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Chosen as the group's best (`POST /groups/{id}/pick`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub picked: bool,
    /// The AI-content labels the file carries (none on pictures stored before labels).
    #[serde(default)]
    pub labels: Labels,
    /// What the job made: `generate`, or an edit (`edit`, `compose`, `style`, `fusion`).
    #[serde(default)]
    pub kind: JobKind,
    /// An edit's input pictures, as the client named them (`upload:<id>`,
    /// `record:<job id>` or the URL).
    #[serde(default)]
    pub inputs: Vec<String>,
}

impl Record {
    /// The stored file's name (the last part of `local_path`).
    pub fn filename(&self) -> String {
        std::path::Path::new(&self.local_path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Where a picture's thumbnail is kept, beside the picture (on disk and on S3 / R2):
/// `thumbs/<file name without extension>.jpg`.
pub fn thumbnail_name(filename: &str) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(stem, _)| stem);
    format!("thumbs/{stem}.jpg")
}

/// What `GET /records` asks for; ingest checks it, the store runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordQuery {
    pub page: u32,
    pub limit: u32,
    pub keyword: Option<String>,
    pub model: Option<String>,
    pub date_from: Option<Date>,
    pub date_to: Option<Date>,
    /// Only pictures that carry (true) or lack (false) the implicit label.
    #[serde(default)]
    pub implicit_label: Option<bool>,
    /// Only pictures that carry (true) or lack (false) the visible label.
    #[serde(default)]
    pub explicit_label: Option<bool>,
    /// Only pictures of this kind.
    #[serde(default)]
    pub kind: Option<JobKind>,
    /// Only edits (any kind but `generate`).
    #[serde(default)]
    pub edits_only: bool,
    /// Only records of this key (an ordinary key's own); `Some("")`: none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Records of this page the asker already has: a page that does not fit one NATS
    /// message comes in parts ([`RecordViewPage::more`]), each asked after the last.
    #[serde(default)]
    pub skip: u32,
}

impl Default for RecordQuery {
    /// The first page of 20, unfiltered (as `GET /records` without parameters).
    fn default() -> Self {
        Self {
            page: 1,
            limit: 20,
            keyword: None,
            model: None,
            date_from: None,
            date_to: None,
            implicit_label: None,
            explicit_label: None,
            kind: None,
            edits_only: false,
            owner: None,
            skip: 0,
        }
    }
}

/// A record as the API shows it: the stored fields plus an absolute link.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordView {
    #[serde(flatten)]
    pub record: Record,
    pub url: String,
    /// The link through ingest (the same as `url` without S3 / R2).
    #[serde(default)]
    pub local_url: String,
    /// A small JPEG of the picture for galleries; absent for pictures stored without one
    /// (before thumbnails, or imported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordViewPage {
    pub records: Vec<RecordView>,
    pub total: u64,
    pub page: u32,
    pub limit: u32,
    pub pages: u64,
    /// Between the store and ingest only: the page goes on past these records (it did
    /// not fit one message); ask again with `skip` past them. Never in an HTTP answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(ignore)]
    pub more: bool,
}

/// The most a store answer may hold: NATS refuses messages over its `max_payload` (1 MB
/// by default, and in huiying's nats.conf); the rest is headroom for headers.
pub const MAX_ANSWER_BYTES: usize = 900 * 1024;

/// A picture in `images_dir`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageFile {
    pub filename: String,
    pub url: String,
    /// RFC 3339, UTC.
    pub created_time: String,
    pub size: u64,
}

/// The picture files, newest first, a page at a time.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageFile>,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub page: u32,
    #[serde(default)]
    pub limit: u32,
    #[serde(default)]
    pub pages: u64,
}

/// What `GET /images` asks for: a page of at most [`ImagePage::MAX_LIMIT`] files (an
/// empty request is the first page of that many).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImagePage {
    pub page: u32,
    pub limit: u32,
}

impl ImagePage {
    /// A thousand files' links are about 250 KB: well inside one NATS message.
    pub const MAX_LIMIT: u32 = 1000;
}

impl Default for ImagePage {
    fn default() -> Self {
        Self { page: 1, limit: Self::MAX_LIMIT }
    }
}
