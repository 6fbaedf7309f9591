"""Low-rank replacement of linear layers (LoRALin), as used by the EdgeFace paper."""

from torch import Tensor, nn


class LoRALin(nn.Module):
    """A linear layer factored into two: in -> rank (no bias), then rank -> out (with bias)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, rank, bias=False)
        self.linear2 = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.linear1(x))


def low_rank(in_features: int, out_features: int, gamma: float) -> int:
    """Rank of the factorisation: max(2, int(min(in, out) * gamma))."""
    return max(2, int(min(in_features, out_features) * gamma))


def replace_linear_with_lowrank(module: nn.Module, gamma: float) -> nn.Module:
    """Replace, in place, every nn.Linear whose attribute name is not ``head`` by a LoRALin.

    Only the attribute name is checked, as in the official code, so ``head.fc`` is replaced too:
    that is what the released checkpoints contain.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and name != "head":
            rank = low_rank(child.in_features, child.out_features, gamma)
            setattr(
                module,
                name,
                LoRALin(child.in_features, child.out_features, rank, bias=child.bias is not None),
            )
        else:
            replace_linear_with_lowrank(child, gamma)
    return module
