//! Turning a provider's picture into the file we keep: decode (format told by content),
//! shrink to fit the limits, draw the visible label, encode to the configured format with
//! the implicit label (XMP) written by the encoder.

use std::io::Cursor;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader};

use crate::config::{ImageFormat, ImageProcessingConfig};
use crate::contract::events::Labels;
use crate::labels::{self, Labelling};

/// The keyword of the PNG iTXt chunk holding XMP.
const PNG_XMP_KEYWORD: &str = "XML:com.adobe.xmp";

/// A picture ready to be written.
#[derive(Debug)]
pub struct Processed {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    /// The labels the file carries.
    pub labels: Labels,
    /// A small JPEG of the same picture (at most [`THUMBNAIL_SIDE`] a side) for galleries,
    /// labelled as the picture is.
    pub thumbnail: Vec<u8>,
}

/// The longest side of a thumbnail: sharp in a gallery grid of 160-pixel cells at 2x.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Thumbnails are small and looked at small: quality 80 keeps them at 10-25 KB.
const THUMBNAIL_QUALITY: u8 = 80;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("the picture could not be decoded: {0}")]
    Decode(String),
    #[error("the picture could not be encoded as {format:?}: {message}")]
    Encode { format: ImageFormat, message: String },
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
        }
    }
}

/// The picture's pixels, whatever its format (told by its content). PNGs go through the
/// `png` crate: zune-png 0.5 was measured slower on this work (docs/performance.md).
pub fn decode(input: &[u8]) -> Result<DynamicImage, ProcessError> {
    ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| ProcessError::Decode(e.to_string()))?
        .decode()
        .map_err(|e| ProcessError::Decode(e.to_string()))
}

/// Decodes, resizes, labels and encodes. CPU-bound: call it from a blocking thread.
pub fn process(
    input: &[u8],
    settings: &ImageProcessingConfig,
    labelling: &Labelling,
) -> Result<Processed, ProcessError> {
    let decoded = decode(input)?;
    let fits = decoded.width() <= settings.max_width && decoded.height() <= settings.max_height;
    let mut image = if settings.enable_resize && !fits {
        let (width, height) = fit(decoded.width(), decoded.height(), settings.max_width, settings.max_height);
        shrink(&decoded, width, height, FilterType::Lanczos3)?
    } else {
        decoded
    };
    if let Some(visible) = &labelling.visible {
        visible.draw(&mut image);
    }
    let pixels = encoded_pixels(image, settings.format);
    let bytes = encode(&pixels, settings.format, settings.quality, labelling)?;
    let labels = Labels { implicit: labelling.implicit.is_some(), explicit: labelling.visible.is_some() };
    let thumbnail = thumbnail(&pixels, labelling)?;
    Ok(Processed { bytes, width: pixels.width(), height: pixels.height(), format: settings.format, labels, thumbnail })
}

