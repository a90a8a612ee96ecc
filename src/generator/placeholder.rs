//! The offline placeholder: a deterministic picture drawn from the prompt's hash.
//!
//! It is not an image model. It exists so that a new install works end to end with no
//! API key, and so that tests have a picture to store; its model name says so.

use image::{Rgb, RgbImage};

use super::EditInput;
use super::model::{ImageAnswer, ImageModel, Picture};
use crate::config::Provider;
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;

const SIZE: u32 = 512;

/// The placeholder as an image model: drawn on a blocking thread, offline.
pub(super) struct Placeholder;

#[async_trait::async_trait]
impl ImageModel for Placeholder {
    fn provider(&self) -> Provider {
        Provider::Placeholder
    }

    async fn generate(&self, prompt: &str, _model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        let (prompt, options) = (prompt.to_string(), options.clone());
        let png = tokio::task::spawn_blocking(move || draw(&prompt, &options)).await.map_err(crashed)?;
        Ok(ImageAnswer { picture: Picture::Bytes(png), usage: None })
    }

    async fn edit(
        &self,
        prompt: &str,
        _model: &str,
        inputs: &[EditInput],
        _options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        let (prompt, bytes) = (prompt.to_string(), inputs.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>());
        let png = tokio::task::spawn_blocking(move || edit(&prompt, &bytes))
            .await
            .map_err(crashed)?
            .map_err(|e| Failure::permanent(e.to_string()).caused_by(e))?;
        Ok(ImageAnswer { picture: Picture::Bytes(png), usage: None })
    }
}

fn crashed(error: tokio::task::JoinError) -> Failure {
    Failure::permanent(format!("the placeholder crashed: {error}"))
}

/// An input picture the placeholder cannot decode.
#[derive(Debug, thiserror::Error)]
#[error("an input picture cannot be decoded: {0}")]
pub(super) struct UnreadableInput(#[from] image::ImageError);

/// Draws the placeholder for `prompt` as PNG bytes: 512×512 unless `options.size` says
/// otherwise, and another picture for another `options.seed`.
pub(super) fn draw(prompt: &str, options: &GenerationOptions) -> Vec<u8> {
    let (width, height) = options
        .size
        .as_deref()
        .and_then(|s| s.split_once('x'))
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .unwrap_or((SIZE, SIZE));
    let seed = fnv1a(prompt.as_bytes()) ^ options.seed.unwrap_or(0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let color = |shift: u32| -> [f32; 3] {
        let bits = (seed >> shift) as u32;
        [(bits & 0xff) as f32, ((bits >> 8) & 0xff) as f32, ((bits >> 16) & 0xff) as f32]
    };
    let (top, bottom, disc) = (color(0), color(21), color(42));
    let (cx, cy) = ((seed % width as u64) as f32, ((seed >> 16) % height as u64) as f32);
    let short_side = width.min(height);
    let radius = (short_side / 6 + (seed >> 32) as u32 % (short_side / 4).max(1)) as f32;

    // Row by row: the background is one colour per row, and the disc is a distance test
    // without a square root. Drawing per pixel with both cost the generator about 2 ms of
    // its 4 ms per job.
    let mut image = RgbImage::new(width, height);
    let radius_squared = radius * radius;
    for (y, row) in image.rows_mut().enumerate() {
        let t = y as f32 / (height - 1).max(1) as f32;
        let background: [u8; 3] = std::array::from_fn(|c| (top[c] * (1.0 - t) + bottom[c] * t) as u8);
        let inside: [u8; 3] = std::array::from_fn(|c| {
            let background = top[c] * (1.0 - t) + bottom[c] * t;
            (background + disc[c]) as u8 / 2 + 64
        });
        let dy_squared = (y as f32 - cy).powi(2);
        for (x, pixel) in row.enumerate() {
            let in_disc = (x as f32 - cx).powi(2) + dy_squared < radius_squared;
            pixel.0 = if in_disc { inside } else { background };
        }
    }
    png(&image)
}

/// A PNG that is quick to write and to read: the placeholder's rows are smooth, so the
/// `Sub` filter with fast deflate keeps it small, and the store decodes it in a fraction
/// of the time the default (adaptive, mostly Paeth) filtering takes.
fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, image.width(), image.height());
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Fast);
    encoder.set_filter(::png::Filter::Sub);
    let mut writer = encoder.write_header().expect("a PNG header in memory cannot fail");
    writer.write_image_data(image.as_raw()).expect("encoding a PNG in memory cannot fail");
    writer.finish().expect("encoding a PNG in memory cannot fail");
    out
}

/// The placeholder's "edit": every input side by side at one height (at most 512), tinted
/// by the prompt's colour. Offline and deterministic, so edits work end to end with no
/// key; like `draw`, it is not AI and its model name says so.
pub(super) fn edit(prompt: &str, inputs: &[Vec<u8>]) -> Result<Vec<u8>, UnreadableInput> {
    let decoded = inputs
        .iter()
        .map(|bytes| image::load_from_memory(bytes).map(|i| i.to_rgb8()))
        .collect::<Result<Vec<_>, _>>()?;
    let height = decoded.iter().map(|i| i.height()).min().unwrap_or(SIZE).clamp(16, SIZE);
    let scaled: Vec<RgbImage> = decoded
        .iter()
        .map(|i| {
            let width = (i.width() as u64 * height as u64 / i.height().max(1) as u64).max(1) as u32;
            image::imageops::resize(i, width, height, image::imageops::FilterType::Triangle)
        })
        .collect();
    let width: u32 = scaled.iter().map(|i| i.width()).sum::<u32>().max(1);
    let seed = fnv1a(prompt.as_bytes());
    let tint = [(seed & 0xff) as f32, ((seed >> 8) & 0xff) as f32, ((seed >> 16) & 0xff) as f32];
    let mut out = RgbImage::new(width, height);
    let mut left = 0;
    for picture in &scaled {
        for (x, y, pixel) in picture.enumerate_pixels() {
            let mixed = std::array::from_fn(|c| (pixel.0[c] as f32 * 0.7 + tint[c] * 0.3) as u8);
            out.put_pixel(left + x, y, Rgb(mixed));
        }
        left += picture.width();
    }
    Ok(png(&out))
}

/// FNV-1a: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_draws_the_same_picture_and_another_prompt_or_seed_another() {
        let plain = GenerationOptions::default();
        assert_eq!(draw("a red fox", &plain), draw("a red fox", &plain));
        assert_ne!(draw("a red fox", &plain), draw("a blue whale", &plain));
        let seeded = GenerationOptions { seed: Some(7), ..Default::default() };
        assert_ne!(draw("a red fox", &plain), draw("a red fox", &seeded));
        let decoded = image::load_from_memory(&draw("一只猫", &plain)).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (SIZE, SIZE));
        let wide = GenerationOptions { size: Some("640x360".into()), ..Default::default() };
        let decoded = image::load_from_memory(&draw("一只猫", &wide)).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 360));
    }

    #[test]
    fn an_edit_puts_every_input_side_by_side() {
        let wide = GenerationOptions { size: Some("200x100".into()), ..Default::default() };
        let square = GenerationOptions { size: Some("100x100".into()), ..Default::default() };
        let inputs = [draw("one", &wide), draw("two", &square), draw("three", &square)];
        let edited = image::load_from_memory(&edit("compose them", &inputs).unwrap()).unwrap();
        assert_eq!((edited.width(), edited.height()), (400, 100));
        assert!(edit("x", &[b"not a picture".to_vec()]).is_err());
    }
}
