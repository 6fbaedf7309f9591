"""The gallery routes (/gallery/...): enroll faces of subjects, identify faces among them.

The worker processes (or threads) only compute embeddings (the ``enroll`` and ``identify``
jobs); the search and every write run here, in the server process, on threads so the event
loop never waits for them. The same conventions as /verify: multipart or JSON with base64, the
error shape of ``service.errors``, behind the API key.
"""

import logging
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response

from backbones.catalog import checkpoint_path, file_sha256
from gallery import Gallery
from gallery.operations import enroll_face, face_record, identify_answer, subject_record
from gallery.records import check_subject_id
from gallery.thresholds import operating_point
from service.dependencies import ComputeDep, LimiterDep, SettingsDep
from service.gallery_schemas import (
    EnrollForm,
    EnrollJSON,
    EnrollResponse,
    IdentifyForm,
    IdentifyJSON,
    IdentifyResponse,
    SubjectCreate,
    SubjectPage,
    SubjectPatch,
    SubjectRecord,
    SubjectVerifyForm,
    SubjectVerifyJSON,
    SubjectVerifyResponse,
)
from service.inputs import read_images
from service.jobs import JobOptions
from service.openapi import request_body
from service.routes import ERROR_RESPONSES
from service.schemas import ErrorResponse
from service.settings import Settings
from verification.thresholds import Thresholds

log = logging.getLogger("edgeface.gallery")
router = APIRouter(prefix="/gallery", tags=["gallery"])


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


# Every gallery route documents the statuses any request may get (400 a body that is not JSON,
# 503 while loading, ...), plus its own.
NOT_FOUND = {404: _error("No such subject (or face)")}
SUBJECT_RESPONSES = {
    **ERROR_RESPONSES,
    **NOT_FOUND,
    422: _error("An invalid subject id, metadata or field"),
}
IMAGE_RESPONSES = {
    **ERROR_RESPONSES,
    **NOT_FOUND,
    422: _error("No face, a low-quality face (code low_quality), or an invalid field"),
}


def open_service_gallery(settings: Settings) -> Gallery:
    """The gallery of ``settings``, bound to the served model and the SHA-256 of its weights;
    raises ``GalleryError`` (e.g. another model's faces) with a sentence for the operator."""
    sha = file_sha256(checkpoint_path(settings.model, settings.checkpoint_dir))
    gallery = Gallery.open(
        settings.gallery_location, settings.model, sha, ef_search=settings.gallery_ef_search
    )
    log.info("gallery %s: %d faces", gallery.url, gallery.face_count())
    return gallery


async def get_gallery(request: Request, compute: ComputeDep) -> Gallery:
    # ComputeDep answers 503 until startup finished, and the gallery opens before that.
    return request.app.state.gallery


async def get_thresholds(request: Request, compute: ComputeDep) -> Thresholds:
    """The model's calibrated thresholds, read at startup (as the gallery, before readiness)."""
    return request.app.state.thresholds


GalleryDep = Annotated[Gallery, Depends(get_gallery)]
ThresholdsDep = Annotated[Thresholds, Depends(get_thresholds)]


@dataclass(frozen=True)
class Probe:
    """The faces the worker found in one upload, with their unit embeddings."""

    face_count: int
    faces: list[dict]

    @property
    def embeddings(self) -> np.ndarray:
        return np.stack([face["embedding"] for face in self.faces])


async def _faces(request: Request, compute: ComputeDep, job: str, image: bytes, max_faces: int):
    answer = await compute.run(job, {"image": image}, JobOptions(max_faces=max_faces))
    request.state.face_counts = [answer["face_count"]]
    return Probe(answer["face_count"], answer["faces"])


@router.post(
    "/subjects",
    status_code=201,
    response_model=SubjectRecord,
    response_model_exclude_none=True,
    responses={**SUBJECT_RESPONSES, 409: _error("The subject exists")},
    summary="Create a subject",
)
async def create_subject(body: SubjectCreate, gallery: GalleryDep) -> dict:
    subject = await to_thread.run_sync(gallery.create_subject, body.subject, body.metadata)
    return subject_record(subject)


