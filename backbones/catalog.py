"""Model names and checkpoint files, without importing torch.

The ONNX Runtime serving path never imports torch, so what it needs to know about models and
their checkpoint files lives here; ``backbones.checkpoints`` adds the torch loading on top.
"""

import hashlib
import os
import zipfile
from pathlib import Path

EMBEDDING_SIZE = 512
# The registry (``backbones.edgeface.MODELS``) builds these; tests keep the two lists equal.
MODEL_NAMES = (
    "edgeface_base",
    "edgeface_s_gamma_05",
    "edgeface_xs_gamma_06",
    "edgeface_xxs",
    "edgeface_xs_q",
    "edgeface_xxs_q",
)
DEFAULT_CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
CHECKPOINT_DIR_ENV = "EDGEFACE_CHECKPOINT_DIR"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit its model."""


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return name


def checkpoint_dir(directory: str | os.PathLike | None = None) -> Path:
    """The folder holding ``<model>.pt`` files: the argument, else $EDGEFACE_CHECKPOINT_DIR."""
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get(CHECKPOINT_DIR_ENV) or DEFAULT_CHECKPOINT_DIR)


def checkpoint_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    return checkpoint_dir(directory) / f"{name}.pt"


def how_to_get(name: str, folder: Path) -> str:
    return (
        f"Put {name}.pt in {folder} (or point {CHECKPOINT_DIR_ENV} / --checkpoint-dir at the "
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
