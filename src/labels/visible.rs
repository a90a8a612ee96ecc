//! The explicit label: a text a person can see ("AI生成"), drawn in a corner of the
//! picture. GB 45438-2025 asks for text at least 5% of the picture's shorter side high;
//! we draw the letters' ink 6% high, on a dark translucent plate so that it reads on any
//! background.

use ab_glyph::{Font, FontRef, Glyph, PxScale, ScaleFont, point};
use image::{DynamicImage, Pixel};
use serde::{Deserialize, Serialize};

/// A 12 KB subset of Noto Sans CJK SC Bold (SIL OFL 1.1): printable ASCII and the
/// characters of common Chinese label texts. See `assets/fonts/README.md`.
const FONT: &[u8] = include_bytes!("../../assets/fonts/label-font.otf");

/// The letters' height against the picture's shorter side (the standard's floor is 5%).
const INK_HEIGHT: f32 = 0.06;
/// Space around the letters and from the picture's edge, against the letters' height.
const PADDING: f32 = 0.35;
/// How dark the plate under the letters is (0 clear, 1 black).
const PLATE_OPACITY: f32 = 0.5;

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT).expect("the built-in label font is a valid font")
}

/// The first character of `text` the built-in font cannot draw, if any.
pub fn missing_glyph(text: &str) -> Option<char> {
    let font = font();
    text.chars().find(|&c| !c.is_whitespace() && font.glyph_id(c).0 == 0)
}

/// Which corner the label goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corner {
    TopLeft,
    TopRight,
    BottomLeft,
    #[default]
    BottomRight,
}

impl Corner {
    pub fn name(self) -> &'static str {
        match self {
            Corner::TopLeft => "top-left",
            Corner::TopRight => "top-right",
            Corner::BottomLeft => "bottom-left",
            Corner::BottomRight => "bottom-right",
        }
    }
}

/// What to draw and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleLabel {
    pub text: String,
    pub corner: Corner,
}

/// The rectangle the label covers, in pixels (for tests and the record of what was drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Height of the letters' ink.
    pub ink_height: u32,
}

impl VisibleLabel {
    /// Draws the label onto `image` (made 8-bit RGB or RGBA first) and tells where.
    pub fn draw(&self, image: &mut DynamicImage) -> Drawn {
        if !matches!(image, DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_)) {
            *image = match image.color().has_alpha() {
                true => DynamicImage::ImageRgba8(image.to_rgba8()),
                false => DynamicImage::ImageRgb8(image.to_rgb8()),
            };
        }
        let (width, height) = (image.width(), image.height());
        let glyphs = self.layout(width, height);
        let drawn = self.place(&glyphs, width, height);
        match image {
            DynamicImage::ImageRgb8(picture) => paint(picture, &glyphs, drawn),
            DynamicImage::ImageRgba8(picture) => paint(picture, &glyphs, drawn),
            _ => unreachable!("converted above"),
        }
        drawn
    }

    /// The glyphs at the size that makes the ink `INK_HEIGHT` of the shorter side (or
    /// narrower, should the text not fit the width), positioned from (0, 0) at the top
    /// left of their ink.
    fn layout(&self, width: u32, height: u32) -> Vec<ab_glyph::OutlinedGlyph> {
        let font = font();
        let target = (width.min(height) as f32 * INK_HEIGHT).max(1.0);
        let probe = laid_out(&font, &self.text, 100.0);
        let (probe_width, probe_height) = extent(&probe);
        let mut px = 100.0 * target / probe_height.max(1.0);
        let room = width as f32 * 0.9 - 2.0 * PADDING * target;
        if probe_width * px / 100.0 > room {
            tracing::warn!(text = %self.text, width, "the label text is too wide for the picture: drawn smaller");
            px = 100.0 * room.max(1.0) / probe_width.max(1.0);
        }
        laid_out(&font, &self.text, px)
    }

    fn place(&self, glyphs: &[ab_glyph::OutlinedGlyph], width: u32, height: u32) -> Drawn {
        let (ink_width, ink_height) = extent(glyphs);
        let pad = (ink_height * PADDING).ceil();
        let plate_width = (ink_width + 2.0 * pad).ceil().min(width as f32) as u32;
        let plate_height = (ink_height + 2.0 * pad).ceil().min(height as f32) as u32;
        let margin = pad as u32;
        let left = margin.min(width - plate_width);
        let top = margin.min(height - plate_height);
        let right = width.saturating_sub(plate_width + margin);
        let bottom = height.saturating_sub(plate_height + margin);
        let (x, y) = match self.corner {
            Corner::TopLeft => (left, top),
            Corner::TopRight => (right, top),
            Corner::BottomLeft => (left, bottom),
            Corner::BottomRight => (right, bottom),
        };
        Drawn { x, y, width: plate_width, height: plate_height, ink_height: ink_height.round() as u32 }
    }
}

