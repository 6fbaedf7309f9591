"""Does our pipeline still find the faces the baseline finds? Group photos, untimed."""

from collections.abc import Sequence

import numpy as np

from benchmarks.baseline import BaselinePipeline
from face_alignment import load_image
from face_alignment.detection import box_iou
from verification import Verifier

MIN_FACE_PX = 40  # shorter side of the baseline's box
MIN_IOU = 0.5


def baseline_faces(baseline: BaselinePipeline, data: bytes) -> list[np.ndarray]:
    boxes, _ = baseline.detect(load_image(data))
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return list(boxes[sides >= MIN_FACE_PX])


def face_recall(
    verifier: Verifier, baseline: BaselinePipeline, images: Sequence[bytes]
) -> dict[str, float | int]:
    """How many of the baseline's faces of at least MIN_FACE_PX our pipeline also finds
    (a box of ours with IoU >= MIN_IOU), over all ``images``."""
    wanted = found = 0
    for data in images:
        theirs = baseline_faces(baseline, data)
        ours = [face.face.box for face in verifier.embed_faces(data, max_faces=0) if face.face]
        wanted += len(theirs)
        found += sum(any(box_iou(box, mine) >= MIN_IOU for mine in ours) for box in theirs)
    return {
        "min_face_px": MIN_FACE_PX,
        "min_iou": MIN_IOU,
        "baseline_faces": wanted,
        "found_by_ours": found,
        "recall": round(found / wanted, 3) if wanted else 1.0,
    }
