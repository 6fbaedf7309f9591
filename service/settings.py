"""Every knob of the service, read from ``EDGEFACE_*`` environment variables or the CLI.

This is the only place the service reads its environment; everything below it takes these
values as arguments. The defaults are the library's own constants.
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backbones.catalog import DEFAULT_MODEL
from environment import (
    DEFAULT_CHECKPOINT_DIR,
    default_data_dir,
    default_gallery_url,
    default_onnx_dir,
)
from face_alignment import DECODE_MEMORY_KEPT_MB, DEFAULT_MAX_PIXELS, DETECT_MAX_SIDE
from gallery.operations import DEFAULT_MIN_FACE_SIZE, DEFAULT_MIN_SCORE
from gallery.store import DEFAULT_EF_SEARCH
from verification.runtime import Runtime

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFACE_", extra="ignore")

    model: str = Field(DEFAULT_MODEL, description="EdgeFace variant to serve")
    checkpoint_dir: Path = Field(DEFAULT_CHECKPOINT_DIR, description="folder holding <model>.pt")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535)
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="per image, in bytes (decoded bytes for base64)"
    )
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="per image, width x height")
    # One thread per request and one request per core: MTCNN's many small operations scale
    # poorly across threads, so concurrent requests use the cores better than one request
    # split over them (README, Performance).
    workers: int = Field(max(1, os.cpu_count() or 1), ge=1, description="requests computed at once")
    # Separate processes share no GIL, so they serve concurrent clients better than threads of
    # one process, for about 0.2 GB more memory per extra worker (README, Performance).
    worker_mode: Literal["processes", "threads"] = Field(
        "processes", description="run each of the workers in its own process, or as threads"
    )
    # README, Robustness: bad input is answered while the workers are busy.
    worker_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="worker processes run this much nicer (lower CPU priority) than the server",
    )
    # README, Robustness: a large upload decodes with up to 40% less CPU with freed heap kept.
    decode_memory_kept_mb: int = Field(
        DECODE_MEMORY_KEPT_MB,
        ge=0,
        le=4096,
        description="freed heap each decoding process keeps for the next upload (0: give it back)",
    )
    threads: int = Field(1, ge=1, description="intra-op threads of each network call")
    runtime: Runtime = Field(
        "auto", description="onnx, torch, or auto (ONNX Runtime when installed)"
    )
    onnx_dir: Path = Field(
        default_factory=default_onnx_dir,
        description="cache of the ONNX exports (written once per checkpoint)",
    )
    detect_max_side: int = Field(
        DETECT_MAX_SIDE,
        ge=160,
        description="face detection runs on a copy at most this many pixels long",
    )
    log_level: LogLevel = Field("info", description="uvicorn and service log level")
    api_key: SecretStr | None = Field(
        None, description="when set, X-API-Key or Authorization: Bearer must carry it"
    )

    data_dir: Path = Field(
        default_factory=default_data_dir, description="the service's state (the SQLite gallery)"
    )
    gallery_url: str | None = Field(
        None,
        description="sqlite:///PATH or postgresql://...; default sqlite:///<data_dir>/gallery.db",
    )
    gallery_min_face_size: float = Field(
        DEFAULT_MIN_FACE_SIZE,
        ge=0,
        description="enrollment refuses faces shorter than this (px, original image)",
    )
    gallery_min_score: float = Field(
        DEFAULT_MIN_SCORE,
        ge=0,
        le=1,
        description="enrollment refuses faces detected with a lower score",
    )
    gallery_ef_search: int = Field(
        DEFAULT_EF_SEARCH, ge=1, le=1000, description="PostgreSQL hnsw.ef_search"
    )

    @property
    def gallery_location(self) -> str:
        return self.gallery_url or default_gallery_url(self.data_dir)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_key", mode="after")
    @classmethod
    def _empty_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        # EDGEFACE_API_KEY= (empty, as docker -e often leaves it) means "no key", not "key ''".
        return value if value is not None and value.get_secret_value() else None
