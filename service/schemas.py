"""Request and response models of the HTTP API (they are what /docs shows)."""

from fastapi import UploadFile
from pydantic import BaseModel, Field

from verification import Metric


class VerifyForm(BaseModel):
    """multipart/form-data body of POST /verify."""

    image1: UploadFile = Field(description="first photo (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    image2: UploadFile = Field(description="second photo")
    metric: Metric = Field("cosine", description="distance between the two embeddings")
    threshold: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="match when distance <= threshold; default: calibrated for model and metric",
    )


class FaceInfo(BaseModel):
    box: list[float] = Field(
        min_length=4, max_length=4, description="x1, y1, x2, y2 in image pixels"
    )
    score: float = Field(description="detector confidence, 0..1")
    landmarks: list[list[float]] = Field(
        min_length=5,
        max_length=5,
        description="left eye, right eye, nose, left and right mouth corners as [x, y]",
    )
    face_count: int = Field(ge=1, description="faces found in the image; the largest is used")


class VerifyResponse(BaseModel):
    match: bool = Field(description="true when distance <= threshold")
    distance: float
    threshold: float
    metric: Metric
    model: str
    image1: FaceInfo
    image2: FaceInfo


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in a sentence")
    code: str = Field(description="machine-readable kind, e.g. no_face, invalid_image")
    field: str | None = Field(None, description="the input it is about, e.g. image1")
