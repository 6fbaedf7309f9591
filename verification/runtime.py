"""Which engine runs the networks, ONNX Runtime (the default when installed) or PyTorch, and
loading them.

ONNX Runtime runs MTCNN's networks and EdgeFace faster per call than PyTorch on one thread, and
a server that never imports torch needs a fraction of the memory and starts in well under a
second (README, Performance). The ONNX files are written by the export tool
(``python -m verification.export``) into ``onnx_dir``; the EdgeFace file is named by the
checkpoint's SHA-256, so a new checkpoint gets a new export. When they are missing,
``ensure_onnx`` runs that tool once in a child process (it needs torch).
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backbones.catalog import (
    CheckpointError,
    check_checkpoint_file,
    checkpoint_path,
    file_sha256,
    model_info,
)
from face_alignment.mtcnn import MTCNNNets
from face_alignment.networks import (
    mtcnn_onnx_paths,
    onnx_mtcnn_nets,
    onnx_session,
    torch_mtcnn_nets,
)
from verification.embedding import Embedder, onnx_embedder, torch_embedder

Runtime = Literal["auto", "onnx", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")


@dataclass(frozen=True)
class Engines:
    """What runs the two networks of the pipeline."""

    runtime: Literal["onnx", "torch"]
    embedder: Embedder
    mtcnn: MTCNNNets


def resolve_runtime(runtime: str) -> Literal["onnx", "torch"]:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"
    return runtime  # type: ignore[return-value]


MTCNN_DIR_PREFIX = "mtcnn-facenet-pytorch-"


@dataclass(frozen=True)
class OnnxFiles:
    embedding: Path
    mtcnn_dir: Path

    def missing(self) -> list[Path]:
        paths = [self.embedding, *mtcnn_onnx_paths(self.mtcnn_dir).values()]
        return [path for path in paths if not path.is_file()]

    def exist(self) -> bool:
        return not self.missing()


def mtcnn_onnx_dir(onnx_dir: str | os.PathLike) -> Path:
    """The folder of MTCNN's exports, named by the facenet-pytorch release whose weights they
    hold. A serving install without facenet-pytorch (requirements-serve.txt) uses the exported
    folder it finds (the latest written, when there are several)."""
    try:
        return Path(onnx_dir) / f"{MTCNN_DIR_PREFIX}{importlib.metadata.version('facenet-pytorch')}"
    except importlib.metadata.PackageNotFoundError:
        pass
    exported = [
        folder
        for folder in Path(onnx_dir).glob(f"{MTCNN_DIR_PREFIX}*")
        if all(path.is_file() for path in mtcnn_onnx_paths(folder).values())
    ]
    newest = max(exported, key=lambda folder: folder.stat().st_mtime, default=None)
    return newest or Path(onnx_dir) / f"{MTCNN_DIR_PREFIX}(none exported)"


def onnx_files(checkpoint: Path, model_name: str, onnx_dir: str | os.PathLike) -> OnnxFiles:
    """Where the exports of this checkpoint (and of the installed MTCNN weights) belong.

    Raises ``CheckpointError`` (or ``UnknownModelError``) before hashing a file that is missing
    or not a checkpoint.
    """
    model_info(model_name)
    check_checkpoint_file(checkpoint, model_name)
    digest = file_sha256(checkpoint)[:16]
    return OnnxFiles(
        embedding=Path(onnx_dir) / f"{model_name}-{digest}.onnx", mtcnn_dir=mtcnn_onnx_dir(onnx_dir)
    )


def ensure_onnx(
    model_name: str, checkpoint_dir: str | os.PathLike, onnx_dir: str | os.PathLike
) -> OnnxFiles:
    """The ONNX files for this model's checkpoint, exported in a child process when missing.

    Raises ``CheckpointError`` saying what to do when the checkpoint is missing or unreadable,
    or when the export cannot be written.
    """
    checkpoint = checkpoint_path(model_name, checkpoint_dir)
    files = onnx_files(checkpoint, model_name, onnx_dir)
    if files.exist():
        return files
    if importlib.util.find_spec("torch") is None:
        raise CheckpointError(
            f"no ONNX export of this {model_name} checkpoint in {onnx_dir} (EDGEFACE_ONNX_DIR), "
            f"and this serving install has no PyTorch to write one. On a machine with the full "
            f"install (pip install -r requirements.txt) run: python -m verification.export "
            f"{model_name} --checkpoint-dir DIR --onnx-dir OUT, then copy OUT here and point "
            f"EDGEFACE_ONNX_DIR at it; keep the same {checkpoint.name} beside the service (its "
            f"SHA-256 names the export)."
        )
    _check_writable(Path(onnx_dir), model_name)
    command = [sys.executable, "-m", "verification.export", model_name]
    command += ["--checkpoint", str(checkpoint), "--onnx-dir", str(onnx_dir)]
    repo = Path(__file__).resolve().parents[1]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not files.exist():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        reason = reason.removeprefix("edgeface: cannot export: ")
        raise CheckpointError(
            f"could not prepare {model_name} for ONNX Runtime: {reason}. The export needs torch "
            f"and a writable {files.embedding.parent} (set EDGEFACE_ONNX_DIR to another folder), "
            f"or serve with PyTorch instead (EDGEFACE_RUNTIME=torch)."
        )
    return files


def _check_writable(folder: Path, model_name: str) -> None:
    """Refuse at once, not after the seconds an export takes, a folder the export cannot use."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CheckpointError(
            f"could not prepare {model_name} for ONNX Runtime: cannot write to {folder} "
            f"({reason}). Set EDGEFACE_ONNX_DIR to a writable folder, or serve with PyTorch "
            f"instead (EDGEFACE_RUNTIME=torch)."
        ) from None


def load_engines(
    model_name: str,
    checkpoint_dir: str | os.PathLike,
    runtime: str,
    onnx_dir: str | os.PathLike,
    threads: int = 1,
) -> Engines:
    """The embedding network and MTCNN's networks on the chosen runtime.

    ``threads`` is each network's intra-op thread count; the service runs one request per core
    with one thread each, which uses two cores better than one request split over both.
    """
    chosen = resolve_runtime(runtime)
    if chosen == "onnx":
        files = ensure_onnx(model_name, checkpoint_dir, onnx_dir)
        embedder = onnx_embedder(onnx_session(files.embedding, threads))
        return Engines("onnx", embedder, onnx_mtcnn_nets(files.mtcnn_dir, threads))
    import torch

    from backbones import load_model

    torch.set_num_threads(threads)
    model = load_model(model_name, checkpoint_dir)
    return Engines("torch", torch_embedder(model), torch_mtcnn_nets())
