//! Store benchmark: decode → resize → encode, the CPU-heavy stage, on one thread.
//!
//!     cargo bench --bench processing
//!
//! Inputs are a 2048×2048 and a 1024×1024 PNG with photo-like content (smooth gradients
//! plus noise), written to `target/bench-images/` so that `benches/vips_compare.py` can run
//! libvips (pyvips) on the very same files. Settings are the defaults: fit 1920×1080,
//! Lanczos3, JPEG quality 85; each picture without labels (as libvips is measured) and
//! with both AI-content labels (the default: visible text drawn, XMP with pixel digest).

use std::io::Cursor;
use std::time::{Duration, Instant};

use huiying::config::ImageProcessingConfig;
use huiying::labels::{Corner, ImplicitLabel, Labelling, VisibleLabel};
use huiying::store::processing::process;

fn photo_like(size: u32) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let picture = image::RgbImage::from_fn(size, size, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise = (seed % 24) as i32 - 12;
        let channel = |base: u32| (base as i32 + noise).clamp(0, 255) as u8;
        image::Rgb([channel(x * 255 / size), channel(y * 255 / size), channel((x + y) * 127 / size)])
    });
    let mut png = Cursor::new(Vec::new());
    picture.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// Mean time of `work` over at least 5 s and 5 runs.
fn time(mut work: impl FnMut()) -> (Duration, u32) {
    work(); // warm-up
    let (mut runs, start) = (0u32, Instant::now());
    while start.elapsed() < Duration::from_secs(5) || runs < 5 {
        work();
        runs += 1;
    }
    (start.elapsed() / runs, runs)
}

fn main() {
    let settings = ImageProcessingConfig::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-images");
    std::fs::create_dir_all(&dir).unwrap();
    for size in [2048u32, 1024] {
        let png = photo_like(size);
        std::fs::write(dir.join(format!("photo_{size}.png")), &png).unwrap();
        let labelled = Labelling {
            implicit: Some(ImplicitLabel {
                producer: "bench".into(),
                job_id: "job".into(),
                propagator: "https://example.com".into(),
                file_name: "bench.jpg".into(),
                model: "bench".into(),
            }),
            visible: Some(VisibleLabel { text: "AI生成".into(), corner: Corner::BottomRight }),
        };
        for (labels, labelling) in [("no labels", Labelling::default()), ("both labels", labelled)] {
            let out = process(&png, &settings, &labelling).unwrap();
            let (per_image, runs) = time(|| {
                std::hint::black_box(process(&png, &settings, &labelling).unwrap());
            });
            println!(
                "{size}x{size} PNG ({} KB) → {}x{} JPEG q85, {labels}: {:.1} ms per image, {:.2} images/s ({runs} runs, 1 thread)",
                png.len() / 1024,
                out.width,
                out.height,
                per_image.as_secs_f64() * 1e3,
                1.0 / per_image.as_secs_f64()
            );
        }
        // Where the time goes: the two steps every picture takes, alone.
        let (decode, _) = time(|| {
            std::hint::black_box(huiying::store::processing::decode(&png).unwrap());
        });
        // The output's pixels (decoded back from the JPEG written), encoded again.
        let output = process(&png, &settings, &Labelling::default()).unwrap();
        let pixels = image::load_from_memory(&output.bytes).unwrap().into_rgb8();
        let (width, height) = (pixels.width(), pixels.height());
        let turbo = || {
            let image = turbojpeg::Image {
                pixels: pixels.as_raw().as_slice(),
                width: width as usize,
                pitch: width as usize * 3,
                height: height as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            turbojpeg::compress(image, settings.quality.into(), turbojpeg::Subsamp::Sub2x2).unwrap().to_vec()
        };
        let before = || {
            let mut out = Vec::new();
            let encoder = jpeg_encoder::Encoder::new(&mut out, settings.quality);
            encoder.encode(pixels.as_raw(), width as u16, height as u16, jpeg_encoder::ColorType::Rgb).unwrap();
            out
        };
        let (turbo_time, _) = time(|| {
            std::hint::black_box(turbo());
        });
        let (before_time, _) = time(|| {
            std::hint::black_box(before());
        });
        println!(
            "  of which: PNG decode {:.1} ms; JPEG encode of the {width}x{height} output {:.1} ms \
             ({} bytes; jpeg-encoder, used before: {:.1} ms, {} bytes)",
            decode.as_secs_f64() * 1e3,
            turbo_time.as_secs_f64() * 1e3,
            turbo().len(),
            before_time.as_secs_f64() * 1e3,
            before().len(),
        );
        // The same picture as zlib (level 6) writes it, as most encoders but the image
        // crate's do (Pillow, libpng), when such a copy is there (see docs/performance.md).
        if let Ok(zlib) = std::fs::read(dir.join(format!("photo_{size}_zlib.png"))) {
            let (decode, _) = time(|| {
                std::hint::black_box(huiying::store::processing::decode(&zlib).unwrap());
            });
            let (kb, ms) = (zlib.len() / 1024, decode.as_secs_f64() * 1e3);
            println!("  the zlib-compressed copy ({kb} KB): PNG decode {ms:.1} ms");
        }
    }
}
