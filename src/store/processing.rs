//! Turning a provider's picture into the file we keep: decode (format told by content),
//! shrink to fit the limits, encode to the configured format.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
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
        // `resize` keeps the aspect ratio and fits both limits.
        decoded.resize(settings.max_width, settings.max_height, FilterType::Lanczos3)
    } else {
        decoded
    };
    let bytes = encode(&image, settings.format, settings.quality)?;
    Ok(Processed { bytes, width: image.width(), height: image.height(), format: settings.format })
}

fn encode(image: &DynamicImage, format: ImageFormat, quality: u8) -> Result<Vec<u8>, ProcessError> {
    let failed = |e: image::ImageError| ProcessError::Encode { format, message: e.to_string() };
    let mut out = Cursor::new(Vec::new());
    match format {
        // JPEG has no alpha channel: flatten to RGB first.
        ImageFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, quality).encode_image(&image.to_rgb8()).map_err(failed)?
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

    #[test]
    fn bytes_that_are_no_picture_are_a_decode_error() {
        assert!(matches!(process(b"not a picture", &settings(ImageFormat::Png)), Err(ProcessError::Decode(_))));
    }
}