/// Glyphs of `text` at `px` pixels per em, moved so that their ink starts at (0, 0).
fn laid_out(font: &FontRef<'static>, text: &str, px: f32) -> Vec<ab_glyph::OutlinedGlyph> {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut caret = 0.0;
    let mut previous = None;
    let mut placed: Vec<Glyph> = Vec::new();
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(before) = previous {
            caret += scaled.kern(before, id);
        }
        placed.push(id.with_scale_and_position(px, point(caret, scaled.ascent())));
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
    let outlined: Vec<_> = placed.into_iter().filter_map(|g| font.outline_glyph(g)).collect();
    let Some((min_x, min_y)) = outlined
        .iter()
        .map(|g| (g.px_bounds().min.x, g.px_bounds().min.y))
        .reduce(|(ax, ay), (bx, by)| (ax.min(bx), ay.min(by)))
    else {
        return Vec::new();
    };
    outlined
        .into_iter()
        .filter_map(|g| {
            let mut glyph = g.glyph().clone();
            glyph.position = point(glyph.position.x - min_x, glyph.position.y - min_y);
            font.outline_glyph(glyph)
        })
        .collect()
}

/// Width and height of the glyphs' ink.
fn extent(glyphs: &[ab_glyph::OutlinedGlyph]) -> (f32, f32) {
    glyphs.iter().fold((0.0_f32, 0.0_f32), |(w, h), g| (w.max(g.px_bounds().max.x), h.max(g.px_bounds().max.y)))
}

/// The plate, then white letters on it, blended by each pixel's coverage.
fn paint<P: Pixel<Subpixel = u8>>(
    picture: &mut image::ImageBuffer<P, Vec<u8>>,
    glyphs: &[ab_glyph::OutlinedGlyph],
    at: Drawn,
) {
    for y in at.y..at.y + at.height {
        for x in at.x..at.x + at.width {
            blend(picture.get_pixel_mut(x, y), 0, PLATE_OPACITY);
        }
    }
    let pad = ((at.height as f32 - extent(glyphs).1) / 2.0).floor();
    let (origin_x, origin_y) = (at.x as f32 + pad, at.y as f32 + pad);
    for glyph in glyphs {
        let bounds = glyph.px_bounds();
        glyph.draw(|dx, dy, coverage| {
            let x = (origin_x + bounds.min.x) as i64 + i64::from(dx);
            let y = (origin_y + bounds.min.y) as i64 + i64::from(dy);
            if x >= 0 && y >= 0 && (x as u32) < picture.width() && (y as u32) < picture.height() {
                blend(picture.get_pixel_mut(x as u32, y as u32), 255, coverage.min(1.0));
            }
        });
    }
}

/// Mixes a grey level into the colour channels; alpha, where there is one, is kept.
fn blend<P: Pixel<Subpixel = u8>>(pixel: &mut P, grey: u8, amount: f32) {
    for channel in pixel.channels_mut().iter_mut().take(3) {
        *channel = (f32::from(*channel) * (1.0 - amount) + f32::from(grey) * amount).round() as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128])))
    }

    /// Rows holding a pixel the label made near white: the letters, as a reader sees them.
    fn letter_rows(image: &DynamicImage) -> u32 {
        let rgb = image.to_rgb8();
        let rows: Vec<u32> =
            rgb.enumerate_rows().filter(|(_, row)| row.clone().any(|(_, _, p)| p.0[0] > 200)).map(|(y, _)| y).collect();
        rows.last().map_or(0, |last| last - rows[0] + 1)
    }

    #[test]
    fn the_letters_are_at_least_five_percent_of_the_shorter_side() {
        for (width, height) in [(1024, 1024), (1920, 1080), (1080, 1920), (300, 200)] {
            let mut image = grey(width, height);
            let label = VisibleLabel { text: "AI生成".into(), corner: Corner::BottomRight };
            let drawn = label.draw(&mut image);
            let needed = (width.min(height) as f32 * 0.05).ceil() as u32;
            assert!(letter_rows(&image) >= needed, "{width}x{height}: {} rows < {needed}", letter_rows(&image));
            assert!(drawn.ink_height >= needed);
        }
    }

    #[test]
    fn only_the_chosen_corner_changes() {
        for corner in [Corner::TopLeft, Corner::TopRight, Corner::BottomLeft, Corner::BottomRight] {
            let mut image = grey(1920, 1080);
            let label = VisibleLabel { text: "AI-generated".into(), corner };
            let drawn = label.draw(&mut image);
            let changed: Vec<(u32, u32)> = image
                .to_rgb8()
                .enumerate_pixels()
                .filter(|(_, _, p)| p.0 != [128, 128, 128])
                .map(|(x, y, _)| (x, y))
                .collect();
            assert!(!changed.is_empty());
            for (x, y) in changed {
                assert!(
                    (drawn.x..drawn.x + drawn.width).contains(&x) && (drawn.y..drawn.y + drawn.height).contains(&y)
                );
                let (left, top) = (x < 960, y < 540);
                let expected = match corner {
                    Corner::TopLeft => (true, true),
                    Corner::TopRight => (false, true),
                    Corner::BottomLeft => (true, false),
                    Corner::BottomRight => (false, false),
                };
                assert_eq!((left, top), expected, "{corner:?}: pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn a_transparent_picture_keeps_its_alpha() {
        let mut image = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(400, 400, image::Rgba([10, 20, 30, 77])));
        VisibleLabel { text: "AI生成".into(), corner: Corner::TopLeft }.draw(&mut image);
        assert!(image.to_rgba8().pixels().all(|p| p.0[3] == 77));
    }

    #[test]
    fn characters_outside_the_font_are_named() {
        assert_eq!(missing_glyph("AI生成"), None);
        assert_eq!(missing_glyph("人工智能生成合成内容 AI-generated"), None);
        assert_eq!(missing_glyph("AI绘制"), Some('绘'));
    }
}
