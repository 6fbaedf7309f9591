"""MTCNN's three networks as plain array functions, on PyTorch or on ONNX Runtime.

The weights are facenet-pytorch's (they ship inside its pip package). ``torch_mtcnn_nets`` runs
them as they are; ``export_mtcnn_onnx`` writes them as ONNX files once, after which
``onnx_mtcnn_nets`` runs them without importing torch at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .mtcnn import MTCNNNets

MTCNN_NETWORKS = ("pnet", "rnet", "onet")
_OUTPUTS = {
    "pnet": ("offsets", "probs"),
    "rnet": ("offsets", "probs"),
    "onet": ("offsets", "landmarks", "probs"),
}
_SAMPLE_SHAPES = {"pnet": (1, 3, 60, 50), "rnet": (2, 3, 24, 24), "onet": (2, 3, 48, 48)}


def _facenet_modules() -> dict:
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval()}


def torch_mtcnn_nets() -> MTCNNNets:
    """facenet-pytorch's networks run by PyTorch on the CPU."""
    import torch

    def runner(module):
        def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
            with torch.inference_mode():
                return tuple(out.numpy() for out in module(torch.from_numpy(batch)))

        return run

    modules = _facenet_modules()
    return MTCNNNets(*(runner(modules[name]) for name in MTCNN_NETWORKS))


def mtcnn_onnx_paths(directory: str | os.PathLike) -> dict[str, Path]:
    return {name: Path(directory) / f"mtcnn_{name}.onnx" for name in MTCNN_NETWORKS}


def export_mtcnn_onnx(directory: str | os.PathLike) -> dict[str, Path]:
    """Write the three networks as ONNX files in ``directory`` (needs torch)."""
    import torch

    paths = mtcnn_onnx_paths(directory)
    Path(directory).mkdir(parents=True, exist_ok=True)
    for name, module in _facenet_modules().items():
        outputs = _OUTPUTS[name]
        axes = {"input": {0: "batch"}} | {out: {0: "batch"} for out in outputs}
        if name == "pnet":
            axes["input"] |= {2: "height", 3: "width"}
            for out in outputs:
                axes[out] |= {2: "out_height", 3: "out_width"}
        temporary = paths[name].with_name(f"{paths[name].name}.{os.getpid()}.tmp")
        torch.onnx.export(
            module,
            (torch.zeros(_SAMPLE_SHAPES[name]),),
            str(temporary),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=list(outputs),
            dynamic_axes=axes,
        )
        temporary.replace(paths[name])
    return paths


def onnx_session(path: str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session; ``threads`` intra-op threads (one per request by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_mtcnn_nets(directory: str | os.PathLike, threads: int = 1) -> MTCNNNets:
    """The networks from ``export_mtcnn_onnx``'s files, run by ONNX Runtime."""

    def runner(path: Path):
        session = onnx_session(path, threads)
        return lambda batch: tuple(session.run(None, {"input": batch}))

    paths = mtcnn_onnx_paths(directory)
    return MTCNNNets(*(runner(paths[name]) for name in MTCNN_NETWORKS))
