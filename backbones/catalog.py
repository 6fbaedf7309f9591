"""The model table: every EdgeFace variant's facts in one place, looked up by name. No torch.

Like timm's ``default_cfgs``, a model is data: its timm backbone, its LoRALin rank ratio, its
checkpoint file with the official SHA-256 and where to download it, and what the paper reports.
``backbones.edgeface`` builds models from these rows; the download, the checkpoint checks, the
ONNX cache names and the service all read them here. The ONNX Runtime serving path never
imports torch, so this module does not either.
"""

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

EMBEDDING_SIZE = 512
DEFAULT_MODEL = "edgeface_s_gamma_05"

# Idiap's GitLab first: the upstream hubconf.py loads from there.
OFFICIAL_SOURCES: tuple[str, ...] = (
    "https://gitlab.idiap.ch/bob/bob.paper.tbiom2023_edgeface/-/raw/master/checkpoints",
    "https://github.com/otroshi/edgeface/raw/main/checkpoints",
)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backbone: str  # timm model name
    gamma: float | None = None  # LoRALin rank ratio; None keeps full-rank Linear layers
    sha256: str | None = None  # of the official checkpoint file; None when unknown
    published: bool = True  # whether the official sources have the checkpoint
    lfw: float | None = None  # LFW accuracy (%) in the official README
    params_m: float | None = None  # parameters (millions) reported by the paper
    mflops: float | None = None  # as reported by the paper

    @property
    def checkpoint_file(self) -> str:
        return f"{self.name}.pt"

    @property
    def urls(self) -> tuple[str, ...]:
        """Where the official checkpoint can be downloaded, in the order to try."""
        if not self.published:
            return ()
        return tuple(f"{base}/{self.checkpoint_file}" for base in OFFICIAL_SOURCES)


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "edgeface_base", "edgenext_base",
            published=False, lfw=99.83, params_m=18.23, mflops=1398.83,
        ),
        ModelInfo(
            "edgeface_s_gamma_05", "edgenext_small", gamma=0.5,
            sha256="dc59abda2e8580399fd115a1eeb07e1f21156196db604b884407bcf0f17efb07",
            lfw=99.78, params_m=3.65, mflops=306.12,
        ),
        ModelInfo(
            "edgeface_xs_gamma_06", "edgenext_x_small", gamma=0.6,
            lfw=99.73, params_m=1.77, mflops=154.00,
        ),
        ModelInfo(
            "edgeface_xxs", "edgenext_xx_small",
            sha256="5b6bac48ea660aca185be8a8ac934db2093b51259461721da53c468230bc24c9",
            lfw=99.57, params_m=1.24, mflops=94.72,
        ),
        # The official files store int8 dynamic-quantized Linear layers; the loader dequantizes.
        ModelInfo(
            "edgeface_xs_q", "edgenext_x_small",
            sha256="a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6",
        ),
        ModelInfo(
            "edgeface_xxs_q", "edgenext_xx_small",
            sha256="46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053",
        ),
        # Not released: made here by python -m training.compress from a full-rank or LoRALin
        # teacher (SVD, then distillation); the rows give the checkpoints a name to be served by.
        ModelInfo("edgeface_xs_gamma_02", "edgenext_x_small", gamma=0.2, published=False),
        ModelInfo("edgeface_xs_gamma_04", "edgenext_x_small", gamma=0.4, published=False),
        ModelInfo("edgeface_xs_gamma_08", "edgenext_x_small", gamma=0.8, published=False),
        ModelInfo("edgeface_s_gamma_02", "edgenext_small", gamma=0.2, published=False),
        ModelInfo("edgeface_s_gamma_03", "edgenext_small", gamma=0.3, published=False),
    )
}  # fmt: skip


class UnknownModelError(ValueError):
    """A model name that is not in the table."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit its model."""


def model_info(name: str) -> ModelInfo:
    """The table's row for ``name``; ``UnknownModelError`` listing the known names otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        known = ", ".join(MODELS)
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def checkpoint_path(name: str, directory: str | os.PathLike) -> Path:
    return Path(directory) / model_info(name).checkpoint_file


def how_to_get(name: str, folder: Path) -> str:
    return (
        f"Put {name}.pt in {folder} (or point EDGEFACE_CHECKPOINT_DIR / --checkpoint-dir at the "
        f"folder that has it), or on a machine with internet run: "
        f"python -m backbones.download {name} --dir {folder}"
    )


def missing_checkpoint_error(path: Path, name: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path.name} not found in {path.parent.resolve()}. "
        + how_to_get(name, path.parent)
    )


def corrupt_checkpoint_error(path: Path, name: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is not a readable PyTorch weights file ({detail}). It may be "
        f"truncated or corrupt; download it again. " + how_to_get(name, path.parent)
    )


def check_checkpoint_file(path: Path, name: str) -> None:
    """Fail fast on a missing file or one that is not a complete ``torch.save`` zip archive."""
    if not path.is_file():
        raise missing_checkpoint_error(path, name)
    # torch.save writes a zip archive; a truncated one lacks its central directory.
    if not zipfile.is_zipfile(path):
        raise corrupt_checkpoint_error(path, name, "not a complete zip archive")


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
