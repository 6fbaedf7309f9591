"""EdgeFace as an ONNX file, for serving with ONNX Runtime instead of PyTorch."""

import os
from pathlib import Path

import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` (Nx3x112x112 in, Nx512 out, any batch size) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.onnx.export(
        model.eval(),
        (torch.zeros(2, 3, 112, 112),),
        str(temporary),
        dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
        opset_version=17,
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
    )
    temporary.replace(path)
    return path
