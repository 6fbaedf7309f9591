"""EdgeFace models: timm EdgeNeXt backbones with a 512-d head, optionally low-rank.

The variants are data: ``MODELS`` maps each official name to its timm backbone and LoRALin gamma.
"""

from dataclasses import dataclass

import timm
from torch import Tensor, nn

from backbones.catalog import EMBEDDING_SIZE
from backbones.lora import replace_linear_with_lowrank


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backbone: str
    gamma: float | None = None  # LoRALin rank ratio; None keeps full-rank Linear layers
    quantized_checkpoint: bool = False  # official file stores int8 dynamic-quantized Linear
    paper_params_m: float | None = None  # parameter count reported by the paper (millions)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("edgeface_base", "edgenext_base", paper_params_m=18.23),
        ModelSpec("edgeface_s_gamma_05", "edgenext_small", gamma=0.5, paper_params_m=3.65),
        ModelSpec("edgeface_xs_gamma_06", "edgenext_x_small", gamma=0.6, paper_params_m=1.77),
        ModelSpec("edgeface_xxs", "edgenext_xx_small", paper_params_m=1.24),
        ModelSpec("edgeface_xs_q", "edgenext_x_small", quantized_checkpoint=True),
        ModelSpec("edgeface_xxs_q", "edgenext_xx_small", quantized_checkpoint=True),
    )
}


class EdgeFace(nn.Module):
    """A timm backbone whose state-dict keys start with ``model.``, as in the official files."""

    def __init__(self, backbone: str, embedding_size: int = EMBEDDING_SIZE) -> None:
        super().__init__()
        self.model = timm.create_model(backbone, pretrained=False)
        self.model.reset_classifier(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def list_models() -> list[str]:
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(MODELS)
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def get_model(name: str) -> EdgeFace:
    """Build an untrained float EdgeFace variant by its official name."""
    spec = get_spec(name)
    model = EdgeFace(spec.backbone)
    if spec.gamma is not None:
        replace_linear_with_lowrank(model, spec.gamma)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
