"""libvips and Pillow doing the image stage's work on the files `cargo bench --bench
processing` writes, one thread each:

    pip install "pyvips[binary]" pillow
    cargo bench --bench processing && python3 benches/image_anchors.py

The same work as huiying's store: decode the PNG, shrink with Lanczos3 to fit 1920x1080
(never enlarge), JPEG quality 85, then a 320-pixel thumbnail of the result (bilinear)
at JPEG quality 80. Prints one line per tool and size: `<tool> <size>: <ms> ms`.
"""
import io
import os
import time

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # before pyvips starts libvips
import pyvips  # noqa: E402
from PIL import Image  # noqa: E402

folder = os.path.join(os.path.dirname(__file__), "..", "target", "bench-images")


def mean_ms(work):
    work()  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5 or runs < 5:
        work()
        runs += 1
    return (time.perf_counter() - start) / runs * 1e3


def fit(width, height, max_width, max_height):
    scale = min(max_width / width, max_height / height, 1.0)
    return scale, max(1, round(width * scale)), max(1, round(height * scale))


def with_vips(data):
    image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    scale, _, _ = fit(image.width, image.height, 1920, 1080)
    if scale < 1.0:
        image = image.resize(scale, kernel="lanczos3")
    image = image.copy_memory()  # decoded and shrunk once, used twice
    picture = image.jpegsave_buffer(Q=85)
    thumb_scale, _, _ = fit(image.width, image.height, 320, 320)
    thumbnail = image.resize(thumb_scale, kernel="linear").jpegsave_buffer(Q=80)
    return picture, thumbnail


def with_pillow(data):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale, width, height = fit(image.width, image.height, 1920, 1080)
    if scale < 1.0:
        image = image.resize((width, height), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    _, width, height = fit(image.width, image.height, 320, 320)
    small = io.BytesIO()
    image.resize((width, height), Image.BILINEAR).save(small, "JPEG", quality=80)
    return out.getvalue(), small.getvalue()


version = f"{pyvips.version(0)}.{pyvips.version(1)}"
for size in (2048, 1024):
    data = open(os.path.join(folder, f"photo_{size}.png"), "rb").read()
    print(f"libvips {version} {size}: {mean_ms(lambda: with_vips(data)):.1f} ms")
    print(f"Pillow {Image.__version__} {size}: {mean_ms(lambda: with_pillow(data)):.1f} ms")
