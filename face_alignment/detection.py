"""Face detection with MTCNN (facenet-pytorch's weights, which ship inside its pip package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import mtcnn
from .mtcnn import MIN_FACE_SIZE, THRESHOLDS, MTCNNNets
from .networks import torch_mtcnn_nets

# Detection runs on a copy at most this long: MTCNN's cost grows with the pixels of its first
# pyramid level, and faces worth recognising stay over MIN_FACE_SIZE there.
DETECT_MAX_SIDE = 640


@dataclass(frozen=True)
class DetectedFace:
    """One detection in input-image pixels.

    `box` is (x1, y1, x2, y2) as MTCNN returns it (it may reach past the image border);
    `landmarks` is 5x2 float32: left eye, right eye, nose, mouth left, mouth right, as seen in
    the image (MTCNN's order).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(compare=False)

    def __post_init__(self) -> None:
        landmarks = np.array(self.landmarks, dtype=np.float32).reshape(5, 2)
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "landmarks", landmarks)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def scaled(self, factor: float) -> DetectedFace:
        return DetectedFace(
            tuple(v * factor for v in self.box), self.score, self.landmarks * factor
        )


class FaceDetector:
    """Finds faces in an RGB image with MTCNN. Safe to share between threads.

    MTCNN's cost grows with the pixels of its first pyramid level, so detection runs on a copy
    whose long side is at most ``max_side``; boxes and landmarks are mapped back to the input.
    ``min_face_size`` is in pixels of that copy. The stages are ``face_alignment.mtcnn``'s
    (facenet-pytorch's algorithm, vectorised); ``nets`` runs the three networks, by default on
    PyTorch (see ``face_alignment.networks`` for ONNX Runtime).
    """

    def __init__(
        self,
        min_face_size: int = MIN_FACE_SIZE,
        thresholds: Sequence[float] = THRESHOLDS,
        max_side: int | None = DETECT_MAX_SIDE,
        nets: MTCNNNets | None = None,
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.max_side = max_side
        self.nets = nets if nets is not None else torch_mtcnn_nets()

    def detect(self, image: np.ndarray, largest_only: bool = False) -> list[DetectedFace]:
        """Faces in an HxWx3 uint8 RGB image, largest box first; [] when there is none.

        With ``largest_only`` only the pyramid scales that can matter for the largest face are
        searched (``face_alignment.mtcnn``): the first face is the one a full search finds, and
        faces under about a third of its size may be missing from the rest of the list.
        """
        _require_rgb(image)
        scale = 1.0
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            scale = self.max_side / max(image.shape[:2])
            image = _resize(image, scale)
        found = mtcnn.detect(image, self.nets, self.min_face_size, self.thresholds, largest_only)
        faces = [
            DetectedFace(box=tuple(box / scale), score=score, landmarks=points / scale)
            for box, score, points in zip(found.boxes, found.scores, found.landmarks, strict=True)
        ]
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_face_size={self.min_face_size}, thresholds={self.thresholds}, "
            f"max_side={self.max_side})"
        )


def select_face(
    faces: Sequence[DetectedFace],
    how: str = "largest",
    image_shape: tuple[int, ...] | None = None,
) -> DetectedFace:
    """Pick one face: "largest" box, or "center" (box centre nearest the image centre)."""
    if not faces:
        raise ValueError("no faces to select from")
    if how == "largest":
        return max(faces, key=lambda face: face.area)
    if how == "center":
        if image_shape is None:
            raise ValueError('how="center" needs image_shape (height, width)')
        cy, cx = image_shape[0] / 2, image_shape[1] / 2
        return min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
    raise ValueError(f'unknown face selection {how!r}; use "largest" or "center"')


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _require_rgb(image: np.ndarray) -> None:
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
    ):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"expected an HxWx3 uint8 RGB array (see load_image), got {dtype} with shape {shape}"
        )
