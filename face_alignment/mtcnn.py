"""MTCNN's three stages in vectorised NumPy around facenet-pytorch's P-, R- and O-Net weights.

facenet-pytorch's ``detect_face`` spends a third of its time outside the networks: it crops
and resizes every candidate box in a Python loop. Here every resize is an exact "area"
resample (what facenet's ``interpolate(mode="area")`` computes) read off one integral image,
so all boxes of a stage are cut in a few array operations, and the answer matches facenet's
to float rounding (``tests/test_alignment.py`` compares them).

The networks are plain callables on NCHW float32 arrays returning NumPy arrays, so the same
code runs them on PyTorch or on ONNX Runtime (see ``face_alignment.networks``).

For verification only the largest face matters, and the costly part of MTCNN is the fine end of
its image pyramid, which looks for small faces. ``detect(..., largest_only=True)`` first runs the
coarse end (faces of at least ``short side / COARSE_FRACTION``); if that finds a face of size F
it adds only the finer scales that look for faces of at least F / 2, and reruns the later stages
on all those candidates. The scales kept are a subset of the full pyramid, so the largest face
comes out as a full detection finds it, without the hundreds of small candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Network = Callable[[np.ndarray], tuple[np.ndarray, ...]]

FACTOR = 0.709  # pyramid step, facenet-pytorch's default
# facenet-pytorch's defaults, which the service keeps: the smallest face searched for (pixels of
# the detection copy) and the P-, R- and O-Net score thresholds.
MIN_FACE_SIZE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
PNET_CELL = 12  # P-Net looks at 12x12 windows with stride 2
# The coarse pass looks for faces of at least this fraction of the image's short side.
COARSE_FRACTION = 8
# ...and the fine scales added after it look for faces down to this fraction of the face found.
FINE_MARGIN = 0.3
# Up to this many boxes ``nms`` works on the whole overlap matrix (faster, n x n memory).
_NMS_MATRIX_MAX = 250


@dataclass(frozen=True)
class MTCNNNets:
    pnet: Network  # 1x3xHxW -> (1x4xH'xW' box offsets, 1x2xH'xW' probabilities)
    rnet: Network  # Nx3x24x24 -> (Nx4 offsets, Nx2 probabilities)
    onet: Network  # Nx3x48x48 -> (Nx4 offsets, Nx10 landmarks, Nx2 probabilities)


@dataclass(frozen=True)
class Detections:
    """Boxes (Nx4 x1 y1 x2 y2), scores (N) and landmarks (Nx5x2), in image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return len(self.scores)


def pyramid_scales(height: int, width: int, min_face_size: float) -> list[float]:
    """facenet-pytorch's scale pyramid: from 12 / min_face_size down while the image >= 12 px."""
    scale = PNET_CELL / min_face_size
    short = min(height, width) * scale
    scales = []
    while short >= PNET_CELL:
        scales.append(scale)
        scale *= FACTOR
        short *= FACTOR
    return scales


class IntegralImage:
    """Sums over any rectangle of an HxWx3 uint8 image in O(1): exact area resampling."""

    def __init__(self, image: np.ndarray) -> None:
        self.height, self.width = image.shape[:2]
        # Channels first, and int32 whenever the image's total cannot overflow it: half the
        # memory traffic of int64, and these sums are most of the non-network time.
        dtype = np.int32 if 255 * self.height * self.width < 2**31 else np.int64
        table = np.zeros((3, self.height + 1, self.width + 1), dtype)
        np.cumsum(image.transpose(2, 0, 1), axis=1, dtype=dtype, out=table[:, 1:, 1:])
        np.cumsum(table[:, 1:, 1:], axis=2, out=table[:, 1:, 1:])
        self.table = table

    def resample(
        self,
        top: np.ndarray,
        left: np.ndarray,
        height: np.ndarray,
        width: np.ndarray,
        size: tuple[int, int],
    ) -> np.ndarray:
        """Nx3xHxW float32: each region (top, left, height, width) area-resampled to ``size``.

        The bins are adaptive average pooling's, which is what torch's ``interpolate(mode="area")``
        computes: bin i of n over a length L spans [floor(i L / n), ceil((i + 1) L / n)).
        """
        rows0, rows1 = _bins(top, height, size[0])
        cols0, cols1 = _bins(left, width, size[1])
        # Flat indices into each channel's table: np.take is ~3x faster than fancy indexing.
        stride = self.width + 1
        r0, r1 = rows0[:, :, None] * stride, rows1[:, :, None] * stride
        c0, c1 = cols0[:, None, :], cols1[:, None, :]
        flat = self.table.reshape(3, -1)
        sums = (
            np.take(flat, r1 + c1, axis=1)
            - np.take(flat, r0 + c1, axis=1)
            - np.take(flat, r1 + c0, axis=1)
            + np.take(flat, r0 + c0, axis=1)
        )
        counts = ((rows1 - rows0)[:, :, None] * (cols1 - cols0)[:, None, :]).astype(np.float32)
        return (sums.astype(np.float32) / counts).transpose(1, 0, 2, 3)


