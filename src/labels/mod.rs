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
    /// The XMP packet for a picture whose digest ([`pixel_digest`] or [`jpeg_digest`]) is
    /// `digest`.
    pub fn packet(&self, digest: String, visible: Option<&VisibleLabel>) -> String {
        let aigc = xmp::Aigc {
            label: "1".into(),
            content_producer: self.producer.clone(),
            produce_id: self.job_id.clone(),
            reserved_code1: digest,
            content_propagator: self.propagator.clone(),
            propagate_id: self.file_name.clone(),
            reserved_code2: String::new(),
        };
        xmp::packet(&aigc, &self.model, visible.map(|v| v.text.as_str()))
    }
}

/// `ReservedCode1` of a PNG or WebP: `sha256:` and the hex SHA-256 of the pixels as 8-bit
/// RGBA, row by row (RGB pictures count alpha as 255). Both formats keep pixels exactly, so
/// anyone can recompute it from the file.
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
    format!("{PIXEL_DIGEST}{}", hex(context))
}

/// What a [`pixel_digest`] starts with.
pub const PIXEL_DIGEST: &str = "sha256:";
/// What a [`jpeg_digest`] starts with.
pub const JPEG_DIGEST: &str = "sha256-jpeg:";

/// `ReservedCode1` of a JPEG: `sha256-jpeg:` and the hex SHA-256 of the file without its
/// APP0–APP15 and COM segments (metadata: the label itself, EXIF, comments), that is of
/// what decodes to the pixels. Compression changes pixels, so a pixel digest could not be
/// recomputed from a JPEG; this can, and costs a hash of the file instead of the pixels.
/// `None` when `jpeg` is not segmented as a JPEG is.
pub fn jpeg_digest(jpeg: &[u8]) -> Option<String> {
    let mut context = Context::new(&SHA256);
    context.update(jpeg.get(..2).filter(|soi| *soi == [0xFF, 0xD8])?);
    let mut at = 2;
    loop {
        let (marker, rest) = match jpeg.get(at..)? {
            [0xFF, marker, rest @ ..] => (*marker, rest),
            _ => return None,
        };
        // Start of scan: what follows is coded picture data to the end.
        if marker == 0xDA {
            context.update(&jpeg[at..]);
            return Some(format!("{JPEG_DIGEST}{}", hex(context)));
        }
        let length = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let segment = jpeg.get(at..at + 2 + length)?;
        if !matches!(marker, 0xE0..=0xEF | 0xFE) {
            context.update(segment);
        }
        at += 2 + length;
    }
}

fn hex(context: Context) -> String {
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

    fn jpeg(picture: &image::RgbImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        picture.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// `jpeg` with a segment (`marker`, `data`) inserted after the start-of-image marker.
    fn with_segment(jpeg: &[u8], marker: u8, data: &[u8]) -> Vec<u8> {
        let length = (data.len() as u16 + 2).to_be_bytes();
        [&jpeg[..2], &[0xFF, marker], &length, data, &jpeg[2..]].concat()
    }

    #[test]
    fn a_jpeg_digest_ignores_metadata_and_sees_every_change_to_the_coded_picture() {
        let picture = image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 70]));
        let bare = jpeg(&picture);
        let digest = jpeg_digest(&bare).unwrap();
        assert!(digest.starts_with("sha256-jpeg:") && digest.len() == JPEG_DIGEST.len() + 64, "{digest}");
        // Metadata added by any tool (XMP, EXIF, a comment) leaves it as it was.
        let xmp = with_segment(&bare, 0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>");
        let commented = with_segment(&xmp, 0xFE, b"saved by an editor");
        assert_eq!(jpeg_digest(&commented).unwrap(), digest);
        // Other quantisation tables (what decodes to other pixels) or one bit of the scan do not.
        let requantised = with_segment(&bare, 0xDB, &[0; 65]);
        assert_ne!(jpeg_digest(&requantised).unwrap(), digest);
        let mut flipped = bare.clone();
        let middle = flipped.len() - 40;
        flipped[middle] ^= 1;
        assert_ne!(jpeg_digest(&flipped).unwrap(), digest);
        // Not a JPEG, or cut short before its picture data.
        assert_eq!(jpeg_digest(b"\x89PNG\r\n"), None);
        assert_eq!(jpeg_digest(&bare[..20]), None);
    }
}
