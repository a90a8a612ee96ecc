//! Turning a provider's picture into the file we keep: decode (format told by content),
//! shrink to fit the limits, encode to the configured format.

use std::io::Cursor;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader};

use crate::config::{ImageFormat, ImageProcessingConfig};

/// A picture ready to be written.
#[derive(Debug)]
pub struct Processed {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
}

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

/// Decodes, resizes and encodes. CPU-bound: call it from a blocking thread.
pub fn process(input: &[u8], settings: &ImageProcessingConfig) -> Result<Processed, ProcessError> {
    let decoded = ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| ProcessError::Decode(e.to_string()))?
        .decode()
        .map_err(|e| ProcessError::Decode(e.to_string()))?;
    let fits = decoded.width() <= settings.max_width && decoded.height() <= settings.max_height;
    let image = if settings.enable_resize && !fits {
        let (width, height) = fit(decoded.width(), decoded.height(), settings.max_width, settings.max_height);
        shrink(decoded, width, height)?
    } else {
        decoded
    };
    let bytes = encode(&image, settings.format, settings.quality)?;
    Ok(Processed { bytes, width: image.width(), height: image.height(), format: settings.format })
}

/// The largest size within both limits that keeps the aspect ratio.
fn fit(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    let scale = (max_width as f64 / width as f64).min(max_height as f64 / height as f64);
    let side = |n: u32| ((n as f64 * scale).round() as u32).max(1);
    (side(width), side(height))
}

/// Lanczos3 with SIMD (fast_image_resize: the `image` crate's own resize is several
/// times slower). Colour alpha is premultiplied while resizing, so edges stay clean.
fn shrink(image: DynamicImage, width: u32, height: u32) -> Result<DynamicImage, ProcessError> {
    let source = match image.color().has_alpha() {
        true => DynamicImage::ImageRgba8(image.into_rgba8()),
        false => DynamicImage::ImageRgb8(image.into_rgb8()),
    };
    let mut target = DynamicImage::new(width, height, source.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| ProcessError::Decode(format!("resizing failed: {e}")))?;
    Ok(target)
}

fn encode(image: &DynamicImage, format: ImageFormat, quality: u8) -> Result<Vec<u8>, ProcessError> {
    let failed = |e: image::ImageError| ProcessError::Encode { format, message: e.to_string() };
    let mut out = Cursor::new(Vec::new());
    match format {
        // JPEG has no alpha channel: flatten to RGB first. jpeg-encoder (SIMD) is about
        // twice as fast as the image crate's own encoder.
        ImageFormat::Jpeg => {
            let rgb = image.to_rgb8();
            let (width, height) = (u16::try_from(rgb.width()), u16::try_from(rgb.height()));
            let (Ok(width), Ok(height)) = (width, height) else {
                return Err(ProcessError::Encode { format, message: "JPEG allows at most 65535 pixels a side".into() });
            };
            jpeg_encoder::Encoder::new(&mut out, quality)
                .encode(rgb.as_raw(), width, height, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| ProcessError::Encode { format, message: e.to_string() })?
        }
        ImageFormat::Png => image.write_to(&mut out, image::ImageFormat::Png).map_err(failed)?,
        // The image crate writes lossless WebP only; `quality` does not apply.
        ImageFormat::Webp => image.to_rgba8().write_to(&mut out, image::ImageFormat::WebP).map_err(failed)?,
    }
    Ok(out.into_inner())
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
        let processed = process(&png(2048, 2048), &settings(ImageFormat::Jpeg)).unwrap();
        assert_eq!((processed.width, processed.height), (1080, 1080));
        let decoded = image::load_from_memory(&processed.bytes).unwrap();
        assert_eq!(image::guess_format(&processed.bytes).unwrap(), image::ImageFormat::Jpeg);
        assert_eq!((decoded.width(), decoded.height()), (1080, 1080));
    }

    #[test]
    fn a_small_picture_keeps_its_size_and_gets_the_configured_format() {
        let processed = process(&png(300, 200), &settings(ImageFormat::Webp)).unwrap();
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
                let processed = process(&bytes, &settings).unwrap_or_else(|e| panic!("{input:?} → {output:?}: {e}"));
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
        let unchanged = process(&png(1100, 1000), &settings(ImageFormat::Png)).unwrap();
        assert_eq!((unchanged.width, unchanged.height), (1100, 1000));
        let shrunk = process(&png(2000, 1900), &settings(ImageFormat::Png)).unwrap();
        assert_eq!((shrunk.width, shrunk.height), (1137, 1080));
    }

    #[test]
    fn resizing_can_be_switched_off() {
        let settings = ImageProcessingConfig { enable_resize: false, ..settings(ImageFormat::Png) };
        let processed = process(&png(2500, 1200), &settings).unwrap();
        assert_eq!((processed.width, processed.height), (2500, 1200));
    }

    #[test]
    fn bytes_that_are_no_picture_are_a_decode_error() {
        assert!(matches!(process(b"not a picture", &settings(ImageFormat::Png)), Err(ProcessError::Decode(_))));
    }
}
