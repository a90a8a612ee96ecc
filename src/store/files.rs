//! Names and writes of stored pictures.

use std::io::Write;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::contract::events::JobKind;
use time::macros::format_description;

/// Words that say nothing about a picture; left out of file names.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "and", "or", "with", "in", "on", "at", "to", "for", "by", "from", "is", "are", "be", "it",
    "its", "this", "that", "as", "into", "onto", "over", "under", "very", "some", "please", "draw", "image", "picture",
    "photo", "generate", "create", "make",
];
const MAX_KEYWORDS: usize = 5;

/// `huiying_image_<YYYYMMDD_HHMMSS>_<short id>_<english keywords>.<ext>`; an edit's
/// picture is `huiying_edit_...`.
///
/// The time is the job's (not the write's), so a redelivery writes the same name.
pub(super) fn file_name(
    kind: JobKind,
    job_id: &str,
    at: OffsetDateTime,
    english_prompt: &str,
    extension: &str,
) -> String {
    let stamp = at
        .format(format_description!("[year][month][day]_[hour][minute][second]"))
        .expect("the format fits every date");
    let short_id: String = job_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let what = if kind.is_generate() { "image" } else { "edit" };
    format!("huiying_{what}_{stamp}_{short_id}_{}.{extension}", keywords(english_prompt))
}

/// Lower-case ASCII words of the prompt, stop words dropped, joined by `_`; `image` if none.
pub(super) fn keywords(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_ascii_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .take(MAX_KEYWORDS)
        .map(|w| w.chars().take(20).collect())
        .collect();
    if words.is_empty() { "image".into() } else { words.join("_") }
}

/// Name prefix of pictures being written (see [`remove_partial_files`]).
const PARTIAL_PREFIX: &str = ".partial-";

/// Writes `bytes` to `dir/name` so that readers never see a half-written file:
/// a temporary file in the same folder, flushed to disk, then renamed (and the folder
/// flushed, so that the new name survives a power loss).
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    // `name` may hold a folder (`thumbs/...`): the temporary file goes beside the target.
    let target = dir.join(name);
    let dir = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(PARTIAL_PREFIX).tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| e.error)?;
    // The rename itself must reach the disk too before the job is acknowledged.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

/// Removes pictures left half-written by a store that crashed mid-write; returns how many.
/// Run at start. Should another store instance be writing one right now, its rename fails
/// and it writes the picture again (a retry), so nothing is lost.
pub(super) fn remove_partial_files(dir: &Path) -> usize {
    let remove = |dir: &Path| {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
            .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
            .count()
    };
    remove(dir) + remove(&dir.join("thumbs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn names_follow_the_documented_pattern() {
        let name = |kind| {
            file_name(
                kind,
                "3f2a9c1e-0000-4000-8000-000000000000",
                datetime!(2026-11-29 08:05:09 UTC),
                "A cute Cat sitting on the Moon, digital art!",
                "jpg",
            )
        };
        assert_eq!(name(JobKind::Generate), "huiying_image_20261129_080509_3f2a9c1e_cute_cat_sitting_moon_digital.jpg");
        assert_eq!(name(JobKind::Style), "huiying_edit_20261129_080509_3f2a9c1e_cute_cat_sitting_moon_digital.jpg");
    }

    #[test]
    fn a_prompt_without_ascii_words_or_with_path_tricks_gives_a_safe_name() {
        assert_eq!(keywords("一只可爱的猫"), "image");
        assert_eq!(keywords("../../etc/passwd"), "etc_passwd");
    }
}
