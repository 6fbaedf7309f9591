"""Tests for face_alignment: real MTCNN on real photos, nothing mocked."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from face_alignment import (
    DEFAULT_MAX_PIXELS,
    REFERENCE_LANDMARKS,
    AlignedFace,
    DetectedFace,
    FaceDetector,
    ImageError,
    ImageTooLargeError,
    InvalidImageError,
    align_faces,
    default_detector,
    fallback_landmarks,
    get_aligned_face,
    load_image,
    select_face,
    similarity_transform,
    warp_face,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS_DIR = Path(os.environ.get("EDGEFACE_PHOTOS_DIR", SHARED / "photos"))
LFW_DIR = Path(os.environ.get("EDGEFACE_LFW_DIR", SHARED / "lfw-dev"))


def _photo_params(pattern: str) -> list:
    paths = sorted(PHOTOS_DIR.glob(pattern)) if PHOTOS_DIR.is_dir() else []
    if not paths:
        reason = f"no {pattern} in {PHOTOS_DIR} (set EDGEFACE_PHOTOS_DIR)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.name) for path in paths]


PORTRAITS = _photo_params("0*.jpg")
OFFICES = _photo_params("office*.jpg")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # MTCNN's many small convolutions gain little from intra-op threads, and on a busy machine
    # (parallel test runs) spinning OpenMP workers made this file ~8x slower. Restored after.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@cache
def _shared_detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return _shared_detector()


@cache
def _detections(path: Path) -> tuple[np.ndarray, list[DetectedFace]]:
    # One detector and one detection per photo for the whole module keeps the file fast.
    image = load_image(path)
    return image, _shared_detector().detect(image)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is garbage: decoding it can
    only fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = b"not a zlib stream"
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


# --- detection and alignment on real photos -------------------------------------------------


@pytest.mark.parametrize("path", PORTRAITS)
def test_portrait_has_a_confident_face(path: Path) -> None:
    _, faces = _detections(path)
    assert len(faces) >= 1
    assert faces[0].score > 0.9
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    assert faces[0].landmarks.shape == (5, 2) and faces[0].landmarks.dtype == np.float32


def _template_errors(path: Path) -> tuple[np.ndarray, float]:
    """Per-landmark fit residual of the largest face on the template, and how far MTCNN, run
    again on the warped crop, finds the landmarks from where the transform put them."""
    image, faces = _detections(path)
    landmarks = faces[0].landmarks
    mapped = _apply(similarity_transform(landmarks, REFERENCE_LANDMARKS), landmarks)
    crop = warp_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    padded = np.zeros((160, 160, 3), np.uint8)  # MTCNN wants some context around the face
    padded[24:136, 24:136] = crop
    again = _shared_detector().detect(padded)
    assert again, f"no face found again in the aligned crop of {path.name}"
    redetected = select_face(again, "center", padded.shape).landmarks - 24
    return (
        np.linalg.norm(mapped - REFERENCE_LANDMARKS, axis=1),
        float(np.linalg.norm(redetected - mapped, axis=1).mean()),
    )


@pytest.mark.parametrize("path", PORTRAITS)
def test_largest_face_lands_on_the_template(path: Path) -> None:
    residual, redetection = _template_errors(path)
    # Five points of a real face never fit the template exactly (MTCNN's nose sits ~3 px lower
    # than the template's, smiles widen the mouth); eyes fit best.
    assert residual.mean() < 6.0
    assert residual[:2].mean() < 4.0
    assert redetection < 5.0


def test_portraits_land_on_the_template_on_average() -> None:
    paths = [p.values[0] for p in PORTRAITS if p.values[0] is not None]
    if not paths:
        pytest.skip(f"no portraits in {PHOTOS_DIR} (set EDGEFACE_PHOTOS_DIR)")
    residuals, redetections = zip(*(_template_errors(path) for path in paths), strict=True)
    assert np.mean([r.mean() for r in residuals]) < 3.5
    assert np.mean([r[:2].mean() for r in residuals]) < 3.0
    assert np.mean(redetections) < 3.0


@pytest.mark.parametrize("path", OFFICES)
def test_group_photo_has_several_faces(path: Path) -> None:
    image, faces = _detections(path)
    assert len(faces) >= 3
    aligned = align_faces(image, _shared_detector())
    assert [a.face for a in aligned] == faces
    for item in aligned:
        assert isinstance(item, AlignedFace)
        assert item.crop.shape == (112, 112, 3) and item.crop.dtype == np.uint8


def test_no_face_in_blank_or_noise(detector: FaceDetector) -> None:
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert align_faces(noise, detector) == []


def test_images_smaller_than_min_face_size_have_no_faces(detector: FaceDetector) -> None:
    for shape in [(1, 1, 3), (10, 500, 3), (19, 19, 3), (20, 20, 3)]:
        assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_detect_rejects_non_rgb_arrays(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detector.detect(np.zeros((50, 50, 3), np.float32))


def test_detector_is_safe_to_share_between_threads(detector: FaceDetector) -> None:
    paths = [p.values[0] for p in PORTRAITS[:3] + OFFICES[2:3] if p.values[0] is not None]
    if not paths:
        pytest.skip(f"no photos in {PHOTOS_DIR}")
    images = [load_image(p) for p in paths] * 2
    expected = [detector.detect(img) for img in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(detector.detect, images))
    for want, have in zip(expected, got, strict=True):
        assert len(want) == len(have)
        for a, b in zip(want, have, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


@pytest.mark.parametrize("path", PORTRAITS[:1])
def test_get_aligned_face_accepts_path_array_and_pil(path: Path, detector: FaceDetector) -> None:
    image = load_image(path)
    results = [
        get_aligned_face(path, detector),
        get_aligned_face(str(path), detector),
        get_aligned_face(image, detector),
        get_aligned_face(Image.open(path), detector),
    ]
    for result in results:
        assert isinstance(result, Image.Image)
        assert result.size == (112, 112) and result.mode == "RGB"
    first = np.asarray(results[0], dtype=np.int16)
    for other in results[1:]:
        assert np.abs(first - np.asarray(other, dtype=np.int16)).max() <= 1
    assert get_aligned_face(np.full((200, 200, 3), 128, np.uint8), detector) is None


@pytest.mark.parametrize("path", PORTRAITS[:1])
def test_get_aligned_face_default_detector(path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        detectors = list(pool.map(lambda _: default_detector(), range(8)))
    assert all(d is detectors[0] for d in detectors)
    crop = get_aligned_face(path)
    assert crop is not None and crop.size == (112, 112)


def test_fallback_landmarks_cover_the_lfw_face(detector: FaceDetector) -> None:
    paths = sorted((LFW_DIR / "images").glob("*/*.jpg"))[::50][:20]
    if not paths:
        pytest.skip(f"no LFW images under {LFW_DIR} (set EDGEFACE_LFW_DIR)")
    fallback = fallback_landmarks((250, 250))
    assert fallback.shape == (5, 2) and fallback.dtype == np.float32
    errors = []
    for path in paths:
        image = load_image(path)
        faces = detector.detect(image)
        if faces:
            face = select_face(faces, "center", image.shape)
            errors.append(np.linalg.norm(face.landmarks - fallback, axis=1).mean())
    assert len(errors) >= len(paths) * 0.9
    assert np.median(errors) < 8.0
    # The fallback crop of an LFW image is a usable face crop, not border.
    crop = warp_face(load_image(paths[0]), fallback)
    assert crop.shape == (112, 112, 3) and crop.mean() > 20


def test_fallback_landmarks_scale_with_the_image() -> None:
    small, large = fallback_landmarks((250, 250)), fallback_landmarks((500, 500))
    np.testing.assert_allclose(large, small * 2, rtol=1e-6)
    wide = fallback_landmarks((250, 450))
    np.testing.assert_allclose(wide, small + [100, 0], rtol=1e-6)
    # Template proportions: eyes level, nose between them, mouth below.
    assert small[0, 0] < small[2, 0] < small[1, 0]
    assert small[0, 1] < small[2, 1] < small[3, 1]


# --- DetectedFace and select_face ------------------------------------------------------------


def _face(x1: float, y1: float, x2: float, y2: float, score: float = 0.99) -> DetectedFace:
    return DetectedFace(box=(x1, y1, x2, y2), score=score, landmarks=np.zeros((5, 2)))


def test_detected_face_properties() -> None:
    face = _face(10, 20, 50, 100)
    assert (face.width, face.height, face.area, face.center) == (40, 80, 3200, (30, 60))
    assert face.landmarks.dtype == np.float32 and not face.landmarks.flags.writeable
    assert face == _face(10, 20, 50, 100) and hash(face) == hash(_face(10, 20, 50, 100))


def test_select_face() -> None:
    big_corner, small_centre = _face(0, 0, 100, 100), _face(190, 140, 210, 160)
    faces = [small_centre, big_corner]
    assert select_face(faces) is big_corner
    assert select_face(faces, "largest") is big_corner
    assert select_face(faces, "center", image_shape=(300, 400)) is small_centre
    with pytest.raises(ValueError):
        select_face(faces, "center")
    with pytest.raises(ValueError):
        select_face(faces, "leftmost")
    with pytest.raises(ValueError):
        select_face([])


# --- similarity_transform and the warp convention --------------------------------------------


def test_similarity_transform_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(42)
    for _ in range(20):
        angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 5.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        translation = rng.uniform(-200, 200, size=2)
        src = rng.uniform(0, 300, size=(5, 2))
        dst = src @ (scale * rotation).T + translation
        expected = np.hstack([scale * rotation, translation[:, None]])
        np.testing.assert_allclose(similarity_transform(src, dst), expected, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    mirrored = REFERENCE_LANDMARKS * [-1, 1] + [112, 0]
    transform = similarity_transform(REFERENCE_LANDMARKS, mirrored)
    assert np.linalg.det(transform[:, :2]) > 0
    # Rank-deficient (collinear) points and a reflection: still a proper rotation.
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert np.linalg.det(similarity_transform(line, line * [-1, 1])[:, :2]) > 0


def test_similarity_transform_identity_and_bad_input() -> None:
    np.testing.assert_allclose(
        similarity_transform(REFERENCE_LANDMARKS, REFERENCE_LANDMARKS),
        [[1, 0, 0], [0, 1, 0]],
        atol=1e-6,
    )
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), REFERENCE_LANDMARKS)
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))


def test_warp_matches_cv2_pixel_centre_convention_on_a_ramp() -> None:
    # Bilinear interpolation reproduces a linear ramp exactly, so every output pixel must equal
    # the ramp at cv2's source position. The face is magnified 4x: a half-pixel convention slip
    # would be off by 0.375 source px = 2.25 grey levels here.
    height, width, slope = 40, 42, 6.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([xs * slope, ys * slope, np.full_like(xs, 77)], axis=2).astype(np.uint8)
    offset = np.array([3.0, 5.0])
    crop = warp_face(image, REFERENCE_LANDMARKS / 4 + offset).astype(np.float64)

    v, u = np.mgrid[0:112, 0:112].astype(np.float64)
    src_x, src_y = u / 4 + offset[0], v / 4 + offset[1]
    inside = (src_x <= width - 1) & (src_y <= height - 1)
    assert inside.sum() > 5000
    assert np.abs(crop[..., 0] - src_x * slope)[inside].max() <= 1.0
    assert np.abs(crop[..., 1] - src_y * slope)[inside].max() <= 1.0
    assert np.all(crop[..., 2][inside] == 77)


def test_warp_places_a_dot_pattern_on_the_template() -> None:
    # Gaussian dots at similarity-transformed template positions (rotated, 4x smaller) must
    # come back, after warping, within half a pixel of the template.
    angle, scale, offset = 0.3, 0.25, np.array([20.3, 17.8])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dots = REFERENCE_LANDMARKS.astype(np.float64) @ (scale * rotation).T + offset
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    field = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2.0) for x, y in dots)
    image = np.repeat((255 * field / field.max())[..., None], 3, axis=2).round().astype(np.uint8)

    crop = warp_face(image, dots)[..., 0].astype(np.float64)
    v, u = np.mgrid[0:112, 0:112].astype(np.float64)
    for ref_x, ref_y in REFERENCE_LANDMARKS:
        window = (np.abs(u - ref_x) <= 9) & (np.abs(v - ref_y) <= 9)
        weights = crop * window
        centroid = np.array([(weights * u).sum(), (weights * v).sum()]) / weights.sum()
        assert np.linalg.norm(centroid - [ref_x, ref_y]) < 0.5


def test_warp_face_pure_translation_is_a_shift() -> None:
    image = np.random.default_rng(1).integers(0, 256, (150, 160, 3), dtype=np.uint8)
    crop = warp_face(image, REFERENCE_LANDMARKS + [7, 11])
    np.testing.assert_array_equal(crop, image[11 : 11 + 112, 7 : 7 + 112])


def test_warp_face_fills_the_border_black_and_honours_size() -> None:
    image = np.full((60, 60, 3), 200, np.uint8)
    crop = warp_face(image, REFERENCE_LANDMARKS / 4 + 40)  # face near the bottom-right corner
    assert crop[0, 0].tolist() == [200, 200, 200]
    assert crop[-1, -1].tolist() == [0, 0, 0]
    assert warp_face(image, REFERENCE_LANDMARKS / 4 + 20, size=224).shape == (224, 224, 3)


# --- load_image ------------------------------------------------------------------------------


def _rgb(source, **kwargs) -> np.ndarray:
    out = load_image(source, **kwargs)
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert out.flags.c_contiguous
    return out


def test_rgba_composites_on_white() -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 255, 0], [0, 0, 0, 128]]], np.uint8)
    for source in (Image.fromarray(rgba, "RGBA"), _encode(Image.fromarray(rgba, "RGBA"), "PNG")):
        out = _rgb(source)
        assert out[0, 0].tolist() == [255, 0, 0]
        assert out[0, 1].tolist() == [255, 255, 255]
        assert 120 <= out[0, 2, 0] <= 135
    assert _rgb(rgba)[0, 0].tolist() == [255, 0, 0]


def test_gray_bilevel_and_la_modes() -> None:
    gray = Image.fromarray(np.array([[0, 100, 255]], np.uint8), "L")
    assert _rgb(_encode(gray, "PNG"))[0].tolist() == [[0] * 3, [100] * 3, [255] * 3]
    assert _rgb(gray.convert("1"))[0, :, 0].tolist() == [0, 0, 255]
    la = Image.merge("LA", [gray, Image.fromarray(np.array([[255, 255, 0]], np.uint8))])
    assert _rgb(_encode(la, "PNG"))[0].tolist() == [[0] * 3, [100] * 3, [255] * 3]


def test_palette_modes_with_and_without_transparency() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert _rgb(_encode(palette, "PNG"))[0].tolist() == [[255, 0, 0], [0, 255, 0]]
    transparent = _encode(palette, "PNG", transparency=1)
    assert _rgb(transparent)[0].tolist() == [[255, 0, 0], [255, 255, 255]]
    assert _rgb(_encode(palette, "GIF", transparency=0))[0].tolist() == [
        [255, 255, 255],
        [0, 255, 0],
    ]


def test_cmyk_and_ycbcr_stay_red() -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    for source in (
        red.convert("CMYK"),
        _encode(red.convert("CMYK"), "JPEG", quality=95),
        _encode(red.convert("CMYK"), "TIFF"),
        red.convert("YCbCr"),
    ):
        r, g, b = _rgb(source)[4, 4].tolist()
        assert r > 200 and g < 60 and b < 60, (r, g, b)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_gray_spreads_over_the_8_bit_range(mode: str) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(1, 256)
    raw = ramp.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    img = Image.frombytes(mode, (256, 1), raw)
    sources = [img, _encode(img, "PNG")] if mode == "I;16" else [img]
    for source in sources:
        out = _rgb(source)[0, :, 0]
        assert out.min() == 0 and out.max() == 255
        assert np.all(np.diff(out.astype(int)) >= 0) and len(np.unique(out)) > 200


def test_32_bit_integer_and_float_gray() -> None:
    ramp = np.linspace(0, 65535, 256).reshape(1, 256)
    for values in (ramp.astype(np.int32), (ramp - 30000).astype(np.int32)):
        out = _rgb(_encode(Image.fromarray(values, "I"), "TIFF"))[0, :, 0]
        assert out.min() == 0 and out.max() == 255 and np.all(np.diff(out.astype(int)) >= 0)
    float_img = Image.fromarray((ramp / 65535).astype(np.float32), "F")
    for source in (float_img, _encode(float_img, "TIFF")):
        out = _rgb(source)[0, :, 0]
        assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 200


def test_multi_frame_images_give_the_first_frame() -> None:
    frames = [Image.new("RGB", (6, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    for fmt in ("GIF", "TIFF", "PNG"):
        data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        assert Image.open(io.BytesIO(data)).n_frames == 2, fmt
        out = _rgb(data)
        assert out.shape == (4, 6, 3) and out[2, 3].tolist() == [255, 0, 0], fmt


def test_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    data = _encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)
    out = _rgb(data)
    assert out.shape == (40, 20, 3)
    assert out[:15, :, 0].mean() > 200 and out[25:, :, 0].mean() < 50  # red is now on top
    assert _rgb(Image.open(io.BytesIO(data))).shape == (40, 20, 3)


def test_numpy_inputs() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(_rgb(gray), np.repeat(gray[..., None], 3, axis=2))
    rgb = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = _rgb(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)
    np.testing.assert_array_equal(_rgb(rgb[:, ::-1]), rgb[:, ::-1])
    np.testing.assert_array_equal(_rgb(rgb.astype(np.float32) / 255), rgb)
    np.testing.assert_array_equal(_rgb(rgb.astype(np.uint16) * 257), rgb)
    for bad in (
        np.full((4, 4, 3), 2.0),
        np.full((4, 4, 3), np.nan),
        np.zeros((4, 4, 3), np.int64),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ):
        with pytest.raises(InvalidImageError):
            load_image(bad)


def test_real_photo_from_path_bytes_and_pil_agree() -> None:
    photos = sorted(PHOTOS_DIR.glob("*.jpg")) if PHOTOS_DIR.is_dir() else []
    if not photos:
        pytest.skip(f"no photos in {PHOTOS_DIR} (set EDGEFACE_PHOTOS_DIR)")
    path = photos[0]
    from_path = _rgb(path)
    np.testing.assert_array_equal(_rgb(str(path)), from_path)
    np.testing.assert_array_equal(_rgb(path.read_bytes()), from_path)
    np.testing.assert_array_equal(_rgb(Image.open(path)), from_path)


def test_truncated_random_and_empty_inputs_are_invalid(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    jpegs = [_encode(Image.fromarray(noise), "JPEG")]
    photos = sorted(PHOTOS_DIR.glob("*.jpg")) if PHOTOS_DIR.is_dir() else []
    jpegs += [photos[0].read_bytes()] if photos else []
    for data in jpegs:
        with pytest.raises(InvalidImageError, match="truncated"):
            load_image(data[: len(data) // 2])
    with pytest.raises(InvalidImageError):
        load_image(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InvalidImageError, match="the file is empty"):
        load_image(b"")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="the file is empty"):
        load_image(empty)
    for error in (InvalidImageError, ImageTooLargeError):
        assert issubclass(error, ImageError) and issubclass(error, ValueError)


def test_missing_path_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(missing)
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # The PNG has no pixel data at all, so any decoding attempt would raise InvalidImageError:
    # ImageTooLargeError proves the size was refused from the header alone.
    assert DEFAULT_MAX_PIXELS == 40_000_000
    with pytest.raises(InvalidImageError):
        load_image(_png_header_only(100, 100))
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as info:
        load_image(_png_header_only(10_000, 10_000), max_pixels=40_000_000)
    assert time.perf_counter() - start < 0.5
    message = str(info.value)
    assert "100,000,000" in message and "40,000,000" in message
    assert not message.lower().startswith("image")
    # Past twice PIL's own limit, PIL's DecompressionBombError must still come out as ours.
    with pytest.raises(ImageTooLargeError, match="400,000,000"):
        load_image(_png_header_only(20_000, 20_000))
    with pytest.raises(ImageTooLargeError, match="400,000,000"):
        load_image(_png_header_only(20_000, 20_000), max_pixels=None)


def test_max_pixels_applies_to_every_input_kind() -> None:
    small = Image.new("RGB", (100, 50), (1, 2, 3))
    for source in (small, _encode(small, "PNG"), np.zeros((50, 100, 3), np.uint8)):
        with pytest.raises(ImageTooLargeError, match="5,000 pixels"):
            load_image(source, max_pixels=4_999)
        assert _rgb(source, max_pixels=5_000).shape == (50, 100, 3)
        assert _rgb(source, max_pixels=None).shape == (50, 100, 3)


def test_concurrent_loads_do_not_leak_warning_filters() -> None:
    import warnings

    before = list(warnings.filters)
    data = _encode(Image.new("RGB", (32, 32)), "PNG")
    threads = [threading.Thread(target=load_image, args=(data,)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before
