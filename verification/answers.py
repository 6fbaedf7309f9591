"""Plain-dict answers of the pipeline: what the HTTP API returns and the command line prints.

Both front ends shape their output here, so they cannot drift apart. Every value is a JSON type.
"""

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from verification.pipeline import FaceEmbedding, Verification

Answer = dict[str, Any]


def crop_png_base64(crop: np.ndarray) -> str:
    """An aligned HxWx3 uint8 RGB crop as a base64 PNG (no ``data:`` prefix)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8), mode="RGB").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def embedding_values(found: FaceEmbedding) -> list[float]:
    """The L2-normalised embedding as floats, each the shortest decimal of its float32 value.

    ``str(np.float32)`` round-trips exactly, so nothing is lost and the JSON stays compact.
    """
    return [float(str(value)) for value in found.unit_embedding.astype(np.float32)]


def face_answer(
    found: FaceEmbedding, face_count: bool = False, embedding: bool = False, crop: bool = False
) -> Answer:
    """Where the face is: box, detector score and the five landmarks (plus what was asked)."""
    face = found.face
    if face is None:
        raise ValueError("answers describe detected faces; this one came from the centre fallback")
    answer: Answer = {
        "box": [round(float(v), 2) for v in face.box],
        "score": round(float(face.score), 5),
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
    }
    if face_count:
        answer["face_count"] = found.face_count
    if embedding:
        answer["embedding"] = embedding_values(found)
    if crop:
        answer["crop"] = crop_png_base64(found.crop)
    return answer


def verification_answer(result: Verification, return_crops: bool = False) -> Answer:
    """The answer of POST /verify and ``python -m verification verify``."""
    first, second = result.faces
    return {
        "match": result.match,
        "distance": round(result.distance, 6),
        "threshold": result.threshold,
        "far": result.far,
        "metric": result.metric,
        "model": result.model,
        "image1": face_answer(first, face_count=True, crop=return_crops),
        "image2": face_answer(second, face_count=True, crop=return_crops),
    }


def embedding_answer(
    faces: Sequence[FaceEmbedding], model: str, return_crops: bool = False
) -> Answer:
    """The answer of POST /embed and ``python -m verification embed``: faces largest first."""
    return {
        "model": model,
        "face_count": faces[0].face_count if faces else 0,
        "faces": [face_answer(found, embedding=True, crop=return_crops) for found in faces],
    }


def face_counts(answer: Answer) -> list[int]:
    """Faces found per image of an answer (for logs and metrics, which never see embeddings)."""
    if "faces" in answer:
        return [answer["face_count"]]
    return [answer["image1"]["face_count"], answer["image2"]["face_count"]]
