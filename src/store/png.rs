//! PNG decoding through zune-png, for the PNGs nearly every model sends. Decoding was
//! two thirds of the image stage with the `png` crate (docs/performance.md); zune-png
//! inflates and unfilters faster. 8-bit pictures only: a 16-bit one, or one zune-png
//! will not read (it is stricter about damaged files), goes to the `image` crate as
//! before. The tests hold the pixels identical to the `image` crate's.

use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use zune_png::PngDecoder;
use zune_png::zune_core::bit_depth::BitDepth;
use zune_png::zune_core::bytestream::ZCursor;
use zune_png::zune_core::colorspace::ColorSpace;

/// The PNG's signature (PNG specification, 5.2).
const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `input` decoded, when it is an 8-bit PNG zune-png reads; `None` for anything else.
pub(super) fn decode(input: &[u8]) -> Option<DynamicImage> {
    if !input.starts_with(SIGNATURE) {
        return None;
    }
    let mut decoder = PngDecoder::new(ZCursor::new(input));
    decoder.decode_headers().ok()?;
    if decoder.depth()? != BitDepth::Eight {
        return None;
    }
    let (width, height) = decoder.dimensions()?;
    let colorspace = decoder.colorspace()?;
    let pixels = decoder.decode_raw().ok()?;
    let (width, height) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    match colorspace {
        ColorSpace::RGB => RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
        ColorSpace::RGBA => RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8),
        ColorSpace::Luma => GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
        ColorSpace::LumaA => GrayAlphaImage::from_raw(width, height, pixels).map(DynamicImage::ImageLumaA8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{ImageEncoder, codecs::png::PngEncoder};

    use super::*;

    /// A picture with every value of each channel somewhere, as a PNG of `kind`.
    fn png_of(kind: image::ExtendedColorType, channels: usize, width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> =
            (0..width as usize * height as usize * channels).map(|n| (n * 7 + n / 13) as u8).collect();
        let mut png = Vec::new();
        PngEncoder::new(&mut png).write_image(&pixels, width, height, kind).unwrap();
        png
    }

    fn by_the_image_crate(png: &[u8]) -> DynamicImage {
        image::ImageReader::new(Cursor::new(png)).with_guessed_format().unwrap().decode().unwrap()
    }

    #[test]
    fn eight_bit_pictures_decode_to_the_same_pixels_as_the_image_crates() {
        use image::ExtendedColorType::{La8, L8, Rgb8, Rgba8};
        for (kind, channels) in [(Rgb8, 3), (Rgba8, 4), (L8, 1), (La8, 2)] {
            let png = png_of(kind, channels, 301, 157);
            let ours = decode(&png).unwrap_or_else(|| panic!("{kind:?} decodes"));
            assert_eq!(ours, by_the_image_crate(&png), "{kind:?}");
        }
    }

    #[test]
    fn a_palette_picture_with_transparency_decodes_as_the_image_crate_does() {
        // Four colours, one of them half transparent: an indexed PNG with a tRNS chunk.
        let mut png = Vec::new();
        let mut encoder = ::png::Encoder::new(&mut png, 5, 3);
        encoder.set_color(::png::ColorType::Indexed);
        encoder.set_depth(::png::BitDepth::Eight);
        encoder.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]);
        encoder.set_trns(vec![255, 128, 255, 0]);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&(0..15).map(|n| (n % 4) as u8).collect::<Vec<_>>()).unwrap();
        writer.finish().unwrap();
        let ours = decode(&png).expect("an indexed PNG decodes");
        assert_eq!(ours.to_rgba8(), by_the_image_crate(&png).to_rgba8());
    }

    #[test]
    fn sixteen_bit_pictures_and_other_formats_are_left_to_the_image_crate() {
        let pixels: Vec<u8> = (0..4 * 4 * 6).map(|n| n as u8).collect();
        let mut png = Vec::new();
        PngEncoder::new(&mut png).write_image(&pixels, 4, 4, image::ExtendedColorType::Rgb16).unwrap();
        assert!(decode(&png).is_none());
        assert!(decode(b"\xff\xd8\xff\xe0 not a png").is_none());
    }

    #[test]
    fn the_benchs_photo_like_picture_decodes_to_identical_pixels() {
        let picture = RgbImage::from_fn(512, 512, |x, y| {
            let noise = ((x * 31 + y * 17) % 24) as u8;
            image::Rgb([(x / 2) as u8 ^ noise, (y / 2) as u8, ((x + y) / 4) as u8 | noise])
        });
        let mut png = Cursor::new(Vec::new());
        picture.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = png.into_inner();
        assert_eq!(decode(&png).unwrap(), by_the_image_crate(&png));
    }
}
