"""EdgeFace backbones: the model table, LoRALin layers and checkpoint loading.

Names that need torch are imported on first use, so the ONNX Runtime serving path (which only
needs ``backbones.catalog``) never loads torch.
"""

import importlib

from backbones.catalog import (
    DEFAULT_MODEL,
    EMBEDDING_SIZE,
    MODELS,
    CheckpointError,
    UnknownModelError,
    check_checkpoint_file,
    checkpoint_path,
    model_info,
)

_NEEDS_TORCH = {
    "EdgeFace": "backbones.edgeface",
    "build_model": "backbones.edgeface",
    "count_parameters": "backbones.edgeface",
    "get_model": "backbones.edgeface",
    "LoRALin": "backbones.lora",
    "low_rank": "backbones.lora",
    "replace_linear_with_lowrank": "backbones.lora",
    "load_model": "backbones.checkpoints",
    "read_state_dict": "backbones.checkpoints",
}


def __getattr__(name: str) -> object:
    if name in _NEEDS_TORCH:
        return getattr(importlib.import_module(_NEEDS_TORCH[name]), name)
    raise AttributeError(f"module 'backbones' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDING_SIZE",
    "MODELS",
    "CheckpointError",
    "UnknownModelError",
    "check_checkpoint_file",
    "checkpoint_path",
    "model_info",
    *_NEEDS_TORCH,
]