/// The gallery's JPEG of `pixels` (already labelled), with an implicit label of its own
/// (its digest is the thumbnail's).
fn thumbnail(pixels: &DynamicImage, labelling: &Labelling) -> Result<Vec<u8>, ProcessError> {
    let (width, height) = fit(pixels.width(), pixels.height(), THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    let small = match width < pixels.width() {
        // Bilinear (still a convolution over every source pixel it covers, so no
        // aliasing): at 320 pixels it looks the same as Lanczos3 at a third of the work.
        true => encoded_pixels(shrink(pixels, width, height, FilterType::Bilinear)?, ImageFormat::Jpeg),
        false => encoded_pixels(pixels.clone(), ImageFormat::Jpeg),
    };
    encode(&small, ImageFormat::Jpeg, THUMBNAIL_QUALITY, labelling)
}

/// The largest size within both limits that keeps the aspect ratio.
fn fit(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let scale = (max_width as f64 / width as f64).min(max_height as f64 / height as f64);
    let side = |n: u32| ((n as f64 * scale).round() as u32).max(1);
    (side(width), side(height))
}

/// Convolution with SIMD (fast_image_resize: the `image` crate's own resize is several
/// times slower). Colour alpha is premultiplied while resizing, so edges stay clean.
fn shrink(image: &DynamicImage, width: u32, height: u32, filter: FilterType) -> Result<DynamicImage, ProcessError> {
    let converted;
    let source = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        _ if image.color().has_alpha() => {
            converted = DynamicImage::ImageRgba8(image.to_rgba8());
            &converted
        }
        _ => {
            converted = DynamicImage::ImageRgb8(image.to_rgb8());
            &converted
        }
    };
    let mut target = DynamicImage::new(width, height, source.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new()
        .resize(source, &mut target, &options)
        .map_err(|e| ProcessError::Decode(format!("resizing failed: {e}")))?;
    Ok(target)
}

/// The pixels exactly as they will be encoded: 8-bit RGB for JPEG (it has no alpha),
/// 8-bit RGBA for WebP, and 8-bit RGB or RGBA (as the picture has alpha) for PNG. The
/// implicit label's pixel digest is taken from these.
fn encoded_pixels(image: DynamicImage, format: ImageFormat) -> DynamicImage {
    match (format, image) {
        (ImageFormat::Jpeg, image @ DynamicImage::ImageRgb8(_)) => image,
        (ImageFormat::Jpeg, image) => DynamicImage::ImageRgb8(image.into_rgb8()),
        (ImageFormat::Webp, image @ DynamicImage::ImageRgba8(_)) => image,
        (ImageFormat::Webp, image) => DynamicImage::ImageRgba8(image.into_rgba8()),
        (ImageFormat::Png, image @ (DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_))) => image,
        (ImageFormat::Png, image) if image.color().has_alpha() => DynamicImage::ImageRgba8(image.into_rgba8()),
        (ImageFormat::Png, image) => DynamicImage::ImageRgb8(image.into_rgb8()),
    }
}

