"""Similarity alignment of detected faces onto the ArcFace 112x112 five-point template."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .detection import DetectedFace, FaceDetector, _require_rgb
from .images import ImageSource, load_image

# The ArcFace / insightface template for a 112x112 crop, in cv2 pixel coordinates.
REFERENCE_LANDMARKS = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
REFERENCE_SIZE = 112

# Mean MTCNN landmarks (face nearest the centre) over 200 random LFW deep-funneled 250x250 images
# (random.seed(0)), as fractions of the image side; all 200 had a face.
LFW_MEAN_LANDMARKS = np.array(
    [
        [0.4207, 0.4540],
        [0.5902, 0.4499],
        [0.5057, 0.5495],
        [0.4341, 0.6378],
        [0.5838, 0.6346],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class AlignedFace:
    face: DetectedFace
    crop: np.ndarray  # size x size x 3 uint8 RGB


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    Umeyama (1991), with the sign correction that forbids reflections. Returns a 2x3 float64
    matrix M such that dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"expected two Nx2 point arrays (N >= 2), got {src.shape}, {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= np.finfo(np.float64).eps:
        raise ValueError("the source points coincide; no similarity transform is defined")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    # det(U) * det(V) rather than det(cov): also right when the covariance is rank-deficient.
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, np.newaxis]])


def warp_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp the face with these five landmarks onto the template: a size x size x 3 uint8 crop.

    Bilinear with a black border, in cv2.warpAffine's convention (integer coordinates are pixel
    centres; samples straddling the border blend with black), so crops match what
    insightface-style recognition models were trained on.
    """
    _require_rgb(image)
    transform = similarity_transform(landmarks, reference_landmarks(size))
    return _warp_affine(image, transform, size)


def reference_landmarks(size: int = REFERENCE_SIZE) -> np.ndarray:
    """The template scaled to a size x size crop (pixel centres stay pixel centres)."""
    if size == REFERENCE_SIZE:
        return REFERENCE_LANDMARKS.copy()
    factor = size / REFERENCE_SIZE
    return ((REFERENCE_LANDMARKS + 0.5) * factor - 0.5).astype(np.float32)


def _warp_affine(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """cv2.warpAffine(image, transform, (size, size)), INTER_LINEAR, BORDER_CONSTANT black.

    Written in numpy rather than with PIL's Image.transform, which truncates instead of
    rounding (crops come out half a grey level dark, exact shifts lose a level) and replicates
    edge pixels where cv2 blends with the border colour.
    """
    inverse = np.linalg.inv(np.vstack([transform, [0.0, 0.0, 1.0]]))[:2]
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    src_x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = (src_x - x0)[..., np.newaxis], (src_y - y0)[..., np.newaxis]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    top = (1 - fx) * _taps(image, y0, x0) + fx * _taps(image, y0, x0 + 1)
    bottom = (1 - fx) * _taps(image, y0 + 1, x0) + fx * _taps(image, y0 + 1, x0 + 1)
    warped = (1 - fy) * top + fy * bottom
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def _taps(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """image[rows, cols] as float, black where the index falls outside the image."""
    height, width = image.shape[:2]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    values = image[np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)].astype(np.float64)
    values[~inside] = 0.0
    return values


def align_faces(image: np.ndarray, detector: FaceDetector) -> list[AlignedFace]:
    """Detect and align every face, largest first."""
    return [
        AlignedFace(face=face, crop=warp_face(image, face.landmarks))
        for face in detector.detect(image)
    ]


def fallback_landmarks(image_shape: tuple[int, ...]) -> np.ndarray:
    """Where the five landmarks of a centred face would be, for images where none is found.

    The LFW mean positions, scaled by the shorter side and centred, so that on a 250x250
    deep-funneled LFW image they cover the labelled face.
    """
    height, width = image_shape[:2]
    side = min(height, width)
    centre = np.array([width / 2, height / 2], dtype=np.float32)
    return ((LFW_MEAN_LANDMARKS - 0.5) * side + centre).astype(np.float32)


_default_detector: FaceDetector | None = None
_default_detector_lock = threading.Lock()


def default_detector() -> FaceDetector:
    """A process-wide FaceDetector with default settings, created on first use."""
    global _default_detector
    if _default_detector is None:
        with _default_detector_lock:
            if _default_detector is None:
                _default_detector = FaceDetector()
    return _default_detector


def get_aligned_face(x: ImageSource, detector: FaceDetector | None = None) -> Image.Image | None:
    """The aligned 112x112 RGB crop of the largest face in `x`, or None when there is none."""
    image = load_image(x)
    faces = (detector if detector is not None else default_detector()).detect(image)
    if not faces:
        return None
    return Image.fromarray(warp_face(image, faces[0].landmarks))
