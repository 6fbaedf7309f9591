"""The fast path keeps answers: reduced JPEG decoding, downscaled and coarse-first detection."""

import io

import numpy as np
import pytest
from PIL import Image

from face_alignment import FaceDetector, load_image, load_image_reduced, warp_face
from face_alignment.detection import box_iou
from verification.embedding import normalized

PORTRAITS = [
    "005_02ab3a1b",
    "002_3a2ef5df",
    "011_da108a07",
    "006_9135205d",
    "009_fc574624",
    "025_c55c4e11",
]


def upscaled_jpeg(path, long_side: int = 2048) -> bytes:
    image = Image.open(path).convert("RGB")
    ratio = long_side / max(image.size)
    big = image.resize((round(image.width * ratio), round(image.height * ratio)), Image.LANCZOS)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def exhaustive():
    """Plain MTCNN settings: full resolution, no coarse pass: the reference answer."""
    return FaceDetector(max_side=None, coarse_sides=())


@pytest.fixture(scope="module")
def fast():
    return FaceDetector(coarse_sides=(160,))


def test_large_jpeg_is_decoded_reduced_but_not_below_min_side(photos_dir):
    data = upscaled_jpeg(photos_dir / "005_02ab3a1b.jpg")
    full = load_image(data)
    reduced, scale = load_image_reduced(data, min_side=640)
    assert max(full.shape[:2]) == 2048
    assert scale == pytest.approx(2048 / max(reduced.shape[:2]))
    assert 640 <= max(reduced.shape[:2]) < 2048 and scale >= 2
    # Same picture: the reduced decode matches a resize of the full one.
    resized = np.asarray(Image.fromarray(full).resize(reduced.shape[1::-1], Image.BILINEAR))
    assert np.abs(resized.astype(int) - reduced.astype(int)).mean() < 4


def test_small_images_and_pngs_are_never_reduced(photos_dir):
    small = (photos_dir / "005_02ab3a1b.jpg").read_bytes()
    assert load_image_reduced(small, min_side=640)[1] == 1.0
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), "white").save(buffer, "PNG")
    pixels, scale = load_image_reduced(buffer.getvalue(), min_side=640)
    assert scale == 1.0 and pixels.shape == (2000, 3000, 3)


@pytest.mark.parametrize("stem", PORTRAITS)
def test_coarse_first_finds_the_same_largest_face(photos_dir, exhaustive, fast, verifier, stem):
    image = load_image(photos_dir / f"{stem}.jpg")
    reference = exhaustive.detect(image)[0]
    found = fast.detect(image, largest_only=True)[0]
    assert box_iou(reference.box, found.box) > 0.75
    # What matters downstream: the embeddings of the two alignments are nearly the same (a
    # cosine distance of a few hundredths, against a decision threshold near 0.68).
    crops = [warp_face(image, face.landmarks) for face in (reference, found)]
    first, second = normalized(verifier.embed(crops))
    assert float(first @ second) > 0.95


def test_detection_on_large_images_maps_back_to_full_resolution(photos_dir, exhaustive, fast):
    image = load_image(upscaled_jpeg(photos_dir / "002_3a2ef5df.jpg"))
    reference = exhaustive.detect(load_image(photos_dir / "002_3a2ef5df.jpg"))[0]
    ratio = image.shape[1] / Image.open(photos_dir / "002_3a2ef5df.jpg").width
    found = fast.detect(image, largest_only=True)[0]
    scaled = [v * ratio for v in reference.box]
    assert box_iou(scaled, found.box) > 0.75


@pytest.mark.parametrize("office", ["office1", "office2", "office3", "office4", "office5"])
def test_all_faces_of_at_least_40_px_still_found(photos_dir, exhaustive, fast, office):
    image = load_image(photos_dir / f"{office}.jpg")
    wanted = [f for f in exhaustive.detect(image) if min(f.width, f.height) >= 40]
    found = fast.detect(image)
    for face in wanted:
        assert max(box_iou(face.box, other.box) for other in found) > 0.5, face.box


def test_verify_reports_boxes_in_original_pixels(verifier, photos_dir):
    data = upscaled_jpeg(photos_dir / "005_02ab3a1b.jpg")
    small = photos_dir / "005_02ab3a1b.jpg"
    ratio = 2048 / max(Image.open(small).size)
    result = verifier.verify(data, small)
    big_face, small_face = (f.face for f in result.faces)
    assert box_iou(big_face.box, [v * ratio for v in small_face.box]) > 0.75
    assert result.match  # the same photo at two sizes