def _bins(start: np.ndarray, length: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(count)
    length = np.asarray(length, np.int64)[:, None]
    first = (i * length) // count
    last = ((i + 1) * length + count - 1) // count
    start = np.asarray(start, np.int64)[:, None]
    return start + first, start + last


def _normalize(pixels: np.ndarray) -> np.ndarray:
    return (pixels - np.float32(127.5)) * np.float32(0.0078125)


def detect(
    image: np.ndarray,
    nets: MTCNNNets,
    min_face_size: float = MIN_FACE_SIZE,
    thresholds: Sequence[float] = THRESHOLDS,
    largest_only: bool = False,
) -> Detections:
    """Every face MTCNN finds in an HxWx3 uint8 RGB image (unordered).

    With ``largest_only`` the search is cut to the scales that can hold the largest face (see
    the module's docstring); faces much smaller than it may be missing from the answer.
    """
    height, width = image.shape[:2]
    scales = pyramid_scales(height, width, min_face_size)
    if not scales:
        return Detections.empty()
    integral = IntegralImage(image)
    proposals: dict[float, np.ndarray] = {}

    def run(chosen: list[float]) -> Detections:
        for scale in chosen:
            if scale not in proposals:
                proposals[scale] = _pnet_proposals(integral, nets.pnet, scale, thresholds[0])
        return _refine(integral, nets, [proposals[s] for s in chosen], thresholds)

    if not largest_only:
        return run(scales)
    # A face of F pixels is found at the scales near PNET_CELL / F.
    coarse_face = min(height, width) / COARSE_FRACTION
    coarse = [s for s in scales if PNET_CELL / s >= coarse_face]
    if not coarse or len(coarse) == len(scales):
        return run(scales)
    found = run(coarse)
    if not len(found):
        return run(scales)
    sizes = np.maximum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
    smallest_wanted = FINE_MARGIN * float(sizes.max())
    chosen = [s for s in scales if PNET_CELL / s >= smallest_wanted]
    # Both lists are the coarse end of one pyramid: the coarse pass already covered ``chosen``.
    return found if len(chosen) <= len(coarse) else run(chosen)


def _pnet_proposals(
    integral: IntegralImage, pnet: Network, scale: float, threshold: float
) -> np.ndarray:
    """One pyramid level's candidates after NMS 0.5: rows x1 y1 x2 y2 score dx1 dy1 dx2 dy2."""
    size = (int(integral.height * scale + 1), int(integral.width * scale + 1))
    zero = np.zeros(1, np.int64)
    level = integral.resample(
        zero, zero, np.array([integral.height]), np.array([integral.width]), size
    )
    offsets, probs = pnet(_normalize(level))
    ys, xs = np.nonzero(probs[0, 1] >= threshold)
    score = probs[0, 1, ys, xs]
    reg = offsets[0][:, ys, xs].T
    cells = np.stack([xs, ys], axis=1).astype(np.float32)
    top_left = np.floor((2 * cells + 1) / scale)
    bottom_right = np.floor((2 * cells + PNET_CELL) / scale)
    boxes = np.concatenate([top_left, bottom_right, score[:, None], reg], axis=1).astype(np.float32)
    return boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)]


