"""Request and response models of the HTTP API (they are what /docs shows).

Each request comes as multipart/form-data (``*Form``: files) or application/json (``*JSON``:
base64 strings) with the same options. Responses validate the dicts of ``verification.answers``.
"""

from typing import Annotated, Literal

from fastapi import UploadFile
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from verification import Metric
from verification.pipeline import FaceChoice
from verification.thresholds import FARS

IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, TIFF, GIF"
BASE64_IMAGE = (
    "the photo's bytes in base64 (standard alphabet, padded; line breaks ignored), plain or as "
    "a data:image/...;base64, URI. URLs and file paths are not accepted."
)
CROP = "the aligned 112x112 RGB face as a base64 PNG; only with return_crops"


MetricOption = Annotated[Metric, Field(description="distance between the two embeddings")]
ThresholdOption = Annotated[
    float | None,
    Field(
        ge=0,
        allow_inf_nan=False,
        description="match when distance <= threshold; default: calibrated for model and metric",
    ),
]


def _blank_is_absent(value: object) -> object:
    # An HTML form sends an empty field for "not given"; a form has no spelling of null.
    return None if value == "" else value


# Multipart has no null, so the form documents an optional number (absent or empty: default).
FormThresholdOption = Annotated[
    ThresholdOption,
    BeforeValidator(_blank_is_absent),
    WithJsonSchema({"type": "number", "minimum": 0}),
]


def _calibrated_far(value: float | None) -> float | None:
    if value is None:
        return None
    match = next((far for far in FARS if abs(far - value) <= 1e-9 * far), None)
    if match is None:
        raise ValueError(f"far must be one of {', '.join(f'{far:g}' for far in FARS)}")
    return match


FAR_DESCRIPTION = (
    "instead of threshold: use the threshold calibrated at this false-match rate (share of "
    "different-person pairs accepted, measured on LFW DevTrain)"
)
FarOption = Annotated[
    float | None,
    AfterValidator(_calibrated_far),
    Field(description=FAR_DESCRIPTION, json_schema_extra={"enum": [*FARS, None]}),
]
FormFarOption = Annotated[
    FarOption,
    BeforeValidator(_blank_is_absent),
    WithJsonSchema({"type": "number", "enum": list(FARS), "description": FAR_DESCRIPTION}),
]


def _threshold_or_far(schema: dict) -> None:
    # The document says what the server enforces: at most one of the two.
    schema["not"] = {"required": ["threshold", "far"]}


def _no_null_default(schema: dict) -> None:
    schema["properties"]["threshold"].pop("default", None)
    schema["properties"]["far"].pop("default", None)
    _threshold_or_far(schema)


ReturnCrops = Annotated[bool, Field(description="add each aligned face crop as a base64 PNG")]
FaceOption = Annotated[
    FaceChoice,
    Field(
        description="which face of each photo to compare: the largest, or the one nearest the "
        "photo's centre (LFW-style crops, where a bigger face may stand behind the subject)"
    ),
]
MaxFaces = Annotated[int, Field(ge=0, description="the largest N faces; 0: every face")]


class VerifyForm(BaseModel):
    """multipart/form-data body of POST /verify."""

    model_config = ConfigDict(json_schema_extra=_no_null_default)

    image1: UploadFile = Field(description=f"first photo ({IMAGE_FORMATS})")
    image2: UploadFile = Field(description="second photo")
    metric: MetricOption = "cosine"
    threshold: FormThresholdOption = None
    far: FormFarOption = None
    face: FaceOption = "largest"
    return_crops: ReturnCrops = False


class VerifyJSON(BaseModel):
    """application/json body of POST /verify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_threshold_or_far)

    image1: str = Field(description=f"first photo: {BASE64_IMAGE}")
    image2: str = Field(description="second photo, as image1")
    metric: MetricOption = "cosine"
    threshold: ThresholdOption = None
    far: FarOption = None
    face: FaceOption = "largest"
    return_crops: ReturnCrops = False


class EmbedForm(BaseModel):
    """multipart/form-data body of POST /embed."""

    image: UploadFile = Field(description=f"the photo ({IMAGE_FORMATS})")
    max_faces: MaxFaces = 1
    return_crops: ReturnCrops = False


class EmbedJSON(BaseModel):
    """application/json body of POST /embed."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description=f"the photo: {BASE64_IMAGE}")
    max_faces: MaxFaces = 1
    return_crops: ReturnCrops = False


Box = Annotated[
    list[float], Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in image pixels")
]
Score = Annotated[float, Field(description="detector confidence, 0..1")]
Landmarks = Annotated[
    list[list[float]],
    Field(
        min_length=5,
        max_length=5,
        description="left eye, right eye, nose, left and right mouth corners as [x, y]",
    ),
]
Crop = Annotated[str | None, Field(description=CROP)]


class FaceInfo(BaseModel):
    box: Box
    score: Score
    landmarks: Landmarks
    face_count: int = Field(ge=1, description="faces found in the image; one is used (face)")
    crop: Crop = None


class VerifyResponse(BaseModel):
    match: bool = Field(description="true when distance <= threshold")
    distance: float
    threshold: float
    far: float | None = Field(
        description="the false-match rate the threshold stands for on LFW DevTrain (for the "
        "default threshold, its measured rate); null for a threshold the caller gave"
    )
    metric: Metric
    model: str
    image1: FaceInfo
    image2: FaceInfo


class EmbeddedFace(BaseModel):
    box: Box
    score: Score
    landmarks: Landmarks
    embedding: list[float] = Field(
        min_length=512, max_length=512, description="L2-normalised 512-d EdgeFace embedding"
    )
    crop: Crop = None


class EmbedResponse(BaseModel):
    model: str
    face_count: int = Field(ge=1, description="faces found in the image (all, not only listed)")
    faces: list[EmbeddedFace] = Field(description="at most max_faces faces, largest first")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in a sentence")
    code: str = Field(description="machine-readable kind, e.g. no_face, invalid_image")
    field: str | None = Field(None, description="the input it is about, e.g. image1")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessResponse(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str
    reason: str | None = Field(None, description="why the service is not ready (only then)")
