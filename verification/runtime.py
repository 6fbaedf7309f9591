"""Which engine runs the networks: ONNX Runtime (the default when installed) or PyTorch.

On this project's two-core target ONNX Runtime runs MTCNN's networks and EdgeFace 1.5-3x faster
per call than PyTorch on one thread, and a server that never imports torch needs a fraction of
the memory and starts in well under a second. The ONNX files are exported once from the
checkpoint and facenet-pytorch's MTCNN weights (that needs torch, so it runs in a child process)
and cached in ``onnx_dir``; the EdgeFace file is named by the checkpoint's SHA-256, so a new
checkpoint gets a new export.

``python -m verification.runtime export MODEL`` makes the files ahead of time (a Docker build or
an offline install can run it once).
"""

import argparse
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from backbones.catalog import (
    CheckpointError,
    check_checkpoint_file,
    check_model_name,
    checkpoint_path,
    file_sha256,
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
ONNX_DIR_ENV = "EDGEFACE_ONNX_DIR"
# The export is checked against PyTorch on this many random inputs before it is used.
_CHECK_INPUTS = 3


def default_onnx_dir() -> Path:
    if os.environ.get(ONNX_DIR_ENV):
        return Path(os.environ[ONNX_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "edgeface" / "onnx"


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


@dataclass(frozen=True)
class OnnxFiles:
    embedding: Path
    mtcnn_dir: Path

    def exist(self) -> bool:
        paths = [self.embedding, *mtcnn_onnx_paths(self.mtcnn_dir).values()]
        return all(path.is_file() for path in paths)


def onnx_files(
    checkpoint: Path, model_name: str, onnx_dir: str | os.PathLike | None = None
) -> OnnxFiles:
    """Where the exports of this checkpoint (and of the installed MTCNN weights) belong.

    Raises ``CheckpointError`` (or ``ValueError`` for an unknown model) before hashing a file
    that is missing or not a checkpoint.
    """
    check_model_name(model_name)
    check_checkpoint_file(checkpoint, model_name)
    onnx_dir = onnx_dir or default_onnx_dir()
    digest = file_sha256(checkpoint)[:16]
    facenet = importlib.metadata.version("facenet-pytorch")
    return OnnxFiles(
        embedding=Path(onnx_dir) / f"{model_name}-{digest}.onnx",
        mtcnn_dir=Path(onnx_dir) / f"mtcnn-facenet-pytorch-{facenet}",
    )


def ensure_onnx(
    model_name: str,
    checkpoint_dir: str | os.PathLike | None = None,
    onnx_dir: str | os.PathLike | None = None,
) -> OnnxFiles:
    """The ONNX files for this model's checkpoint, exported in a child process when missing.

    Raises ``CheckpointError`` saying what to do when the checkpoint is missing or unreadable,
    or when the export cannot be written.
    """
    checkpoint = checkpoint_path(model_name, checkpoint_dir)
    files = onnx_files(checkpoint, model_name, onnx_dir)
    if files.exist():
        return files
    command = [
        sys.executable,
        "-m",
        "verification.runtime",
        "export",
        model_name,
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(files.embedding),
        "--mtcnn-dir",
        str(files.mtcnn_dir),
    ]
    repo = Path(__file__).resolve().parents[1]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not files.exist():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        prefix = "edgeface: cannot export: "
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
        raise CheckpointError(
            f"could not prepare {model_name} for ONNX Runtime: {reason}. The export needs torch "
            f"and a writable {files.embedding.parent} (set {ONNX_DIR_ENV} to another folder), "
            f"or serve with PyTorch instead (EDGEFACE_RUNTIME=torch)."
        )
    return files


def export(model_name: str, checkpoint: Path, out: Path, mtcnn_dir: Path) -> None:
    """Export EdgeFace and MTCNN to ONNX and check the EdgeFace export against PyTorch."""
    import torch

    from backbones import export_onnx, load_model
    from face_alignment.networks import export_mtcnn_onnx

    model = load_model(model_name, path=checkpoint)
    export_onnx(model, out)
    export_mtcnn_onnx(mtcnn_dir)
    session = onnx_session(out)
    batch = np.random.default_rng(0).uniform(-1, 1, (_CHECK_INPUTS, 3, 112, 112))
    batch = batch.astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    got = session.run(None, {"input": batch})[0]
    cosine = (
        (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    )
    if not cosine.min() > 0.9999:
        out.unlink(missing_ok=True)
        raise RuntimeError(f"the ONNX export disagrees with PyTorch (cosine {cosine.min():.6f})")


def load_engines(
    model_name: str,
    checkpoint_dir: str | os.PathLike | None = None,
    runtime: str = "auto",
    onnx_dir: str | os.PathLike | None = None,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a model and MTCNN for ONNX Runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("export", help="write the ONNX files (needs torch)")
    run.add_argument("model")
    run.add_argument("--checkpoint-dir", help="folder with <model>.pt (default: as the service)")
    run.add_argument("--checkpoint", type=Path, help="the .pt file itself")
    run.add_argument("--onnx-dir", help=f"cache folder (default ${ONNX_DIR_ENV} or ~/.cache)")
    run.add_argument("--out", type=Path, help="EdgeFace .onnx path (default: in the cache)")
    run.add_argument("--mtcnn-dir", type=Path, help="folder for MTCNN's three .onnx files")
    args = parser.parse_args(argv)
    try:
        checkpoint = args.checkpoint or checkpoint_path(args.model, args.checkpoint_dir)
        files = onnx_files(checkpoint, args.model, args.onnx_dir)
        out, mtcnn_dir = args.out or files.embedding, args.mtcnn_dir or files.mtcnn_dir
        export(args.model, checkpoint, out, mtcnn_dir)
    except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
        print(f"edgeface: cannot export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} and MTCNN's networks in {mtcnn_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
