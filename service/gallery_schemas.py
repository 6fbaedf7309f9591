"""Request and response models of the gallery routes (/gallery/...), as /docs shows them.

Image requests come as multipart/form-data (``*Form``) or JSON with base64 (``*JSON``), like
/verify; subject requests are JSON.
"""

from typing import Annotated, Any

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from gallery.records import MAX_METADATA_BYTES, MAX_TOP_K, SUBJECT_ID_RULE
from service.schemas import (
    BASE64_IMAGE,
    IMAGE_FORMATS,
    Box,
    FarOption,
    FormFarOption,
    FormThresholdOption,
    MaxFaces,
    Score,
    ThresholdOption,
    _no_null_default,
    _threshold_or_far,
)

SubjectId = Annotated[str, Field(description=f"the subject's id: {SUBJECT_ID_RULE}")]
Metadata = Annotated[
    dict[str, Any], Field(description=f"any JSON object, at most {MAX_METADATA_BYTES} bytes")
]
CreateSubject = Annotated[bool, Field(description="create the subject when it does not exist")]
TopK = Annotated[
    int, Field(ge=1, le=MAX_TOP_K, description="how many closest subjects to list per face")
]
IDENTIFY_THRESHOLD = (
    "identified when the closest subject's distance <= threshold; default: calibrated at "
    "false-match rate 1e-4 (see README, Gallery: thresholds and gallery size)"
)


class SubjectCreate(BaseModel):
    """application/json body of POST /gallery/subjects."""

    model_config = ConfigDict(extra="forbid")

    subject: SubjectId
    metadata: Metadata | None = None


class SubjectPatch(BaseModel):
    """application/json body of PATCH /gallery/subjects/{subject}: replaces the metadata."""

    model_config = ConfigDict(extra="forbid")

    metadata: Metadata


class EnrollForm(BaseModel):
    """multipart/form-data body of POST /gallery/subjects/{subject}/faces."""

    image: UploadFile = Field(description=f"a photo of the subject ({IMAGE_FORMATS})")
    create_subject: CreateSubject = False


class EnrollJSON(BaseModel):
    """application/json body of POST /gallery/subjects/{subject}/faces."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description=f"a photo of the subject: {BASE64_IMAGE}")
    create_subject: CreateSubject = False


class IdentifyForm(BaseModel):
    """multipart/form-data body of POST /gallery/identify."""

    model_config = ConfigDict(json_schema_extra=_no_null_default)

    image: UploadFile = Field(description=f"the photo ({IMAGE_FORMATS})")
    max_faces: MaxFaces = 1
    top_k: TopK = 5
    threshold: FormThresholdOption = None
    far: FormFarOption = None


class IdentifyJSON(BaseModel):
    """application/json body of POST /gallery/identify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_threshold_or_far)

    image: str = Field(description=f"the photo: {BASE64_IMAGE}")
    max_faces: MaxFaces = 1
    top_k: TopK = 5
    threshold: ThresholdOption = None
    far: FarOption = None


class SubjectVerifyForm(BaseModel):
    """multipart/form-data body of POST /gallery/subjects/{subject}/verify."""

    model_config = ConfigDict(json_schema_extra=_no_null_default)

    image: UploadFile = Field(description=f"the photo ({IMAGE_FORMATS})")
    threshold: FormThresholdOption = None
    far: FormFarOption = None


class SubjectVerifyJSON(BaseModel):
    """application/json body of POST /gallery/subjects/{subject}/verify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_threshold_or_far)

    image: str = Field(description=f"the photo: {BASE64_IMAGE}")
    threshold: ThresholdOption = None
    far: FarOption = None


class FaceRecord(BaseModel):
    face_id: str
    box: Box
    score: Score
    image_sha256: str = Field(description="SHA-256 of the uploaded image bytes")
    model: str
    checkpoint_sha256: str
    created: str


class SubjectRecord(BaseModel):
    subject: SubjectId
    metadata: dict[str, Any]
    created: str
    updated: str
    face_count: int
    faces: list[FaceRecord] | None = Field(None, description="only from GET of one subject")


class SubjectPage(BaseModel):
    subjects: list[SubjectRecord]
    next_cursor: str | None = Field(
        None, description="pass as cursor for the next page; absent on the last page"
    )


class EnrollResponse(BaseModel):
    subject: SubjectId
    face: FaceRecord
    face_count: int = Field(description="faces found in the image; the largest was enrolled")


class Candidate(BaseModel):
    subject: SubjectId
    distance: float = Field(description="cosine distance to the subject's closest face")
    face_id: str = Field(description="that closest face")


class IdentifiedFace(BaseModel):
    box: Box
    score: Score
    subject: str | None = Field(description="the best candidate within the threshold; else null")
    candidates: list[Candidate] = Field(description="closest subjects first, each once")


class IdentifyResponse(BaseModel):
    model: str
    threshold: float
    far: float | None = Field(description="the false-match rate the threshold stands for")
    face_count: int = Field(description="faces found in the image (all, not only listed)")
    faces: list[IdentifiedFace]


class DetectedFace(BaseModel):
    box: Box
    score: Score


class SubjectVerifyResponse(BaseModel):
    subject: SubjectId
    match: bool = Field(description="true when distance <= threshold")
    distance: float = Field(description="cosine distance to the subject's closest face")
    face_id: str
    threshold: float
    far: float | None
    model: str
    face: DetectedFace


REQUEST_MODELS = (
    EnrollForm,
    EnrollJSON,
    IdentifyForm,
    IdentifyJSON,
    SubjectVerifyForm,
    SubjectVerifyJSON,
)
