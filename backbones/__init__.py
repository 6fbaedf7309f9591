"""EdgeFace backbones: model registry, LoRALin layers and checkpoint loading."""

from backbones.checkpoints import (
    CHECKPOINT_DIR_ENV,
    CheckpointError,
    checkpoint_dir,
    checkpoint_path,
    load_model,
    read_state_dict,
)
from backbones.edgeface import (
    EMBEDDING_SIZE,
    MODELS,
    EdgeFace,
    ModelSpec,
    count_parameters,
    get_model,
    get_spec,
    list_models,
)
from backbones.lora import LoRALin, low_rank, replace_linear_with_lowrank

__all__ = [
    "CHECKPOINT_DIR_ENV",
    "EMBEDDING_SIZE",
    "MODELS",
    "CheckpointError",
    "EdgeFace",
    "LoRALin",
    "ModelSpec",
    "checkpoint_dir",
    "checkpoint_path",
    "count_parameters",
    "get_model",
    "get_spec",
    "list_models",
    "load_model",
    "low_rank",
    "read_state_dict",
    "replace_linear_with_lowrank",
]