def _refine(
    integral: IntegralImage,
    nets: MTCNNNets,
    proposals: list[np.ndarray],
    thresholds: Sequence[float],
) -> Detections:
    """R-Net and O-Net over the P-Net candidates of the chosen scales."""
    boxes = np.concatenate(proposals, axis=0) if proposals else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    if not len(boxes):
        return Detections.empty()
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    candidates = np.stack(
        [
            boxes[:, 0] + boxes[:, 5] * widths,
            boxes[:, 1] + boxes[:, 6] * heights,
            boxes[:, 2] + boxes[:, 7] * widths,
            boxes[:, 3] + boxes[:, 8] * heights,
        ],
        axis=1,
    )
    candidates = _square(candidates)

    # R-Net
    candidates, pixels = _crops(integral, candidates, 24)
    if not len(candidates):
        return Detections.empty()
    offsets, probs = nets.rnet(_normalize(pixels))
    keep = probs[:, 1] > thresholds[1]
    candidates, score, offsets = candidates[keep], probs[keep, 1], offsets[keep]
    pick = nms(candidates, score, 0.7)
    candidates = _square(_regress(candidates[pick], offsets[pick]))

    # O-Net
    candidates, pixels = _crops(integral, candidates, 48)
    if not len(candidates):
        return Detections.empty()
    offsets, points, probs = nets.onet(_normalize(pixels))
    keep = probs[:, 1] > thresholds[2]
    candidates, score, offsets, points = (
        candidates[keep],
        probs[keep, 1],
        offsets[keep],
        points[keep],
    )
    sides = candidates[:, 2:4] - candidates[:, 0:2] + 1
    landmarks = np.stack(
        [
            sides[:, None, 0] * points[:, :5] + candidates[:, None, 0] - 1,
            sides[:, None, 1] * points[:, 5:] + candidates[:, None, 1] - 1,
        ],
        axis=2,
    )
    candidates = _regress(candidates, offsets)
    pick = nms(candidates, score, 0.7, overlap="min")
    return Detections(candidates[pick], score[pick], landmarks[pick])


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    sides = boxes[:, 2:4] - boxes[:, 0:2] + 1
    scale = np.concatenate([sides, sides], axis=1)
    return boxes + offsets[:, :4] * scale


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (facenet's ``rerec``)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32)


def _crops(integral: IntegralImage, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The boxes that overlap the image, and their clipped regions resampled to size x size.

    As in facenet-pytorch, a box is truncated to integers and clipped to the image; the part
    inside is stretched to the square (no black padding).
    """
    whole = np.trunc(boxes).astype(np.int64)
    x0 = np.maximum(whole[:, 0], 1) - 1
    y0 = np.maximum(whole[:, 1], 1) - 1
    x1 = np.minimum(whole[:, 2], integral.width)
    y1 = np.minimum(whole[:, 3], integral.height)
    inside = (x1 > x0) & (y1 > y0)
    if not inside.any():
        return boxes[:0], np.zeros((0, 3, size, size), np.float32)
    x0, y0, x1, y1 = x0[inside], y0[inside], x1[inside], y1[inside]
    pixels = integral.resample(y0, x0, y1 - y0, x1 - x0, (size, size))
    return boxes[inside], pixels


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, overlap: str = "union"
) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first.

    "union" is torchvision's IoU (areas without the +1); "min" is MTCNN's last step, the
    intersection over the smaller box with +1 pixel areas, as facenet-pytorch computes it.
    """
    if not len(boxes):
        return np.zeros(0, np.int64)
    plus = 1.0 if overlap == "min" else 0.0
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order, :4].astype(np.float64).T
    areas = (x2 - x1 + plus) * (y2 - y1 + plus)
    # Rows x1 y1 x2 y2 area, columns the boxes best score first: gathering boxes then reads
    # five contiguous rows.
    ranked = np.stack([x1, y1, x2, y2, areas])
    if len(order) > _NMS_MATRIX_MAX:
        return order[_nms_shrinking(ranked, plus, threshold, overlap)]
    # The whole overlap matrix in a few array operations, then a cheap greedy pass: the
    # Python-level work holds the GIL, and two requests run at once on two cores.
    overlapping = _overlap(ranked[:, :, None], ranked[:, None, :], plus, overlap) > threshold
    keep = []
    suppressed = np.zeros(len(order), bool)
    for index in range(len(order)):
        if not suppressed[index]:  # by a kept box with a better score
            keep.append(index)
            suppressed |= overlapping[index]
    return order[np.asarray(keep, np.int64)]


def _nms_shrinking(ranked: np.ndarray, plus: float, threshold: float, overlap: str) -> np.ndarray:
    """The same greedy pass for many boxes (sorted best first), without an n x n matrix."""
    order = np.arange(ranked.shape[1])
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        # Row by row: five 1-D gathers are faster than one 2-D gather of the same numbers.
        others = [row[rest] for row in ranked]
        order = rest[_overlap(ranked[:, best], others, plus, overlap) <= threshold]
    return np.asarray(keep, np.int64)


def _overlap(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], plus: float, overlap: str
) -> np.ndarray:
    """Overlap of boxes ``a`` with boxes ``b`` (first axis x1 y1 x2 y2 area; the rest
    broadcast together)."""
    inter_w = np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]) + plus
    inter_h = np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]) + plus
    inter = np.maximum(inter_w, 0.0) * np.maximum(inter_h, 0.0)
    if overlap == "min":
        return inter / np.minimum(a[4], b[4])
    return inter / (a[4] + b[4] - inter)
