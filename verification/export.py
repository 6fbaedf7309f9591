"""The ONNX export tool: EdgeFace and MTCNN's three networks, each written atomically and
checked against PyTorch before it is used.

    python -m verification.export MODEL [--checkpoint-dir DIR | --checkpoint FILE] [--onnx-dir DIR]

writes the files where the service looks for them (``verification.runtime.onnx_files``; the
folders default to $EDGEFACE_CHECKPOINT_DIR and $EDGEFACE_ONNX_DIR). It needs torch; a server
without torch serves from the files it wrote (a build machine or a Docker build stage can run it).
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import environment
from backbones.catalog import CheckpointError, checkpoint_path
from face_alignment.networks import (
    MTCNN_NETWORKS,
    ONNX_OUTPUTS,
    SAMPLE_SHAPES,
    mtcnn_onnx_paths,
    mtcnn_torch_modules,
    onnx_dynamic_axes,
    onnx_session,
)
from verification.runtime import OnnxFiles, onnx_files

# Each export is compared with PyTorch on this many random inputs; every output row must agree
# to this cosine similarity.
_CHECK_INPUTS = 3
_MIN_COSINE = 0.9999
EDGEFACE_SAMPLE_SHAPE = (2, 3, 112, 112)


class ExportError(RuntimeError):
    """The ONNX file could not be written, or disagrees with PyTorch."""


def export_network(
    module,
    path: Path,
    sample_shape: tuple[int, ...],
    outputs: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Write ``module`` (one input named ``input``) to ``path`` atomically and check the file.

    The file appears under its name only once ONNX Runtime agrees with PyTorch on random inputs
    of ``sample_shape``; a disagreeing export raises ``ExportError`` and leaves nothing.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    module = module.eval()
    try:
        torch.onnx.export(
            module,
            (torch.zeros(sample_shape),),
            str(temporary),
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
            opset_version=17,
            input_names=["input"],
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
        )
        check_parity(module, temporary, (_CHECK_INPUTS, *sample_shape[1:]))
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def check_parity(module, path: Path, shape: tuple[int, ...]) -> None:
    """Raise ``ExportError`` unless ONNX Runtime's outputs match PyTorch's, row by row."""
    import torch

    batch = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch))
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = onnx_session(path).run(None, {"input": batch})
    for want, have in zip(expected, got, strict=True):
        want = want.numpy().reshape(shape[0], -1).astype(np.float64)
        have = np.asarray(have).reshape(shape[0], -1).astype(np.float64)
        norms = np.linalg.norm(want, axis=1) * np.linalg.norm(have, axis=1)
        cosine = (want * have).sum(1) / np.maximum(norms, 1e-12)
        if not cosine.min() > _MIN_COSINE:
            raise ExportError(f"the ONNX export disagrees with PyTorch (cosine {cosine.min():.6f})")


def export_model(model_name: str, checkpoint: Path, files: OnnxFiles) -> None:
    """Export EdgeFace ``model_name`` from ``checkpoint`` and MTCNN's networks to ``files``."""
    from backbones import load_model

    model = load_model(model_name, path=checkpoint)
    axes = {"input": {0: "batch"}, "embedding": {0: "batch"}}
    export_network(model, files.embedding, EDGEFACE_SAMPLE_SHAPE, ["embedding"], axes)
    modules, paths = mtcnn_torch_modules(), mtcnn_onnx_paths(files.mtcnn_dir)
    for name in MTCNN_NETWORKS:
        outputs, axes = ONNX_OUTPUTS[name], onnx_dynamic_axes(name)
        export_network(modules[name], paths[name], SAMPLE_SHAPES[name], outputs, axes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verification.export",
        description="Export a model and MTCNN for ONNX Runtime (needs torch)",
    )
    parser.add_argument("model")
    parser.add_argument(
        "--checkpoint-dir", help=f"folder with <model>.pt (default ${environment.CHECKPOINT_DIR})"
    )
    parser.add_argument("--checkpoint", type=Path, help="the .pt file itself")
    parser.add_argument(
        "--onnx-dir", help=f"cache folder (default ${environment.ONNX_DIR} or ~/.cache)"
    )
    args = parser.parse_args(argv)
    try:
        checkpoint = args.checkpoint or checkpoint_path(
            args.model, environment.checkpoint_dir(args.checkpoint_dir)
        )
        files = onnx_files(checkpoint, args.model, environment.onnx_dir(args.onnx_dir))
        export_model(args.model, checkpoint, files)
    except (CheckpointError, ExportError, ValueError, OSError) as exc:
        print(f"edgeface: cannot export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {files.embedding} and MTCNN's networks in {files.mtcnn_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
