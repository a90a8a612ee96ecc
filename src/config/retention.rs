//! `[retention]`: how long the store keeps pictures.

use serde::{Deserialize, Serialize};

/// How long pictures are kept: the store deletes the oldest (record, file, thumbnail,
/// R2 / S3 copy) past either bound, once an hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a picture is kept; 0: forever.
    pub keep_days: u32,
    /// Gigabytes (2^30 bytes) the stored pictures may take, as their records count them;
    /// 0: no bound.
    pub max_gb: f64,
}

impl RetentionConfig {
    /// Whether anything is ever deleted.
    pub fn is_on(&self) -> bool {
        self.keep_days > 0 || self.max_gb > 0.0
    }

    /// `max_gb` in bytes, when bounded.
    pub fn max_bytes(&self) -> Option<u64> {
        (self.max_gb > 0.0).then(|| (self.max_gb * f64::from(1u32 << 30)) as u64)
    }
}
