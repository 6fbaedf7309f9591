"""MTCNN's three networks as plain array functions, on PyTorch or on ONNX Runtime.

The weights are facenet-pytorch's (they ship inside its pip package). ``torch_mtcnn_nets`` runs
them as they are; the export tool (``python -m verification.export``) writes them as ONNX files
once, using the input and output names here, after which ``onnx_mtcnn_nets`` runs them without
importing torch at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from .mtcnn import MTCNNNets

MTCNN_NETWORKS = ("pnet", "rnet", "onet")
ONNX_OUTPUTS = {
    "pnet": ("offsets", "probs"),
    "rnet": ("offsets", "probs"),
    "onet": ("offsets", "landmarks", "probs"),
}
# P-Net is fully convolutional: any image size; R-Net and O-Net take fixed 24 / 48 px crops.
SAMPLE_SHAPES = {"pnet": (1, 3, 60, 50), "rnet": (2, 3, 24, 24), "onet": (2, 3, 48, 48)}


def onnx_dynamic_axes(name: str) -> dict[str, dict[int, str]]:
    """Batch axes everywhere; P-Net's spatial axes too."""
    outputs = ONNX_OUTPUTS[name]
    axes = {"input": {0: "batch"}} | {out: {0: "batch"} for out in outputs}
    if name == "pnet":
        axes["input"] |= {2: "height", 3: "width"}
        for out in outputs:
            axes[out] |= {2: "out_height", 3: "out_width"}
    return axes


def mtcnn_torch_modules() -> dict:
    """facenet-pytorch's three networks as ``nn.Module``s in eval mode (needs torch)."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval()}


def torch_mtcnn_nets() -> MTCNNNets:
    """facenet-pytorch's networks run by PyTorch on the CPU."""
    import torch

    def runner(module):
        def run(batch):
            with torch.inference_mode():
                return tuple(out.numpy() for out in module(torch.from_numpy(batch)))

        return run

    modules = mtcnn_torch_modules()
    return MTCNNNets(*(runner(modules[name]) for name in MTCNN_NETWORKS))


def mtcnn_onnx_paths(directory: str | os.PathLike) -> dict[str, Path]:
    return {name: Path(directory) / f"mtcnn_{name}.onnx" for name in MTCNN_NETWORKS}


def onnx_session(path: str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session; ``threads`` intra-op threads (one per request by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_mtcnn_nets(directory: str | os.PathLike, threads: int = 1) -> MTCNNNets:
    """The networks from the exported files in ``directory``, run by ONNX Runtime."""

    def runner(path: Path):
        session = onnx_session(path, threads)
        return lambda batch: tuple(session.run(None, {"input": batch}))

    paths = mtcnn_onnx_paths(directory)
    return MTCNNNets(*(runner(paths[name]) for name in MTCNN_NETWORKS))
