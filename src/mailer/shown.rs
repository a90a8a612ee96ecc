//! How values read in a mail: times in the reader's zone, sizes, durations, prompts cut
//! short, what a picture cost.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::contract::cost::{Cost, CostSource};

/// A time as the reader reads it: `2026-12-07 19:30:00 (UTC+08:00)` in Shanghai.
pub(super) fn local_time(at: OffsetDateTime, zone: &jiff::tz::TimeZone) -> String {
    let Ok(instant) = jiff::Timestamp::new(at.unix_timestamp(), 0) else { return at.to_string() };
    instant.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M:%S (UTC%:z)").to_string()
}

pub(super) fn shorten(text: &str, max_chars: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Seconds with two decimals under ten seconds (fast jobs), one above.
pub(super) fn seconds(milliseconds: u64) -> String {
    let seconds = milliseconds as f64 / 1000.0;
    if seconds < 10.0 { format!("{seconds:.2}") } else { format!("{seconds:.1}") }
}

pub(super) fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The cost as the templates show it: `{"usd": "0.0390", "source", "source_zh"}`, or
/// nothing when unknown.
pub(super) fn cost_context(cost: &Cost) -> Value {
    let Some(usd) = cost.cost_usd else { return Value::Null };
    let source_zh = match cost.cost_source {
        CostSource::Reported => "服务商报告",
        CostSource::Computed => "按用量计算",
        CostSource::Estimated => "按价格表估算",
        CostSource::Unknown => "未知",
    };
    json!({"usd": format!("{usd:.4}"), "source": cost.cost_source.name(), "source_zh": source_zh})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_prompts_are_shown_briefly() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(shorten("一只\n可爱的猫", 30), "一只 可爱的猫");
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!((seconds(34), seconds(12_345)), ("0.03".to_string(), "12.3".to_string()));
    }
}
