"""Finding and loading EdgeFace checkpoints.

Every failure becomes a ``CheckpointError`` whose message says which file, what is wrong and what
to do, so the service can stop at startup with a useful sentence instead of a pickle traceback.
"""

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from backbones.catalog import (
    CheckpointError,
    checkpoint_path,
    corrupt_checkpoint_error,
    missing_checkpoint_error,
    model_info,
)
from backbones.edgeface import EdgeFace, get_model

_PACKED = "._packed_params._packed_params"


def read_state_dict(path: Path, name: str | None = None) -> dict[str, Tensor]:
    """Read a checkpoint safely (weights only) and return a float state dict."""
    name = name or path.stem
    if not path.is_file():
        raise missing_checkpoint_error(path, name)
    try:
        with warnings.catch_warnings():
            # Reading the official int8 files warns about deprecated quantized tensors; we
            # dequantize them right away, so the warning says nothing useful to the user.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same thing here
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise corrupt_checkpoint_error(path, name, f"{type(exc).__name__}: {detail}") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return dequantize_state_dict(state)


def dequantize_state_dict(state: dict) -> dict[str, Tensor]:
    """Turn int8 dynamic-quantized Linear entries into plain float ``weight``/``bias`` entries.

    The official ``_q`` files were saved from ``quantize_dynamic``; running the float model on the
    dequantized weights is faster on CPU and slightly more accurate than int8 activations.
    """
    packed_prefixes = [key[: -len(_PACKED)] for key in state if key.endswith(_PACKED)]
    if not packed_prefixes:
        return state
    dropped = {
        f"{prefix}{suffix}"
        for prefix in packed_prefixes
        for suffix in (".scale", ".zero_point", "._packed_params.dtype", _PACKED)
    }
    out = {key: value for key, value in state.items() if key not in dropped}
    for prefix in packed_prefixes:
        weight, bias = state[prefix + _PACKED]
        out[f"{prefix}.weight"] = weight.dequantize()
        if bias is not None:
            out[f"{prefix}.bias"] = bias.detach().float()
    return out


def _mismatch_report(model: torch.nn.Module, state: dict[str, Tensor], limit: int = 5) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape
    ]
    parts = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", wrong_shape),
    ):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label} ({len(keys)}): {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, Tensor], path: Path) -> None:
    report = _mismatch_report(model, state)
    if report:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {path.stem!r}: {report}. Check that the file "
            f"matches the model name (--model / EDGEFACE_MODEL)."
        )
    model.load_state_dict(state, strict=True)


def load_model(
    name: str,
    directory: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> EdgeFace:
    """Build model ``name`` and load its weights strictly from ``path``, else from
    ``<directory>/<name>.pt``; returns it in eval mode on the CPU."""
    model_info(name)  # unknown names fail before touching the disk
    if path is None and directory is None:
        raise ValueError("load_model needs the checkpoint's directory or path")
    file = Path(path) if path is not None else checkpoint_path(name, directory)
    state = read_state_dict(file, name)
    model = get_model(name)
    load_state_dict_strict(model, state, file)
    return model.eval()
