"""The ``EDGEFACE_*`` variables of the command-line tools, and the default locations.

The service reads its environment through ``service.settings.Settings`` (the same names, and
these defaults). Library functions read nothing: they take every location as an argument. The
command-line modules (``python -m verification``, ``evaluation.*``, ``benchmarks.*``,
``backbones.download``, the ONNX export) resolve their documented variables here, so each
variable's name and default is written once.

This module imports nothing of the project: every layer may use it.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared"

DEFAULT_CHECKPOINT_DIR = REPO / "checkpoints"

CHECKPOINT_DIR = "EDGEFACE_CHECKPOINT_DIR"
ONNX_DIR = "EDGEFACE_ONNX_DIR"
RUNTIME = "EDGEFACE_RUNTIME"
DOWNLOAD_URL = "EDGEFACE_DOWNLOAD_URL"
LFW_DIR = "EDGEFACE_LFW_DIR"
PHOTOS_DIR = "EDGEFACE_PHOTOS_DIR"
DATA_DIR = "EDGEFACE_DATA_DIR"
GALLERY_URL = "EDGEFACE_GALLERY_URL"


def value(name: str, default: str | None = None) -> str | None:
    """The variable's value; an empty one counts as unset (``docker run -e X=`` leaves that)."""
    return os.environ.get(name) or default


def default_onnx_dir() -> Path:
    """Where ONNX exports are cached unless told otherwise: the user's cache folder."""
    cache = value("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "edgeface" / "onnx"


def default_data_dir() -> Path:
    """Where the service keeps its state (the SQLite gallery) unless told otherwise."""
    data = value("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "edgeface"


def default_gallery_url(data_dir: str | os.PathLike) -> str:
    """The SQLite gallery file in ``data_dir`` (the service's default too)."""
    return f"sqlite:///{Path(data_dir).resolve() / 'gallery.db'}"


def gallery_url(given: str | None = None) -> str:
    """``given``, else $EDGEFACE_GALLERY_URL, else the SQLite file in $EDGEFACE_DATA_DIR, else
    in the user's data folder."""
    return given or value(GALLERY_URL) or default_gallery_url(value(DATA_DIR) or default_data_dir())


def checkpoint_dir(given: str | os.PathLike | None = None) -> Path:
    """``given``, else $EDGEFACE_CHECKPOINT_DIR, else the repository's ``checkpoints/``."""
    return Path(given or value(CHECKPOINT_DIR) or DEFAULT_CHECKPOINT_DIR)


def onnx_dir(given: str | os.PathLike | None = None) -> Path:
    """``given``, else $EDGEFACE_ONNX_DIR, else the user's cache folder."""
    return Path(given or value(ONNX_DIR) or default_onnx_dir())


def runtime(given: str | None = None) -> str:
    """``given``, else $EDGEFACE_RUNTIME, else ``auto``."""
    return given or value(RUNTIME) or "auto"


def download_urls() -> list[str]:
    """Base URLs from $EDGEFACE_DOWNLOAD_URL (whitespace-separated); [] when unset."""
    return (value(DOWNLOAD_URL) or "").split()


def lfw_dir() -> Path:
    """$EDGEFACE_LFW_DIR, else ``../shared/lfw-dev`` beside the repository."""
    return Path(value(LFW_DIR) or SHARED / "lfw-dev")


def photos_dir() -> Path:
    """$EDGEFACE_PHOTOS_DIR, else ``../shared/photos`` beside the repository."""
    return Path(value(PHOTOS_DIR) or SHARED / "photos")


def edgeface_variables() -> dict[str, str]:
    """Every ``EDGEFACE_*`` variable that is set, for a benchmark's record of its run."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("EDGEFACE_")}


def verifier_options(given_checkpoint_dir: str | os.PathLike | None = None) -> dict:
    """``Verifier.load``'s locations and runtime as a command-line tool resolves them."""
    return {
        "checkpoint_dir": checkpoint_dir(given_checkpoint_dir),
        "runtime": runtime(),
        "onnx_dir": onnx_dir(),
    }


def lfw_train_dir() -> Path:
    """``../shared/lfw-train`` beside the repository (the training experiments' LFW people)."""
    return SHARED / "lfw-train"


def torchrun_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) that ``torchrun`` sets; (0, 1, 0) when run alone."""
    return (
        int(value("RANK", "0")),
        int(value("WORLD_SIZE", "1")),
        int(value("LOCAL_RANK", "0")),
    )