/// Encodes `pixels` (from [`encoded_pixels`]) with the implicit label's XMP packet, when
/// there is one, in the file's metadata: pixels are the same with or without it.
fn encode(
    pixels: &DynamicImage,
    format: ImageFormat,
    quality: u8,
    labelling: &Labelling,
) -> Result<Vec<u8>, ProcessError> {
    let failed = |message: String| ProcessError::Encode { format, message };
    let visible = labelling.visible.as_ref();
    // PNG and WebP keep the encoder's pixels exactly: their digest is of the pixels.
    let lossless_xmp =
        || labelling.implicit.as_ref().map(|implicit| implicit.packet(labels::pixel_digest(pixels), visible));
    let (width, height) = (pixels.width(), pixels.height());
    let mut out = Vec::new();
    match format {
        // The digest is of the coded file (a JPEG's pixels are not the encoder's), so the
        // packet goes in after encoding.
        ImageFormat::Jpeg => {
            out = super::jpeg::encode(pixels.as_bytes(), width, height, quality).map_err(|e| failed(e.to_string()))?;
            if let Some(implicit) = &labelling.implicit {
                let digest =
                    labels::jpeg_digest(&out).ok_or_else(|| failed("the encoder's output is no JPEG".into()))?;
                out =
                    super::jpeg::with_xmp(out, &implicit.packet(digest, visible)).map_err(|e| failed(e.to_string()))?;
            }
        }
        ImageFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(if pixels.color().has_alpha() { png::ColorType::Rgba } else { png::ColorType::Rgb });
            encoder.set_depth(png::BitDepth::Eight);
            if let Some(xmp) = lossless_xmp() {
                encoder.add_itxt_chunk(PNG_XMP_KEYWORD.into(), xmp).map_err(|e| failed(e.to_string()))?;
            }
            let mut writer = encoder.write_header().map_err(|e| failed(e.to_string()))?;
            writer.write_image_data(pixels.as_bytes()).map_err(|e| failed(e.to_string()))?;
            writer.finish().map_err(|e| failed(e.to_string()))?;
        }
        // Lossless WebP (image-webp writes no lossy WebP); `quality` does not apply.
        ImageFormat::Webp => {
            let mut encoder = image_webp::WebPEncoder::new(&mut out);
            if let Some(xmp) = lossless_xmp() {
                encoder.set_xmp_metadata(xmp.into_bytes());
            }
            encoder
                .encode(pixels.as_bytes(), width, height, image_webp::ColorType::Rgba8)
                .map_err(|e| failed(e.to_string()))?
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(width, height).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn settings(format: ImageFormat) -> ImageProcessingConfig {
        ImageProcessingConfig { format, ..Default::default() }
    }

    #[test]
    fn a_large_square_picture_is_shrunk_to_fit_both_limits() {
        let processed = process(&png(2048, 2048), &settings(ImageFormat::Jpeg), &Labelling::default()).unwrap();
        assert_eq!((processed.width, processed.height), (1080, 1080));
        let decoded = image::load_from_memory(&processed.bytes).unwrap();
        assert_eq!(image::guess_format(&processed.bytes).unwrap(), image::ImageFormat::Jpeg);
        assert_eq!((decoded.width(), decoded.height()), (1080, 1080));
    }

    #[test]
    fn every_picture_gets_a_small_labelled_jpeg_thumbnail() {
        let labelling = labelling(true, true);
        let processed = process(&png(1600, 900), &settings(ImageFormat::Png), &labelling).unwrap();
        let small = image::load_from_memory(&processed.thumbnail).unwrap();
        assert_eq!(image::guess_format(&processed.thumbnail).unwrap(), image::ImageFormat::Jpeg);
        assert_eq!((small.width(), small.height()), (320, 180), "the longest side is 320, the shape kept");
        assert!(processed.thumbnail.len() < 30_000, "{} bytes", processed.thumbnail.len());
        let report = crate::labels::check::check(&processed.thumbnail).unwrap();
        assert!(report.has_implicit_label(), "the thumbnail says what it is too");
    }

    #[test]
    fn a_small_picture_keeps_its_size_and_gets_the_configured_format() {
        let processed = process(&png(300, 200), &settings(ImageFormat::Webp), &Labelling::default()).unwrap();
        assert_eq!((processed.width, processed.height), (300, 200));
        assert_eq!(image::guess_format(&processed.bytes).unwrap(), image::ImageFormat::WebP);
    }

    fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
        let picture = DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let mut out = Cursor::new(Vec::new());
        match format {
            image::ImageFormat::WebP => picture.to_rgba8().write_to(&mut out, format).unwrap(),
            _ => picture.write_to(&mut out, format).unwrap(),
        }
        out.into_inner()
    }

    #[test]
    fn every_input_format_is_told_by_content_and_becomes_every_output_format() {
        let inputs =
            [image::ImageFormat::Png, image::ImageFormat::Jpeg, image::ImageFormat::WebP, image::ImageFormat::Gif];
        let outputs = [
            (ImageFormat::Jpeg, image::ImageFormat::Jpeg),
            (ImageFormat::Png, image::ImageFormat::Png),
            (ImageFormat::Webp, image::ImageFormat::WebP),
        ];
        for input in inputs {
            // Portrait and larger than the limits: shrinks to fit the height.
            let bytes = encoded(600, 1500, input);
            for (output, expected) in outputs {
                let settings = ImageProcessingConfig { max_width: 800, max_height: 600, ..settings(output) };
                let processed = process(&bytes, &settings, &Labelling::default())
                    .unwrap_or_else(|e| panic!("{input:?} → {output:?}: {e}"));
                assert_eq!(image::guess_format(&processed.bytes).unwrap(), expected, "{input:?} → {output:?}");
                assert_eq!((processed.width, processed.height), (240, 600), "{input:?} → {output:?}");
                let decoded = image::load_from_memory(&processed.bytes).unwrap();
                assert_eq!((decoded.width(), decoded.height()), (240, 600));
            }
        }
    }

    #[test]
    fn near_square_pictures_fit_both_limits() {
        // The original service got this wrong: 1100x1000 into 1920x1080 must be 1100x1000,
        // and 2000x1900 must shrink to fit 1080 in height, not 1920 in width.
        let unchanged = process(&png(1100, 1000), &settings(ImageFormat::Png), &Labelling::default()).unwrap();
        assert_eq!((unchanged.width, unchanged.height), (1100, 1000));
        let shrunk = process(&png(2000, 1900), &settings(ImageFormat::Png), &Labelling::default()).unwrap();
        assert_eq!((shrunk.width, shrunk.height), (1137, 1080));
    }

    #[test]
    fn resizing_can_be_switched_off() {
        let settings = ImageProcessingConfig { enable_resize: false, ..settings(ImageFormat::Png) };
        let processed = process(&png(2500, 1200), &settings, &Labelling::default()).unwrap();
        assert_eq!((processed.width, processed.height), (2500, 1200));
    }

    #[test]
    fn bytes_that_are_no_picture_are_a_decode_error() {
        assert!(matches!(
            process(b"not a picture", &settings(ImageFormat::Png), &Labelling::default()),
            Err(ProcessError::Decode(_))
        ));
    }

    fn labelling(implicit: bool, explicit: bool) -> Labelling {
        Labelling {
            implicit: implicit.then(|| crate::labels::ImplicitLabel {
                producer: "测试运营者".into(),
                job_id: "job-42".into(),
                propagator: "https://pics.example.com".into(),
                file_name: "huiying_image_42.png".into(),
                model: "huiying/placeholder".into(),
            }),
            visible: explicit.then(|| crate::labels::VisibleLabel {
                text: "AI生成".into(),
                corner: crate::labels::Corner::BottomRight,
            }),
        }
    }

    #[test]
    fn the_implicit_label_is_in_every_format_and_leaves_the_pixels_as_they_were() {
        let input = encoded(640, 480, image::ImageFormat::Png);
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
            let bare = process(&input, &settings(format), &labelling(false, false)).unwrap();
            let labelled = process(&input, &settings(format), &labelling(true, false)).unwrap();
            assert_eq!(labelled.labels, Labels { implicit: true, explicit: false });
            assert!(labelled.bytes.len() > bare.bytes.len(), "{format:?}: the packet adds bytes");
            let decoded = |bytes: &[u8]| image::load_from_memory(bytes).unwrap().to_rgba8();
            assert!(decoded(&bare.bytes) == decoded(&labelled.bytes), "{format:?}: pixels changed");

            let report = crate::labels::check::check(&labelled.bytes).unwrap();
            let aigc = report.aigc.as_ref().unwrap_or_else(|| panic!("{format:?}: no AIGC label"));
            assert_eq!((aigc.label.as_str(), aigc.produce_id.as_str()), ("1", "job-42"));
            assert_eq!(aigc.content_producer, "测试运营者");
            assert_eq!(report.ai_system.as_deref(), Some("huiying/placeholder"));
            assert_eq!(report.pixels_match, Some(true), "{format:?}: the digest can be checked from the file");
            assert!(crate::labels::check::check(&bare.bytes).unwrap().aigc.is_none());
        }
    }

    #[test]
    fn a_labelled_jpeg_whose_picture_changed_afterwards_is_told_apart() {
        let input = encoded(320, 240, image::ImageFormat::Png);
        let labelled = process(&input, &settings(ImageFormat::Jpeg), &labelling(true, false)).unwrap();
        for file in [&labelled.bytes, &labelled.thumbnail] {
            let report = crate::labels::check::check(file).unwrap();
            assert!(report.aigc.as_ref().unwrap().reserved_code1.starts_with("sha256-jpeg:"));
            assert_eq!(report.pixels_match, Some(true));
            let mut edited = file.clone();
            let in_the_scan = edited.len() - 100;
            edited[in_the_scan] ^= 0x10;
            let report = crate::labels::check::check(&edited).unwrap();
            assert_eq!(report.pixels_match, Some(false), "one bit of the picture data changed");
            assert!(report.to_string().contains("does NOT match"), "{report}");
        }
    }

    #[test]
    fn the_visible_label_changes_only_its_corner() {
        let input = encoded(1024, 1024, image::ImageFormat::Png);
        let bare = process(&input, &settings(ImageFormat::Png), &labelling(false, false)).unwrap();
        let labelled = process(&input, &settings(ImageFormat::Png), &labelling(false, true)).unwrap();
        assert_eq!(labelled.labels, Labels { implicit: false, explicit: true });
        let (bare, labelled) = (
            image::load_from_memory(&bare.bytes).unwrap().to_rgb8(),
            image::load_from_memory(&labelled.bytes).unwrap().to_rgb8(),
        );
        let changed: Vec<(u32, u32)> = bare
            .enumerate_pixels()
            .filter(|(x, y, p)| labelled.get_pixel(*x, *y) != *p)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(changed.len() > 1000, "the label is visible: {} pixels changed", changed.len());
        assert!(changed.iter().all(|&(x, y)| x >= 512 && y >= 512), "only the bottom-right corner changes");
    }
}