@router.get(
    "/subjects",
    response_model=SubjectPage,
    response_model_exclude_none=True,
    responses=SUBJECT_RESPONSES,
    summary="List subjects, in id order, with their face counts",
)
async def list_subjects(
    gallery: GalleryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict:
    page, next_cursor = await to_thread.run_sync(gallery.list_subjects, limit, cursor)
    return {"subjects": [subject_record(s) for s in page], "next_cursor": next_cursor}


@router.get(
    "/subjects/{subject}",
    response_model=SubjectRecord,
    response_model_exclude_none=True,
    responses=SUBJECT_RESPONSES,
    summary="A subject, with its enrolled faces (never their embeddings or images)",
)
async def get_subject(subject: str, gallery: GalleryDep) -> dict:
    return subject_record(await to_thread.run_sync(gallery.get_subject, subject), faces=True)


@router.patch(
    "/subjects/{subject}",
    response_model=SubjectRecord,
    response_model_exclude_none=True,
    responses=SUBJECT_RESPONSES,
    summary="Replace a subject's metadata",
)
async def patch_subject(subject: str, body: SubjectPatch, gallery: GalleryDep) -> dict:
    updated = await to_thread.run_sync(gallery.update_subject, subject, body.metadata)
    return subject_record(updated, faces=True)


@router.delete(
    "/subjects/{subject}",
    status_code=204,
    response_class=Response,
    responses=SUBJECT_RESPONSES,
    summary="Delete a subject and all its faces (their embeddings are erased)",
)
async def delete_subject(subject: str, gallery: GalleryDep) -> Response:
    await to_thread.run_sync(gallery.delete_subject, subject)
    return Response(status_code=204)


@router.post(
    "/subjects/{subject}/faces",
    status_code=201,
    response_model=EnrollResponse,
    responses={**IMAGE_RESPONSES, 409: _error("These image bytes are enrolled already")},
    summary="Enroll the largest face of a photo",
    openapi_extra=request_body(EnrollForm, EnrollJSON),
)
async def enroll(
    subject: str,
    request: Request,
    settings: SettingsDep,
    compute: ComputeDep,
    limiter: LimiterDep,
    gallery: GalleryDep,
) -> dict:
    """Stores the face's embedding, box, score and the SHA-256 of the image bytes; never the
    image. Refuses (422 low_quality) a face smaller than the configured size or with a lower
    detection score, and (409) the same image bytes twice for one subject.
    """
    check_subject_id(subject)
    options, images = await read_images(
        request,
        EnrollForm,
        EnrollJSON,
        ("image",),
        settings.max_upload_bytes,
        settings.max_pixels,
        limiter,
    )
    if not options.create_subject:  # 404 before the seconds of computing
        await to_thread.run_sync(gallery.get_subject, subject)
    probe = await _faces(request, compute, "enroll", images["image"], 1)
    face = await to_thread.run_sync(
        enroll_face,
        gallery,
        subject,
        probe.faces[0],
        images["image"],
        settings.gallery_min_face_size,
        settings.gallery_min_score,
        options.create_subject,
    )
    return {"subject": subject, "face": face_record(face), "face_count": probe.face_count}


@router.delete(
    "/subjects/{subject}/faces/{face_id}",
    status_code=204,
    response_class=Response,
    responses=SUBJECT_RESPONSES,
    summary="Delete one enrolled face (its embedding is erased)",
)
async def delete_face(subject: str, face_id: str, gallery: GalleryDep) -> Response:
    await to_thread.run_sync(gallery.delete_face, subject, face_id)
    return Response(status_code=204)


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    responses=IMAGE_RESPONSES,
    summary="Who is this? The closest enrolled subjects of every face in a photo",
    openapi_extra=request_body(IdentifyForm, IdentifyJSON),
)
async def identify(
    request: Request,
    settings: SettingsDep,
    compute: ComputeDep,
    limiter: LimiterDep,
    gallery: GalleryDep,
    thresholds: ThresholdsDep,
) -> dict:
    """For each face (``max_faces``: 1 the largest, 0 all), the ``top_k`` closest subjects, each
    once with its closest face; ``subject`` is the first when within the threshold, else null.
    The default threshold is calibrated at false-match rate 1e-4 (README, Gallery).
    """
    options, images = await read_images(
        request,
        IdentifyForm,
        IdentifyJSON,
        ("image",),
        settings.max_upload_bytes,
        settings.max_pixels,
        limiter,
    )
    point = operating_point(thresholds, options.threshold, options.far)
    probe = await _faces(request, compute, "identify", images["image"], options.max_faces)
    results = await to_thread.run_sync(gallery.identify, probe.embeddings, options.top_k)
    return identify_answer(
        probe.faces, results, point.threshold, point.far, settings.model, probe.face_count
    )


@router.post(
    "/subjects/{subject}/verify",
    response_model=SubjectVerifyResponse,
    responses=IMAGE_RESPONSES,
    summary="Is the largest face of a photo this subject?",
    openapi_extra=request_body(SubjectVerifyForm, SubjectVerifyJSON),
)
async def verify_subject(
    subject: str,
    request: Request,
    settings: SettingsDep,
    compute: ComputeDep,
    limiter: LimiterDep,
    gallery: GalleryDep,
    thresholds: ThresholdsDep,
) -> dict:
    """The distance to the subject's closest enrolled face against the threshold (by default
    the one calibrated at false-match rate 1e-4, like identification)."""
    check_subject_id(subject)
    options, images = await read_images(
        request,
        SubjectVerifyForm,
        SubjectVerifyJSON,
        ("image",),
        settings.max_upload_bytes,
        settings.max_pixels,
        limiter,
    )
    point = operating_point(thresholds, options.threshold, options.far)
    await to_thread.run_sync(gallery.get_subject, subject)  # 404 before computing
    probe = await _faces(request, compute, "enroll", images["image"], 1)
    found = probe.faces[0]
    match = await to_thread.run_sync(gallery.verify, subject, found["embedding"])
    return {
        "subject": subject,
        "match": match.distance <= point.threshold,
        "distance": round(match.distance, 6),
        "face_id": match.face_id,
        "threshold": point.threshold,
        "far": point.far,
        "model": settings.model,
        "face": {"box": found["box"], "score": found["score"]},
    }
