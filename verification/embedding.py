"""From aligned 112x112 RGB crops to EdgeFace embeddings."""

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from verification.distances import l2_normalize


def to_tensor(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack HxWx3 uint8 RGB crops into an Nx3xHxW float tensor scaled to [-1, 1]."""
    batch = np.stack([np.asarray(c, dtype=np.uint8) for c in crops])
    tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return tensor.div_(127.5).sub_(1.0)


def embed_crops(model: nn.Module, crops: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Raw (unnormalised) embeddings, one row per crop, float32."""
    if len(crops) == 0:
        return np.zeros((0, 512), dtype=np.float32)
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            out.append(model(to_tensor(crops[start : start + batch_size])).float().numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def normalized(embeddings: np.ndarray) -> np.ndarray:
    return l2_normalize(np.asarray(embeddings, dtype=np.float32)).astype(np.float32)
