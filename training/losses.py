"""Margin softmax heads and the triplet loss of the EdgeFace recipe.

A margin head takes the cosine logits ``cos θ_j = x · W_jᵀ`` of L2-normalised embeddings ``x``
and class centres ``W`` (N x C) with the labels, changes only the true class's logit, and
returns the logits times the scale ``s``, ready for cross-entropy (``training.partial_fc`` does
the rest). A label of -1 marks a row whose class is not among these columns (another rank's
shard under Partial FC): that row is only scaled.

    CosFace     cos θ_y - m
    ArcFace     cos(θ_y + m)
    SphereFace  cos(m θ_y)
    Combined    cos(m1 θ_y + m2) - m3, any combination of the three

Past π. ``cos(m1 θ + m2)`` turns back up once ``m1 θ + m2`` passes π, so a sample far from its
centre would be rewarded for moving further away. We use SphereFace's monotonic extension on
the angle ``φ = m1 θ + m2`` for every margin: ``ψ(φ) = (-1)^k cos φ - 2k`` with ``k = ⌊φ / π⌋``.
It equals ``cos φ`` up to π, is continuous (both sides give ``1 - 2k`` at ``φ = kπ``) and falls
strictly on every interval, so the target logit keeps decreasing over all of θ ∈ [0, π] for any
m1 ≥ 1, m2 ≥ 0. We prefer it to ArcFace's ``cos θ - m sin m`` fallback because that fallback is
specific to an additive angle margin (and jumps where it switches on), while one rule covers
SphereFace's multiplicative margin, ArcFace's additive one and every mix.

Numerics: ``cos θ`` is clamped into [-1 + 1e-7, 1 - 1e-7] before ``arccos``, whose derivative is
infinite at ±1; without an angle margin (pure CosFace) no ``arccos`` is taken at all, so CosFace
is exact and its gradient is 1 everywhere. The angle is computed in float32 even under autocast.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-7


def monotonic_cos(phi: Tensor) -> Tensor:
    """ψ(φ) = (-1)^k cos φ - 2k, k = ⌊φ/π⌋: cos φ on [0, π], decreasing beyond (see above)."""
    k = torch.floor(phi / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
    return sign * torch.cos(phi) - 2.0 * k


def angle(cosine: Tensor) -> Tensor:
    """θ = arccos(cos θ), clamped so that the gradient stays finite at cos = ±1."""
    return torch.arccos(cosine.clamp(-1.0 + EPS, 1.0 - EPS))


class MarginSoftmax(nn.Module):
    """Replace the true-class logit by ``target(cos θ_y)``, then scale all logits by ``s``."""

    def __init__(self, s: float = 64.0) -> None:
        super().__init__()
        self.s = s

    def target(self, cosine: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:  # CosFace(s=64.0, m=0.4): which margin, when a head is printed
        margin = getattr(self, "m", None)
        return f"s={self.s}" + ("" if margin is None else f", m={margin}")

    def forward(self, cosine: Tensor, labels: Tensor) -> Tensor:
        if cosine.dtype in (torch.float16, torch.bfloat16):
            cosine = cosine.float()  # the angle needs float32 at least
        rows = torch.nonzero(labels != -1, as_tuple=True)[0]
        columns = labels[rows]
        changed = self.target(cosine[rows, columns])
        # index_put keeps autograd for both the untouched logits and the changed ones.
        logits = cosine.index_put((rows, columns), changed)
        return logits * self.s


class Combined(MarginSoftmax):
    """cos(m1 θ + m2) - m3: SphereFace (m1), ArcFace (m2) and CosFace (m3) margins at once."""

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0):
        super().__init__(s)
        if m1 < 1.0 or m2 < 0.0:
            raise ValueError("need m1 >= 1 and m2 >= 0 (a margin makes the true class harder)")
        self.m1, self.m2, self.m3 = m1, m2, m3

    def target(self, cosine: Tensor) -> Tensor:
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cosine - self.m3  # no angle margin: no arccos round trip
        return monotonic_cos(self.m1 * angle(cosine) + self.m2) - self.m3

    def extra_repr(self) -> str:
        return f"s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}"


class CosFace(MarginSoftmax):
    """cos θ - m (Wang et al. 2018, large margin cosine loss)."""

    def __init__(self, s: float = 64.0, m: float = 0.4) -> None:
        super().__init__(s)
        self.m = m

    def target(self, cosine: Tensor) -> Tensor:
        return cosine - self.m


class ArcFace(MarginSoftmax):
    """cos(θ + m) (Deng et al. 2019, additive angular margin), ψ-extended past π."""

    def __init__(self, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(s)
        self.m = m

    def target(self, cosine: Tensor) -> Tensor:
        return monotonic_cos(angle(cosine) + self.m)


class SphereFace(MarginSoftmax):
    """cos(m θ) (Liu et al. 2017, multiplicative angular margin), ψ-extended past π."""

    def __init__(self, s: float = 64.0, m: float = 1.35) -> None:
        super().__init__(s)
        self.m = m

    def target(self, cosine: Tensor) -> Tensor:
        return monotonic_cos(self.m * angle(cosine))


def margin_head(
    loss: str, s: float, margin: float | None = None, m1=None, m2=None, m3=None
) -> MarginSoftmax:
    """The head ``python -m training.train --loss`` names; ``margin`` defaults per loss."""
    if loss == "cosface":
        return CosFace(s, 0.4 if margin is None else margin)
    if loss == "arcface":
        return ArcFace(s, 0.5 if margin is None else margin)
    if loss == "sphereface":
        return SphereFace(s, 1.35 if margin is None else margin)
    if loss == "combined":
        return Combined(s, 1.0 if m1 is None else m1, 0.0 if m2 is None else m2, m3 or 0.0)
    raise ValueError(f"unknown margin loss {loss!r}")


# --- triplet loss ----------------------------------------------------------------------------

MINING = ("random", "batch_hard", "semi_hard")


def squared_distances(embeddings: Tensor) -> Tensor:
    """‖f_i - f_j‖² of L2-normalised rows, N x N (= 2 - 2 cos)."""
    f = F.normalize(embeddings.float(), dim=1)
    return (2.0 - 2.0 * f @ f.T).clamp_min(0.0)


def mine_triplets(
    distances: Tensor, labels: Tensor, mining: str, margin: float, generator=None
) -> tuple[Tensor, Tensor, Tensor]:
    """(anchor, positive, negative) indices; anchors without a positive or negative are skipped.

    random: one random positive and one random negative per anchor (the original notebook).
    batch_hard: per anchor the farthest positive and the closest negative (Hermans et al. 2017).
    semi_hard: every (anchor, positive) pair with the closest negative that is still farther
    than the positive (FaceNet), or the farthest negative when none is.
    """
    n = labels.numel()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    valid = positive.any(1) & negative.any(1)
    anchors = torch.nonzero(valid, as_tuple=True)[0]
    if mining == "batch_hard":
        far = distances.masked_fill(~positive, -math.inf).argmax(1)
        near = distances.masked_fill(~negative, math.inf).argmin(1)
        return anchors, far[anchors], near[anchors]
    if mining == "random":
        noise = torch.rand(n, n, generator=generator, device=distances.device)
        p = noise.masked_fill(~positive, -1.0).argmax(1)
        q = noise.masked_fill(~negative, -1.0).argmax(1)
        return anchors, p[anchors], q[anchors]
    if mining == "semi_hard":
        a, p = torch.nonzero(positive & valid[:, None], as_tuple=True)
        d_ap = distances[a, p][:, None]
        d_an = distances[a]
        harder = negative[a] & (d_an > d_ap)
        semi = d_an.masked_fill(~harder, math.inf).argmin(1)
        easiest = d_an.masked_fill(~negative[a], -math.inf).argmax(1)
        return a, p, torch.where(harder.any(1), semi, easiest)
    raise ValueError(f"unknown triplet mining {mining!r}; use one of {', '.join(MINING)}")


class TripletLoss(nn.Module):
    """mean max(0, ‖f_a - f_p‖² - ‖f_a - f_n‖² + margin) on L2-normalised embeddings."""

    def __init__(self, margin: float = 0.2, mining: str = "batch_hard") -> None:
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"unknown triplet mining {mining!r}; use one of {', '.join(MINING)}")
        self.margin, self.mining = margin, mining

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):  # float32 distances
            d = squared_distances(embeddings)
        with torch.no_grad():
            a, p, n = mine_triplets(d.detach(), labels, self.mining, self.margin)
        if a.numel() == 0:
            return d.sum() * 0.0  # no usable triplet in this batch: no gradient, no NaN
        return F.relu(d[a, p] - d[a, n] + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining}"
