"""EdgeFace backbones: model registry, LoRALin layers, checkpoint loading and ONNX export.

Names that need torch are imported on first use, so the ONNX Runtime serving path (which only
needs ``backbones.catalog``) never loads torch.
"""

import importlib

from backbones.catalog import (
    CHECKPOINT_DIR_ENV,
    EMBEDDING_SIZE,
    MODEL_NAMES,
    CheckpointError,
    check_checkpoint_file,
    check_model_name,
    checkpoint_dir,
    checkpoint_path,
)

_NEEDS_TORCH = {
    "MODELS": "backbones.edgeface",
    "EdgeFace": "backbones.edgeface",
    "ModelSpec": "backbones.edgeface",
    "count_parameters": "backbones.edgeface",
    "get_model": "backbones.edgeface",
    "get_spec": "backbones.edgeface",
    "list_models": "backbones.edgeface",
    "LoRALin": "backbones.lora",
    "low_rank": "backbones.lora",
    "replace_linear_with_lowrank": "backbones.lora",
    "load_model": "backbones.checkpoints",
    "read_state_dict": "backbones.checkpoints",
    "export_onnx": "backbones.export",
}


def __getattr__(name: str) -> object:
    if name in _NEEDS_TORCH:
        return getattr(importlib.import_module(_NEEDS_TORCH[name]), name)
    raise AttributeError(f"module 'backbones' has no attribute {name!r}")


__all__ = [
    "CHECKPOINT_DIR_ENV",
    "EMBEDDING_SIZE",
    "MODEL_NAMES",
    "CheckpointError",
    "check_checkpoint_file",
    "check_model_name",
    "checkpoint_dir",
    "checkpoint_path",
    *_NEEDS_TORCH,
]
