"""Face detection with facenet-pytorch's MTCNN (weights ship inside the pip package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from facenet_pytorch import MTCNN


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


class FaceDetector:
    """Finds every face in an RGB image. Safe to share between threads."""

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        device: str = "cpu",
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.device = device
        self._mtcnn = MTCNN(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=list(self.thresholds),
            device=device,
        ).eval()

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face in an HxWx3 uint8 RGB image, largest box first; [] when there is none."""
        _require_rgb(image)
        # MTCNN's scale pyramid is empty below this size and it would crash on torch.cat([]).
        if min(image.shape[:2]) < self.min_face_size:
            return []
        with torch.inference_mode():
            boxes, scores, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        faces = [
            DetectedFace(box=tuple(box), score=score, landmarks=np.asarray(lm, dtype=np.float32))
            for box, score, lm in zip(boxes, scores, points, strict=True)
        ]
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_face_size={self.min_face_size}, "
            f"thresholds={self.thresholds}, device={self.device!r})"
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
