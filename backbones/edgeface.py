"""EdgeFace models: timm EdgeNeXt backbones with a 512-d head, optionally low-rank.

What each variant is (backbone, LoRALin gamma) is a row of ``backbones.catalog.MODELS``; this
module only builds models from it.
"""

import timm
from torch import Tensor, nn

from backbones.catalog import EMBEDDING_SIZE, model_info
from backbones.lora import replace_linear_with_lowrank


class EdgeFace(nn.Module):
    """A timm backbone whose state-dict keys start with ``model.``, as in the official files."""

    def __init__(self, backbone: str, embedding_size: int = EMBEDDING_SIZE) -> None:
        super().__init__()
        self.model = timm.create_model(backbone, pretrained=False)
        self.model.reset_classifier(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        # One CxHxW face as well as a batch: the official README's snippet passes
        # ``transform(aligned)`` without a batch axis, and timm's EdgeNeXt needs one.
        if x.dim() == 3:
            return self.model(x.unsqueeze(0))[0]
        return self.model(x)


def build_model(backbone: str, gamma: float | None = None) -> EdgeFace:
    """An untrained float EdgeFace on any timm ``backbone``, low-rank at ``gamma`` if given."""
    model = EdgeFace(backbone)
    if gamma is not None:
        replace_linear_with_lowrank(model, gamma)
    return model


def get_model(name: str) -> EdgeFace:
    """Build an untrained float EdgeFace variant by its official name."""
    info = model_info(name)
    return build_model(info.backbone, info.gamma)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
