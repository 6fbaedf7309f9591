"""Reduced decoding (issue 10): every format reaches detection small, with the right colours.

A large upload is decoded at a whole fraction of its size (JPEG in the DCT domain, WebP in
libwebp, the rest reduced in C after a decode in their own compact mode). These tests check that
the reduced picture is the full one made smaller: right size, right colours (transparency on
white, 16-bit scaled, palettes), EXIF orientation, the limits, and that the aligned crops, and so
the embeddings, of real portraits do not change.
"""

import copy
import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import benchmarks.decode as decode_benchmark
from face_alignment import (
    DETECT_MAX_SIDE,
    HUGE_PAGES_TUNABLE,
    ImageTooLargeError,
    InvalidImageError,
    load_image,
    load_image_reduced,
    warp_face,
    with_huge_pages,
)
from face_alignment import png as png_module
from face_alignment import webp as webp_module

REPO = Path(__file__).resolve().parents[1]
SIZE = (1500, 700)  # with min_side 320: 750x350 (by boxes), 375x175 (JPEG)
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def halves(mode: str, left, right, size=SIZE) -> Image.Image:
    """Left half one value, right half another, in `mode`."""
    img = Image.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def palette_halves(transparent_right: bool) -> Image.Image:
    img = Image.new("P", SIZE, 0)
    img.putpalette([*RED, *BLUE] + [0] * 762)
    img.paste(1, (SIZE[0] // 2, 0, *SIZE))
    if transparent_right:
        img.info["transparency"] = 1
    return img


def colour_at(pixels: np.ndarray, x: float, y: float = 0.5) -> tuple[int, ...]:
    """The pixel at fractions (x, y) of the width and height."""
    h, w = pixels.shape[:2]
    return tuple(int(v) for v in pixels[int(y * (h - 1)), int(x * (w - 1))])


HALF_BLUE_ON_WHITE = (127, 127, 255)  # 50% blue over white
# (name, encoded file, expected left colour, expected right colour, tolerance)
CASES = [
    ("png-rgb", lambda: encode(halves("RGB", RED, BLUE), "PNG"), RED, BLUE, 0),
    (
        "png-rgba",
        lambda: encode(halves("RGBA", (*RED, 255), (0, 0, 255, 128)), "PNG"),
        RED,
        HALF_BLUE_ON_WHITE,
        1,
    ),
    (
        "png-rgba-clear",
        lambda: encode(halves("RGBA", (*RED, 255), (0, 0, 255, 0)), "PNG"),
        RED,
        WHITE,
        0,
    ),
    ("png-la", lambda: encode(halves("LA", (0, 255), (0, 0)), "PNG"), (0, 0, 0), WHITE, 0),
    ("png-l", lambda: encode(halves("L", 30, 200), "PNG"), (30,) * 3, (200,) * 3, 0),
    ("png-p", lambda: encode(palette_halves(False), "PNG"), RED, BLUE, 0),
    ("png-p-trns", lambda: encode(palette_halves(True), "PNG", transparency=1), RED, WHITE, 0),
    # 16-bit gray: 16384 / 65535 of full scale is 64 of 255; 65535 is 255.
    ("png-16", lambda: encode(halves("I;16", 16384, 65535), "PNG"), (64,) * 3, (255,) * 3, 0),
    ("gif-trns", lambda: encode(palette_halves(True), "GIF", transparency=1), RED, WHITE, 0),
    ("bmp-1bit", lambda: encode(halves("1", 0, 1), "BMP"), (0, 0, 0), WHITE, 0),
    (
        "tiff-lzw",
        lambda: encode(halves("RGB", RED, BLUE), "TIFF", compression="tiff_lzw"),
        RED,
        BLUE,
        0,
    ),
    (
        "tiff-rgba",
        lambda: encode(halves("RGBA", (*RED, 255), (0, 0, 255, 0)), "TIFF"),
        RED,
        WHITE,
        0,
    ),
    ("tiff-cmyk", lambda: encode(halves("RGB", RED, BLUE).convert("CMYK"), "TIFF"), RED, BLUE, 0),
    (
        "webp-lossless-rgba",
        lambda: encode(halves("RGBA", (*RED, 255), (0, 0, 255, 128)), "WEBP", lossless=True),
        RED,
        HALF_BLUE_ON_WHITE,
        2,
    ),
    ("webp-lossy", lambda: encode(halves("RGB", RED, BLUE), "WEBP", quality=90), RED, BLUE, 12),
    ("jpeg-baseline", lambda: encode(halves("RGB", RED, BLUE), "JPEG", quality=95), RED, BLUE, 12),
    (
        "jpeg-progressive",
        lambda: encode(halves("RGB", RED, BLUE), "JPEG", quality=95, progressive=True),
        RED,
        BLUE,
        12,
    ),
    (
        "jpeg-cmyk",
        lambda: encode(halves("RGB", RED, BLUE).convert("CMYK"), "JPEG", quality=95),
        RED,
        BLUE,
        12,
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "left", "right", "tolerance"), CASES, ids=[case[0] for case in CASES]
)
def test_every_format_decodes_reduced_to_the_right_size_and_colours(
    name, make, left, right, tolerance
):
    data = make()
    # JPEG scales in the DCT to [1, 2) x min_side, the rest by boxes to [2, 4) x min_side.
    pixels, scale = load_image_reduced(data, min_side=320)
    assert pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    factor = 4 if name.startswith("jpeg") else 2
    assert pixels.shape == (700 // factor, 1500 // factor, 3), name
    assert scale == pytest.approx(factor)
    for x, expected in ((0.25, left), (0.75, right)):
        got = colour_at(pixels, x)
        assert np.abs(np.subtract(got, expected)).max() <= tolerance, (name, x, got, expected)
    # The same picture as the full-resolution decode, made smaller.
    full = load_image(data)
    assert full.shape == (700, 1500, 3)
    reference = np.asarray(Image.fromarray(full).reduce(factor)).astype(int)
    assert np.abs(reference - pixels.astype(int)).mean() < 1.0 + tolerance / 4, name


def test_box_reduction_keeps_the_long_side_between_twice_and_four_times_min_side():
    for size, expected in (
        ((6000, 400), (1500, 100)),
        ((639, 3000), (320, 1500)),
        ((2559, 2559), (2559, 2559)),
        ((2560, 10), (1280, 5)),
    ):
        data = encode(Image.new("RGB", size, (10, 20, 30)), "PNG")
        pixels, scale = load_image_reduced(data, min_side=640)
        assert pixels.shape[1::-1] == expected, size
        assert scale == pytest.approx(max(size) / max(expected))
        assert colour_at(pixels, 0.5) == (10, 20, 30)
        assert load_image_reduced(data)[0].shape[1::-1] == size  # min_side None: full size


def test_transparent_palette_and_alpha_edges_are_averaged_after_compositing():
    # A fine checkerboard of opaque black and fully transparent pixels is, seen on white and
    # made smaller, mid grey. The transparent pixels store red: averaging the stored colours
    # and alphas first, then compositing, would give pink.
    board = np.zeros((1400, 1400, 4), np.uint8)
    board[:, :, 0] = 255
    board[::2, ::2] = board[1::2, 1::2] = (0, 0, 0, 255)
    for data in (
        encode(Image.fromarray(board), "PNG"),
        encode(Image.fromarray(board), "WEBP", lossless=True),
    ):
        pixels, _ = load_image_reduced(data, min_side=320)
        assert pixels.shape == (700, 700, 3)
        assert np.abs(pixels.reshape(-1, 3).mean(axis=0) - 127.5).max() < 2


def test_sixteen_bit_ramp_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 2000).round().astype(np.uint16)
    img = Image.fromarray(np.repeat(ramp[np.newaxis], 20, axis=0))
    assert img.mode == "I;16"
    pixels, _ = load_image_reduced(encode(img, "PNG"), min_side=320)
    row = pixels[5, :, 0].astype(int)
    assert pixels.shape == (7, 667, 3)
    assert row[0] <= 1 and row[-1] >= 254 and np.all(np.diff(row) >= 0)
    assert len(np.unique(row)) > 200


def exif_rotated(fmt: str) -> bytes:
    stored = np.zeros((800, 1600, 3), np.uint8)
    stored[:, :800] = RED  # left half red in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    return encode(Image.fromarray(stored), fmt, exif=exif.tobytes(), **params)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_after_reduction(fmt):
    pixels, scale = load_image_reduced(exif_rotated(fmt), min_side=320)
    factor = 4 if fmt == "JPEG" else 2
    assert pixels.shape == (1600 // factor, 800 // factor, 3) and scale == pytest.approx(factor)
    assert colour_at(pixels, 0.5, 0.2)[0] > 200 and colour_at(pixels, 0.5, 0.8)[0] < 50


def test_limits_are_enforced_before_decoding_in_every_path():
    for fmt in ("PNG", "WEBP", "JPEG"):
        data = encode(Image.new("RGB", (400, 300)), fmt)
        with pytest.raises(ImageTooLargeError, match="120,000 pixels"):
            load_image_reduced(data, max_pixels=119_999, min_side=64)
    png = encode(halves("RGBA", (*RED, 255), (0, 0, 255, 0)), "PNG")
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        load_image_reduced(png[: len(png) // 2], min_side=320)


def test_corrupt_webp_is_invalid_through_the_pil_fallback():
    data = encode(halves("RGB", RED, BLUE), "WEBP", quality=90)
    with pytest.raises(InvalidImageError):
        load_image_reduced(data[: len(data) // 2], min_side=320)


def test_webp_without_libwebp_falls_back_to_pil(monkeypatch):
    data = encode(halves("RGBA", (*RED, 255), (0, 0, 255, 128)), "WEBP", lossless=True)
    assert webp_module._library() is not None, "Pillow's bundled libwebp should load"
    by_libwebp, scale = load_image_reduced(data, min_side=320)
    monkeypatch.setattr(webp_module, "_candidates", lambda: [])
    webp_module._library.cache_clear()
    try:
        by_pil, pil_scale = load_image_reduced(data, min_side=320)
    finally:
        monkeypatch.undo()
        webp_module._library.cache_clear()
    assert by_pil.shape == by_libwebp.shape == (350, 750, 3) and pil_scale == scale
    assert np.abs(by_pil.astype(int) - by_libwebp.astype(int)).mean() < 1.0


def noisy(mode: str, size=SIZE, seed=0) -> Image.Image:
    """Colours (and alpha) that vary from pixel to pixel, so premultiplied averaging matters."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def with_exif_after_pixels(data: bytes, orientation: int) -> bytes:
    """`data` (a PNG) with an eXIf chunk just before IEND, where PIL finds it only by decoding."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    end = data.rindex(b"IEND") - 4
    return data[:end] + png_chunk(b"eXIf", exif.tobytes()) + data[end:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload).to_bytes(4, "big")
    return len(payload).to_bytes(4, "big") + kind + payload + crc


def rgba16_png(size=SIZE) -> bytes:
    """A 16-bit RGBA PNG (PIL cannot write one): mid grey, opaque."""
    width, height = size
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 6, 0, 0, 0])
    row = b"\x00" + b"\x80\x00\x80\x00\x80\x00\xff\xff" * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(row * height))
        + png_chunk(b"IEND", b"")
    )


def decode_by_pil(monkeypatch, data: bytes, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(png_module, "pyspng", None)
        return load_image_reduced(data, **kwargs)


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("min_side", [None, 320])
def test_png_by_libspng_is_exactly_what_pil_gives(monkeypatch, mode, interlace, min_side):
    data = encode(noisy(mode), "PNG", interlace=interlace, compress_level=1)
    assert png_module.applies(Image.open(io.BytesIO(data)))
    assert png_module.pyspng is not None, "pyspng is in requirements-serve.txt"
    with monkeypatch.context() as patch:
        # PIL's decoder must not run: libspng decodes, PIL only read the header.
        patch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("PIL decoded it"))
        by_spng, scale = load_image_reduced(data, min_side=min_side)
    by_pil, pil_scale = decode_by_pil(monkeypatch, data, min_side=min_side)
    assert by_spng.shape == by_pil.shape and scale == pil_scale
    assert np.array_equal(by_spng, by_pil)


def test_rgba_png_exif_after_the_pixels_is_applied_without_pil_decoding(monkeypatch):
    data = with_exif_after_pixels(encode(halves("RGBA", (*RED, 255), (*BLUE, 255)), "PNG"), 6)
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("PIL decoded it"))
        by_spng, _ = load_image_reduced(data, min_side=320)
    by_pil, _ = decode_by_pil(monkeypatch, data, min_side=320)
    # Orientation 6: turned 90 degrees clockwise to be upright, so the left half is on top.
    assert by_spng.shape == by_pil.shape == (750, 350, 3)
    assert colour_at(by_spng, 0.5, 0.25) == RED and colour_at(by_spng, 0.5, 0.75) == BLUE
    assert np.array_equal(by_spng, by_pil)


def test_pngs_libspng_does_not_take_are_decoded_by_pil():
    """Grey with alpha, palette, RGB with a transparent colour, 16-bit RGBA: PIL's path."""
    keyed = halves("RGB", RED, BLUE)
    keyed.info["transparency"] = BLUE
    for img in (halves("LA", (76, 255), (29, 0)), palette_halves(transparent_right=True), keyed):
        assert not png_module.applies(Image.open(io.BytesIO(encode(img, "PNG")))), img.mode
    pixels, _ = load_image_reduced(encode(keyed, "PNG"), min_side=320)
    assert colour_at(pixels, 0.25) == RED and colour_at(pixels, 0.75) == WHITE
    deep = rgba16_png()
    assert Image.open(io.BytesIO(deep)).mode == "RGBA"
    assert not png_module.applies(Image.open(io.BytesIO(deep)))
    pixels, _ = load_image_reduced(deep, min_side=320)
    assert pixels.shape == (350, 750, 3) and colour_at(pixels, 0.5) == (128, 128, 128)


def test_animated_webp_gives_its_first_frame_reduced():
    frames = [Image.new("RGB", (1500, 700), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    pixels, _ = load_image_reduced(data, min_side=320)
    assert pixels.shape == (350, 750, 3) and colour_at(pixels, 0.5) == RED


def upscaled(path: Path, fmt: str, factor: int) -> bytes:
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * factor, img.height * factor), Image.LANCZOS)
    return encode(img, fmt, **({"method": 0} if fmt == "WEBP" else {"compress_level": 1}))


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_crops_and_embeddings_of_reduced_decodes_match_full_resolution(verifier, photos_dir):
    """Portraits upscaled 6x (1800-3516 px; PNG and WebP, which used to be decoded at full
    size) are decoded reduced by 1 to 2 (boxes keep twice the detector's 640 px).

    The aligned crop still comes from enough pixels: warped with the same landmarks from the
    reduced and from the full-size decode, the crops' embeddings agree (cosine > 0.99). End to
    end, detection on the reduced picture moves MTCNN's landmarks a little, so the embeddings
    agree a little less (measured on all 21 portraits as PNG: mean 0.9985, lowest 0.9898)."""
    full_resolution = copy.copy(verifier)
    full_resolution.decode_min_side = None
    portraits = sorted(photos_dir.glob("0*.jpg"))[::2]  # every other one keeps the test short
    assert len(portraits) >= 10
    crops, end_to_end, reduced_by = [], [], []
    for i, path in enumerate(portraits):
        data = upscaled(path, "PNG" if i % 2 else "WEBP", 6)
        reduced = verifier.decode(data)
        full = full_resolution.decode(data)
        reduced_by.append(reduced.scale)
        face = verifier.detect(full.pixels, largest_only=True)[0]
        same_landmarks = [
            warp_face(full.pixels, face.landmarks),
            warp_face(reduced.pixels, face.landmarks / reduced.scale),
        ]
        a, b = (unit(e) for e in verifier.embed(same_landmarks))
        crops.append(float(a @ b))
        [[ours]] = verifier.embed_images([data], ["image"])
        [[theirs]] = full_resolution.embed_images([data], ["image"])
        end_to_end.append(float(unit(ours.embedding) @ unit(theirs.embedding)))
    assert max(reduced_by) > 1.9, reduced_by  # the reduction did happen
    assert min(crops) > 0.99, [round(c, 4) for c in crops]
    assert np.mean(end_to_end) > 0.995 and min(end_to_end) > 0.98, end_to_end


FAULTS_SCRIPT = """
import io, resource, sys
import numpy as np
from PIL import Image
from face_alignment import keep_decode_memory, load_image_reduced
kept = keep_decode_memory() if sys.argv[1] == "keep" else None
rng = np.random.default_rng(0)
img = Image.fromarray(rng.integers(0, 256, (3000, 3000, 2), dtype=np.uint8), "LA")
buffer = io.BytesIO()
img.save(buffer, "PNG", compress_level=1)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    load_image_reduced(buffer.getvalue(), min_side=640)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""


def test_kept_decode_memory_is_reused_by_the_next_decode():
    """With freed heap kept, a second large decode maps no new memory (page faults: ~0 against
    ~12,000 for a 3000x3000 grey+alpha PNG when glibc gives each buffer back)."""
    faults = {}
    for mode in ("keep", "return"):
        command = [sys.executable, "-c", FAULTS_SCRIPT, mode]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        kept, *counts = done.stdout.split()
        faults[mode] = [int(count) for count in counts]
        if mode == "keep":
            assert kept == "True", "glibc's mallopt should be found"
    assert max(faults["keep"][1:]) < 200, faults
    assert min(faults["return"][1:]) > 20 * max(1, max(faults["keep"][1:])), faults


HUGE_PAGES_SCRIPT = """
import io, resource
import numpy as np
from PIL import Image
from face_alignment import keep_decode_memory, load_image_reduced
keep_decode_memory()
ramp = np.linspace(0, 255, 4000, dtype=np.uint8)
x, y = np.meshgrid(ramp, ramp[:3000])
img = Image.fromarray(np.stack([x, y, x // 2 + y // 2, 255 - x], axis=2), "RGBA")
buffer = io.BytesIO()
img.save(buffer, "WEBP", lossless=True, method=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
load_image_reduced(buffer.getvalue(), min_side=640)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_huge_pages_cut_the_page_faults_of_a_large_decode():
    """A 12-megapixel lossless WebP: libwebp decodes it into one 48 MB block, which malloc maps
    anew. In a process started as the service's workers are (``with_huge_pages``) it faults in
    2 MB at a time: ~12,000 page faults in a plain process, a few hundred with."""
    if decode_benchmark.transparent_hugepage() in (None, "never"):
        pytest.skip("transparent huge pages are off on this kernel")
    faults = {}
    for huge in (False, True):
        environment = decode_benchmark.child_environment(huge_pages=huge)
        command = [sys.executable, "-c", HUGE_PAGES_SCRIPT]
        done = subprocess.run(
            command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        faults[huge] = int(done.stdout)
    assert faults[False] > 8_000 and faults[True] < faults[False] / 5, faults


def test_huge_pages_tunable_keeps_what_the_user_set():
    assert with_huge_pages(None) == HUGE_PAGES_TUNABLE
    arenas = "glibc.malloc.arena_max=2"
    assert with_huge_pages(arenas) == f"{arenas}:{HUGE_PAGES_TUNABLE}"
    assert with_huge_pages("glibc.malloc.hugetlb=0") == "glibc.malloc.hugetlb=0"
    assert with_huge_pages(with_huge_pages(None)) == HUGE_PAGES_TUNABLE


def test_quick_benchmark_reports_every_field(tmp_path):
    path = tmp_path / "decode.json"
    command = [sys.executable, "-m", "benchmarks.decode", "--quick", "--json", str(path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(path.read_text())
    assert report["meta"]["quick"] is True and len(report["meta"]["loadavg_start"]) == 3
    assert report["meta"]["huge_pages"] is True
    assert set(report["worst"]) == {"cpu_s", "wall_s", "peak_extra_mb"}
    assert report["reference_cpu_s"] > 0 and "reference (PIL" in done.stdout
    cases = {row["case"] for row in report["cases"]}
    assert {"png-rgba", "png-16", "webp-lossless", "gif", "bmp-1bit", "jpeg-cmyk"} <= cases
    for row in report["cases"]:
        assert "error" not in row and row["inside_limits"], row
        assert row["cpu_s"] > 0 and row["wall_s"] > 0 and row["peak_extra_mb"] >= 0
        assert max(row["decoded"]) < 4 * DETECT_MAX_SIDE
        assert row["scale"] >= 1 and len(row["mean_rgb"]) == 3
    assert "| png-rgba |" in done.stdout and "worst:" in done.stdout
