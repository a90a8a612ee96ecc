"""libvips (pyvips) on the same files and settings as `cargo bench --bench processing`.

    pip install "pyvips[binary]"
    cargo bench --bench processing && python3 benches/vips_compare.py

Two libvips ways: `resize` with Lanczos3 (the same work as huiying: full decode, then
resize), and `thumbnail` (libvips' fastest path). Set VIPS_CONCURRENCY=1 for one thread.
"""
import os
import time

import pyvips

folder = os.path.join(os.path.dirname(__file__), "..", "target", "bench-images")


def bench(label, work):
    work()  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5 or runs < 5:
        work()
        runs += 1
    per = (time.perf_counter() - start) / runs
    print(f"{label}: {per * 1e3:.1f} ms per image, {1 / per:.2f} images/s ({runs} runs)")


for size in (2048, 1024):
    data = open(os.path.join(folder, f"photo_{size}.png"), "rb").read()

    def resize():
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
        scale = min(1920 / image.width, 1080 / image.height, 1.0)
        if scale < 1.0:
            image = image.resize(scale, kernel="lanczos3")
        return image.write_to_buffer(".jpg[Q=85]")

    def thumbnail():
        return pyvips.Image.thumbnail_buffer(data, 1920, height=1080, size="down").write_to_buffer(".jpg[Q=85]")

    threads = os.environ.get("VIPS_CONCURRENCY", "default")
    bench(f"libvips {pyvips.version(0)}.{pyvips.version(1)} resize lanczos3 {size}x{size} (threads {threads})", resize)
    bench(f"libvips thumbnail {size}x{size} (threads {threads})", thumbnail)
