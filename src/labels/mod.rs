//! AI-content labels on every picture the store writes, as China's GB 45438-2025 asks
//! (and the EU AI Act's Art. 50 machine-readable marking):
//! - implicit: an XMP packet in the file (`xmp`), written while encoding;
//! - explicit: a visible "AI生成" in a corner (`visible`), drawn before encoding.
//!
//! `check` reads both back from a file, for `huiying labels check` and the tests.
//! What the law asks and what we write: `docs/labels.md`.

pub mod check;
pub mod visible;
pub mod xmp;

use image::DynamicImage;
use ring::digest::{Context, SHA256};

pub use visible::{Corner, VisibleLabel};

/// The facts an implicit label states about one picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplicitLabel {
    /// `[labels] producer`: the operator's name or filing number.
    pub producer: String,
    /// The job id.
    pub job_id: String,
    /// `[labels] propagator`, else the public URL pictures are served from.
    pub propagator: String,
    /// The file's name.
    pub file_name: String,
    /// The model that drew the picture.
    pub model: String,
}

/// Which labels to put on one picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labelling {
    pub implicit: Option<ImplicitLabel>,
    pub visible: Option<VisibleLabel>,
}

impl ImplicitLabel {
    /// The XMP packet for a picture whose pixels, as encoded, are `pixels`.
    pub fn packet(&self, pixels: &DynamicImage, visible: Option<&VisibleLabel>) -> String {
        let aigc = xmp::Aigc {
            label: "1".into(),
            content_producer: self.producer.clone(),
            produce_id: self.job_id.clone(),
            reserved_code1: pixel_digest(pixels),
            content_propagator: self.propagator.clone(),
            propagate_id: self.file_name.clone(),
            reserved_code2: String::new(),
        };
        xmp::packet(&aigc, &self.model, visible.map(|v| v.text.as_str()))
    }
}

/// `ReservedCode1`: `sha256:` and the hex SHA-256 of the pixels as 8-bit RGBA, row by row
/// (RGB pictures count alpha as 255). For PNG and WebP, which keep pixels exactly, anyone
/// can recompute it from the file; JPEG's compression changes pixels, so there it names
/// the picture as it was before compression.
pub fn pixel_digest(pixels: &DynamicImage) -> String {
    let mut context = Context::new(&SHA256);
    match pixels {
        DynamicImage::ImageRgba8(rgba) => context.update(rgba.as_raw()),
        DynamicImage::ImageRgb8(rgb) => {
            // Expanded a row at a time: no second copy of the whole picture.
            let mut row = Vec::with_capacity(rgb.width() as usize * 4);
            for line in rgb.as_raw().chunks(rgb.width() as usize * 3) {
                row.clear();
                row.extend(line.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]));
                context.update(&row);
            }
        }
        other => context.update(other.to_rgba8().as_raw()),
    }
    let hex: String = context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_and_its_opaque_rgba_have_one_digest() {
        let rgb = image::RgbImage::from_fn(37, 11, |x, y| image::Rgb([x as u8, y as u8, (x * y) as u8]));
        let rgba = DynamicImage::ImageRgb8(rgb.clone()).to_rgba8();
        let digest = pixel_digest(&DynamicImage::ImageRgb8(rgb));
        assert_eq!(digest, pixel_digest(&DynamicImage::ImageRgba8(rgba.clone())));
        let mut changed = rgba;
        changed.get_pixel_mut(3, 3).0[0] ^= 1;
        assert_ne!(pixel_digest(&DynamicImage::ImageRgba8(changed)), digest, "one bit of one pixel changes it");
    }
}
