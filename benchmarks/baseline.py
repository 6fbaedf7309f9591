"""The frozen baseline that speed work on /verify is judged against. Do not optimise it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN
from torch import nn

from backbones import load_model
from face_alignment import load_image, warp_face
from verification.distances import pairwise_distances
from verification.embedding import embed_crops, torch_embedder

BASELINE_METRIC = "cosine"


@dataclass(frozen=True)
class BaselineResult:
    distance: float
    match: bool


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class BaselinePipeline:
    """A plain facenet-pytorch + EdgeFace verify: the yardstick for ``ratio`` in the benchmark.

    Definition (frozen; changing any of it changes every ratio ever reported):

    For each of the two encoded images in turn, one image at a time (batch of one):

    1. decode with ``face_alignment.load_image`` at full resolution (no resizing);
    2. detect with ``facenet_pytorch.MTCNN(keep_all=True)``, constructed here with every other
       argument at facenet-pytorch's default (min_face_size=20, thresholds 0.6/0.7/0.7,
       factor 0.709, CPU) and called as ``mtcnn.detect(image, landmarks=True)`` on the
       full-resolution image; this is NOT the project's ``face_alignment.FaceDetector``, which
       speed work is free to change;
    3. keep the face with the largest box area and warp its five landmarks to 112x112 with
       ``face_alignment.warp_face``;
    4. embed that one crop with ``verification.embedding.embed_crops`` on the baseline's own
       copy of the model, loaded with ``backbones.load_model`` (the plain eager network, so
       whatever ``Verifier`` later does to its model leaves the baseline alone);

    then the cosine distance of the two raw embeddings against ``threshold`` decides. Every call
    runs with ``threads`` torch intra-op threads (the benchmark passes its ``--threads``, default
    1, the same count our pipeline gets), whatever the process-wide setting is at the time. An
    image without a face raises ValueError.
    """

    def __init__(self, model: nn.Module, threshold: float, threads: int = 1) -> None:
        self.model = model.eval()
        self.threshold = threshold
        self.threads = threads
        self.mtcnn = MTCNN(keep_all=True).eval()

    @classmethod
    def load(
        cls,
        model_name: str,
        checkpoint_dir: str | os.PathLike | Path,
        threshold: float,
        threads: int = 1,
    ) -> "BaselinePipeline":
        return cls(load_model(model_name, checkpoint_dir), threshold, threads)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (Nx4, x1 y1 x2 y2) and landmarks (Nx5x2) of every face MTCNN finds."""
        boxes, _, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
        return np.asarray(boxes, np.float32), np.asarray(points, np.float32)

    def largest_face_crop(self, data: bytes) -> np.ndarray:
        image = load_image(data)
        boxes, points = self.detect(image)
        if len(boxes) == 0:
            raise ValueError("the baseline found no face in an image")
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return warp_face(image, points[int(np.argmax(areas))])

    def embed(self, data: bytes) -> np.ndarray:
        return embed_crops(torch_embedder(self.model), [self.largest_face_crop(data)])[0]

    def verify(self, image1: bytes, image2: bytes) -> BaselineResult:
        with torch_threads(self.threads):
            first, second = self.embed(image1), self.embed(image2)
        distance = float(pairwise_distances(first, second, BASELINE_METRIC)[0])
        return BaselineResult(distance=distance, match=distance <= self.threshold)
