"""What the HTTP routes and ``python -m gallery`` both do with an image: find its faces
(``gallery_faces``, the worker's part), enroll one (quality rules, image hash) and shape the
answers, so the two front ends cannot drift apart."""

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from gallery.records import Face, Match, Subject, check_quality
from gallery.store import Gallery
from verification import Verifier
from verification.answers import face_answer

Answer = dict[str, Any]
DEFAULT_MIN_FACE_SIZE = 40.0
DEFAULT_MIN_SCORE = 0.9


def gallery_faces(verifier: Verifier, image: bytes, max_faces: int) -> Answer:
    """The faces the gallery stores or searches, largest first: box, score and the unit
    embedding as float32 (for the search; answers never carry it)."""
    faces = verifier.embed_faces(image, "image", max_faces)
    return {
        "face_count": faces[0].face_count,
        "faces": [
            {**face_answer(f), "embedding": f.unit_embedding.astype(np.float32)} for f in faces
        ],
    }


def enroll_face(
    gallery: Gallery,
    subject: str,
    face: dict,
    image: bytes,
    min_face_size: float = DEFAULT_MIN_FACE_SIZE,
    min_score: float = DEFAULT_MIN_SCORE,
    create_subject: bool = False,
) -> Face:
    """Refuse a low-quality face (``LowQualityError``), else store it with the SHA-256 of the
    image bytes (the image itself is never stored)."""
    check_quality(face["box"], face["score"], min_face_size, min_score)
    digest = hashlib.sha256(image).hexdigest()
    return gallery.add_face(
        subject, face["embedding"], face["box"], face["score"], digest, create_subject
    )


def face_record(face: Face) -> Answer:
    return {
        "face_id": face.id,
        "box": list(face.box),
        "score": face.score,
        "image_sha256": face.image_sha256,
        "model": face.model,
        "checkpoint_sha256": face.checkpoint_sha256,
        "created": face.created,
    }


def subject_record(subject: Subject, faces: bool = False) -> Answer:
    record: Answer = {
        "subject": subject.id,
        "metadata": subject.metadata,
        "created": subject.created,
        "updated": subject.updated,
        "face_count": subject.face_count,
    }
    if faces:
        record["faces"] = [face_record(f) for f in subject.faces]
    return record


def identified(matches: Sequence[Match], threshold: float) -> str | None:
    """The best candidate when within the threshold, else None (unknown)."""
    return matches[0].subject if matches and matches[0].distance <= threshold else None


def identify_answer(
    faces: Sequence[dict],
    results: Sequence[Sequence[Match]],
    threshold: float,
    far: float | None,
    model: str,
    face_count: int,
) -> Answer:
    """The answer of POST /gallery/identify and ``python -m gallery identify``."""
    return {
        "model": model,
        "threshold": threshold,
        "far": far,
        "face_count": face_count,
        "faces": [
            {
                "box": face["box"],
                "score": face["score"],
                "subject": identified(matches, threshold),
                "candidates": [
                    {"subject": m.subject, "distance": round(m.distance, 6), "face_id": m.face_id}
                    for m in matches
                ],
            }
            for face, matches in zip(faces, results, strict=True)
        ],
    }
