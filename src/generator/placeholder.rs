//! The offline placeholder: a deterministic picture drawn from the prompt's hash.
//!
//! It is not an image model. It exists so that a new install works end to end with no
//! API key, and so that tests have a picture to store; its model name says so.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

/// The model name requests use to ask for it, and the one records show.
pub const MODEL: &str = "huiying/placeholder";

const SIZE: u32 = 512;

/// Draws the placeholder for `prompt` as PNG bytes.
pub fn draw(prompt: &str) -> Vec<u8> {
    let seed = fnv1a(prompt.as_bytes());
    let color = |shift: u32| -> [f32; 3] {
        let bits = (seed >> shift) as u32;
        [(bits & 0xff) as f32, ((bits >> 8) & 0xff) as f32, ((bits >> 16) & 0xff) as f32]
    };
    let (top, bottom, disc) = (color(0), color(21), color(42));
    let (cx, cy) = ((seed % SIZE as u64) as f32, ((seed >> 16) % SIZE as u64) as f32);
    let radius = (SIZE / 6 + (seed >> 32) as u32 % (SIZE / 4)) as f32;

    let image = RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let t = y as f32 / (SIZE - 1) as f32;
        let mut pixel = [0u8; 3];
        let inside = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() < radius;
        for c in 0..3 {
            let background = top[c] * (1.0 - t) + bottom[c] * t;
            pixel[c] = if inside { (background + disc[c]) as u8 / 2 + 64 } else { background as u8 };
        }
        Rgb(pixel)
    });
    let mut png = Cursor::new(Vec::new());
    image.write_to(&mut png, ImageFormat::Png).expect("encoding a PNG in memory cannot fail");
    png.into_inner()
}

/// FNV-1a: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_draws_the_same_picture_and_another_prompt_another() {
        assert_eq!(draw("a red fox"), draw("a red fox"));
        assert_ne!(draw("a red fox"), draw("a blue whale"));
        let decoded = image::load_from_memory(&draw("一只猫")).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (SIZE, SIZE));
    }
}
