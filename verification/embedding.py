"""From aligned 112x112 RGB crops to EdgeFace embeddings, on PyTorch or ONNX Runtime."""

from collections.abc import Callable, Sequence

import numpy as np

from backbones.catalog import EMBEDDING_SIZE
from verification.distances import l2_normalize

# Nx3x112x112 float32 in [-1, 1] -> Nx512 float32 raw embeddings.
Embedder = Callable[[np.ndarray], np.ndarray]


def to_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Stack HxWx3 uint8 RGB crops into an Nx3xHxW float32 array scaled to [-1, 1]."""
    batch = np.stack([np.asarray(c, dtype=np.uint8) for c in crops]).transpose(0, 3, 1, 2)
    return batch.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def torch_embedder(model) -> Embedder:
    """Run an EdgeFace ``nn.Module`` (see ``backbones.load_model``)."""
    import torch

    model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).float().numpy()

    return run


def onnx_embedder(session) -> Embedder:
    """Run an ONNX Runtime session of an exported EdgeFace (see ``verification.runtime``)."""
    return lambda batch: session.run(None, {"input": batch})[0]


def embed_crops(
    embedder: Embedder, crops: Sequence[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Raw (unnormalised) embeddings, one row per crop, float32."""
    if len(crops) == 0:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    out = [
        embedder(to_batch(crops[start : start + batch_size]))
        for start in range(0, len(crops), batch_size)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)


def normalized(embeddings: np.ndarray) -> np.ndarray:
    return l2_normalize(np.asarray(embeddings, dtype=np.float32)).astype(np.float32)
