"""The fast path keeps answers: reduced JPEG decoding, downscaled and largest-face detection."""

import dataclasses
import io

import numpy as np
import pytest
from facenet_pytorch import MTCNN
from PIL import Image

from face_alignment import FaceDetector, load_image, load_image_reduced
from face_alignment.detection import box_iou

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
    """Full resolution, every pyramid scale: the reference answer."""
    return FaceDetector(max_side=None)


@pytest.fixture(scope="module")
def fast():
    return FaceDetector()


@pytest.fixture(scope="module")
def facenet():
    mtcnn = MTCNN(keep_all=True).eval()

    def detect(image):
        boxes, _, points = mtcnn.detect(image, landmarks=True)
        boxes, points = np.asarray(boxes, np.float32), np.asarray(points, np.float32)
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        return boxes[order], points[order]

    return detect


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


def test_small_images_are_never_reduced_and_pngs_are_reduced_too(photos_dir):
    small = (photos_dir / "005_02ab3a1b.jpg").read_bytes()
    assert load_image_reduced(small, min_side=640)[1] == 1.0
    # Since issue 10 every format is reduced, not only JPEG (a PNG by a whole factor in C, to
    # [2, 4) x min_side).
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), "white").save(buffer, "PNG")
    pixels, scale = load_image_reduced(buffer.getvalue(), min_side=640)
    assert scale == 2.0 and pixels.shape == (1000, 1500, 3) and pixels.min() == 255
    assert load_image_reduced(buffer.getvalue())[0].shape == (2000, 3000, 3)


@pytest.mark.parametrize("name", [*PORTRAITS, "office1", "office4"])
def test_full_search_is_facenet_pytorchs_answer(photos_dir, exhaustive, facenet, name):
    """The vectorised stages compute what facenet-pytorch's MTCNN computes, face for face."""
    image = load_image(photos_dir / f"{name}.jpg")
    boxes, points = facenet(image)
    faces = exhaustive.detect(image)
    assert len(faces) == len(boxes)
    np.testing.assert_allclose([f.box for f in faces], boxes, atol=0.01)
    np.testing.assert_allclose([f.landmarks for f in faces], points, atol=0.01)


@pytest.mark.parametrize("stem", PORTRAITS)
def test_largest_only_finds_the_full_searchs_largest_face(photos_dir, exhaustive, fast, stem):
    image = load_image(photos_dir / f"{stem}.jpg")
    reference = exhaustive.detect(image)[0]
    found = fast.detect(image, largest_only=True)
    assert found[0].box == pytest.approx(reference.box, abs=0.01)
    np.testing.assert_allclose(found[0].landmarks, reference.landmarks, atol=0.01)


def test_largest_only_skips_the_small_scales(photos_dir, monkeypatch):
    """The saving is real: the largest-face search runs P-Net on far fewer pixels."""
    image = load_image(photos_dir / "002_3a2ef5df.jpg")
    pixels = {True: 0, False: 0}
    detector = FaceDetector()
    pnet = detector.nets.pnet
    for largest_only in (True, False):

        def counting(batch, largest_only=largest_only):
            pixels[largest_only] += batch.shape[2] * batch.shape[3]
            return pnet(batch)

        monkeypatch.setattr(detector, "nets", dataclasses.replace(detector.nets, pnet=counting))
        detector.detect(image, largest_only=largest_only)
    assert pixels[True] * 5 < pixels[False]


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


@pytest.mark.parametrize("count", [0, 1, 30, 240, 600])
def test_nms_keeps_what_torchvision_and_facenet_keep(count):
    """Both NMS flavours of MTCNN (IoU, torchvision; intersection over the smaller box,
    facenet-pytorch), on both of our code paths (overlap matrix, and shrinking for many boxes)."""
    import torch
    from facenet_pytorch.models.utils.detect_face import nms_numpy
    from torchvision.ops import nms as torchvision_nms

    from face_alignment.mtcnn import nms

    rng = np.random.default_rng(count)
    corners = rng.uniform(0, 600, (count, 2))
    boxes = np.hstack([corners, corners + rng.uniform(10, 80, (count, 1))]).astype(np.float32)
    scores = rng.uniform(0, 1, count).astype(np.float32)
    expected = torchvision_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), expected)
    expected = nms_numpy(boxes, scores, 0.7, "Min") if count else np.zeros(0)
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, overlap="min"), expected)
