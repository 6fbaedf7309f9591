"""training.losses and training.partial_fc: the formulas, their numerics, Partial FC exactness
and its sharding over two real gloo ranks on loopback."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from benchmarks.server import free_port
from training.losses import (
    ArcFace,
    Combined,
    CosFace,
    SphereFace,
    TripletLoss,
    mine_triplets,
    squared_distances,
)
from training.partial_fc import PartialFC, shard

S = 64.0
# Near 0, ordinary, near and at π/2, near π.
ANGLES = [1e-3, 0.3, 1.0, math.pi / 2, 2.5, math.pi - 1e-3]


def psi(phi: float) -> float:
    """SphereFace's monotonic extension, written out independently of the module."""
    k = math.floor(phi / math.pi)
    return (-1) ** k * math.cos(phi) - 2 * k


HEADS = [
    (CosFace(S, 0.4), lambda t: math.cos(t) - 0.4),
    (ArcFace(S, 0.25), lambda t: psi(t + 0.25)),
    # Large margins: θ + 1.5 and 4θ pass π (and 2π) within [0, π].
    (ArcFace(S, 1.5), lambda t: psi(t + 1.5)),
    (SphereFace(S, 4.0), lambda t: psi(4 * t)),
    (Combined(S, 1.35, 0.5, 0.2), lambda t: psi(1.35 * t + 0.5) - 0.2),
]


def head_id(value: object) -> str:
    """The head's repr (its margins); never a lambda's address, which differs between xdist
    processes and would make their collections disagree."""
    return repr(value) if isinstance(value, torch.nn.Module) else "formula"


@pytest.mark.parametrize("head,formula", HEADS, ids=head_id)
def test_true_class_logit_is_its_formula_and_the_others_are_untouched(head, formula):
    torch.manual_seed(0)
    n = len(ANGLES)
    cosine = torch.rand(n, 4, dtype=torch.float64) * 2 - 1
    labels = torch.tensor([i % 4 for i in range(n)])
    cosine[torch.arange(n), labels] = torch.cos(torch.tensor(ANGLES, dtype=torch.float64))
    out = head(cosine, labels)
    expected = torch.tensor([formula(t) for t in ANGLES], dtype=torch.float64)
    torch.testing.assert_close(out[torch.arange(n), labels] / S, expected, atol=1e-6, rtol=0)
    others = torch.ones_like(cosine, dtype=torch.bool)
    others[torch.arange(n), labels] = False
    assert torch.equal(out[others], cosine[others] * S)


def test_a_label_of_minus_one_changes_nothing():
    cosine = torch.tensor([[0.5, 0.2], [0.1, 0.9]])
    out = ArcFace(S, 0.5)(cosine, torch.tensor([-1, 1]))
    assert torch.equal(out[0], cosine[0] * S) and out[1, 1] < cosine[1, 1] * S


def test_past_pi_the_extension_is_not_the_plain_cosine():
    # θ = 2.5, m = 1.5: cos(4.0) = -0.65 would reward the wrong direction; ψ gives -1.35.
    cosine = torch.tensor([[math.cos(2.5)]], dtype=torch.float64)
    value = ArcFace(1.0, 1.5)(cosine, torch.tensor([0])).item()
    assert value == pytest.approx(-math.cos(4.0) - 2, abs=1e-9) and value < -1


@pytest.mark.parametrize("head,formula", HEADS, ids=head_id)
def test_gradients_are_finite_at_cos_plus_and_minus_one(head, formula):
    cosine = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    loss = F.cross_entropy(head(cosine, torch.tensor([0, 0, 1])), torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cosine.grad).all()


def test_combined_reduces_to_each_special_case():
    torch.manual_seed(1)
    cosine = torch.rand(64, 10) * 2 - 1
    labels = torch.randint(0, 10, (64,))
    for combined, special in [
        (Combined(S, m3=0.4), CosFace(S, 0.4)),
        (Combined(S, m2=0.5), ArcFace(S, 0.5)),
        (Combined(S, m1=1.35), SphereFace(S, 1.35)),
    ]:
        torch.testing.assert_close(
            combined(cosine, labels), special(cosine, labels), atol=0, rtol=0
        )


@pytest.mark.parametrize(
    "head",
    [CosFace(S, 0.4), ArcFace(S, 0.5), ArcFace(S, 1.5), SphereFace(S, 4.0), Combined(S, 2, 1, 0.3)],
    ids=repr,
)
def test_target_logit_decreases_strictly_over_zero_to_pi(head):
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    target = head(torch.cos(theta)[:, None], torch.zeros(2001, dtype=torch.long))[:, 0]
    assert (target.diff() < 0).all()


def unit(*angles):
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles])


def test_triplet_loss_on_hand_built_embeddings():
    loss = TripletLoss(margin=0.5, mining="batch_hard")
    # Anchor (1, 0): positive (0, 1) at ‖·‖² 2, negative (-1, 0) at 4: 2 - 4 + 0.5 < 0 -> 0.
    # Anchor (0, 1): positive (1, 0) at 2, negative at 2: 0.5. The negative has no positive.
    value = loss(unit(0, math.pi / 2, math.pi), torch.tensor([0, 0, 1])).item()
    assert value == pytest.approx((0.0 + 0.5) / 2, abs=1e-6)
    # Anchors' hardest choices, by hand (angles 0, 0.5 | 0.2, 1.0):
    embeddings, labels = unit(0.0, 0.5, 0.2, 1.0), torch.tensor([0, 0, 1, 1])
    a, p, n = mine_triplets(squared_distances(embeddings), labels, "batch_hard", 0.5)
    assert a.tolist() == [0, 1, 2, 3] and p.tolist() == [1, 0, 3, 2] and n.tolist() == [2, 2, 0, 1]

    def d(x, y):
        return 2 - 2 * math.cos(x - y)

    by_hand = [
        d(0, 0.5) - d(0, 0.2),
        d(0.5, 0) - d(0.5, 0.2),
        d(0.2, 1) - d(0.2, 0),
        d(1, 0.2) - d(1, 0.5),
    ]
    expected = sum(max(0.0, v + 0.5) for v in by_hand) / 4
    assert loss(embeddings, labels).item() == pytest.approx(expected, abs=1e-6)


def test_batch_hard_picks_the_hardest_positive_and_negative():
    torch.manual_seed(2)
    embeddings, labels = torch.randn(24, 8), torch.arange(6).repeat_interleave(4)
    d = squared_distances(embeddings)
    a, p, n = mine_triplets(d, labels, "batch_hard", 0.2)
    assert a.tolist() == list(range(24))
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        positives = [x for x in range(24) if labels[x] == labels[i] and x != i]
        negatives = [x for x in range(24) if labels[x] != labels[i]]
        assert d[i, j] == max(d[i, x] for x in positives) and labels[j] == labels[i] and j != i
        assert d[i, k] == min(d[i, x] for x in negatives) and labels[k] != labels[i]


def test_semi_hard_and_random_mining_choose_valid_triplets():
    torch.manual_seed(3)
    embeddings, labels = torch.randn(16, 8), torch.arange(4).repeat_interleave(4)
    d = squared_distances(embeddings)
    a, p, n = mine_triplets(d, labels, "semi_hard", 0.2)
    assert len(a) == 16 * 3  # every (anchor, positive) pair
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        farther = [d[i, x] for x in range(16) if labels[x] != labels[i] and d[i, x] > d[i, j]]
        assert labels[k] != labels[i]
        assert d[i, k] == (min(farther) if farther else d[i][labels != labels[i]].max())
    a, p, n = mine_triplets(d, labels, "random", 0.2, torch.Generator().manual_seed(0))
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
    # A class of one image has no positive: it is no anchor.
    a, _, _ = mine_triplets(d[:5, :5], labels[:5], "batch_hard", 0.2)
    assert 4 not in a.tolist()


def test_partial_fc_at_sample_rate_one_is_the_full_softmax_exactly():
    torch.manual_seed(4)
    x = torch.randn(16, 32, requires_grad=True)
    labels = torch.randint(0, 20, (16,))
    pfc = PartialFC(ArcFace(S, 0.5), 32, 20, sample_rate=1.0)
    loss = pfc(x, labels)
    loss.backward()
    x2 = x.detach().clone().requires_grad_()
    w2 = pfc.weight.detach().clone().requires_grad_()
    logits = ArcFace(S, 0.5)(F.normalize(x2) @ F.normalize(w2).T, labels)
    reference = F.cross_entropy(logits, labels)
    reference.backward()
    assert torch.equal(loss, reference)
    assert torch.equal(x.grad, x2.grad) and torch.equal(pfc.weight.grad, w2.grad)


def test_partial_fc_samples_the_batchs_classes_and_the_right_share():
    torch.manual_seed(5)
    pfc = PartialFC(CosFace(S, 0.4), 16, 1000, sample_rate=0.1)
    for distinct in (30, 150):  # fewer and more classes in the batch than 10% of 1000
        labels = torch.randperm(1000)[:distinct].repeat(2)
        index, local = pfc.sample(labels)
        assert len(index) == max(100, distinct) and len(set(index.tolist())) == len(index)
        assert set(labels.tolist()) <= set(index.tolist())
        assert torch.equal(index[local], labels)  # re-indexed labels point at their own centre
    x = torch.randn(60, 16, requires_grad=True)
    loss = pfc(x, labels[:60])
    loss.backward()
    # Only the 100 sampled centres (60 of them the batch's classes) get a gradient.
    assert torch.isfinite(loss) and pfc.weight.grad.abs().sum(1).count_nonzero() == 100


def test_shards_cover_every_class_once():
    for classes, world in [(11, 2), (10, 3), (100_000, 8)]:
        parts = [shard(classes, r, world) for r in range(world)]
        assert parts[0][0] == 0 and sum(n for _, n in parts) == classes
        assert all(s + n == parts[i + 1][0] for i, (s, n) in enumerate(parts[:-1]))


CLASSES, BATCH, IN, DIM = 11, 8, 12, 16


def reference_problem():
    # float64, so that 1e-5 measures the algorithm, not float32 rounding of logits scaled by 64.
    torch.manual_seed(6)
    backbone = nn.Linear(IN, DIM).double()
    centres = torch.normal(0.0, 0.01, (CLASSES, DIM), dtype=torch.float64)
    x = torch.randn(BATCH, IN, dtype=torch.float64)
    labels = torch.tensor([0, 3, 5, 6, 10, 3, 7, 1])
    return backbone, centres, x, labels


def one_rank_step():
    backbone, centres, x, labels = reference_problem()
    pfc = PartialFC(Combined(S, 1.0, 0.3, 0.1), DIM, CLASSES, sample_rate=1.0).double()
    with torch.no_grad():
        pfc.weight.copy_(centres)
    loss = pfc(backbone(x), labels)
    loss.backward()
    return loss.detach(), backbone.weight.grad, pfc.weight.grad


def _rank_step(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        backbone, centres, x, labels = reference_problem()
        model = nn.parallel.DistributedDataParallel(backbone)
        pfc = PartialFC(Combined(S, 1.0, 0.3, 0.1), DIM, CLASSES, sample_rate=1.0).double()
        with torch.no_grad():
            pfc.weight.copy_(centres[pfc.class_start : pfc.class_start + pfc.num_local])
        part = BATCH // world
        rows = slice(rank * part, (rank + 1) * part)
        loss = pfc(model(x[rows]), labels[rows])
        loss.backward()
        torch.save(
            {
                "loss": loss.detach(),
                "backbone": backbone.weight.grad,
                "centres": pfc.weight.grad,
                "start": pfc.class_start,
                "count": pfc.num_local,
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_give_the_loss_and_gradients_of_one(tmp_path):
    mp.spawn(_rank_step, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    loss, backbone_grad, centre_grad = one_rank_step()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["count"] for r in ranks] == [6, 5]  # each rank holds its own shard only
    for r in ranks:
        torch.testing.assert_close(r["loss"], loss, atol=1e-5, rtol=0)
        torch.testing.assert_close(r["backbone"], backbone_grad, atol=1e-5, rtol=0)
        shard_grad = centre_grad[r["start"] : r["start"] + r["count"]]
        torch.testing.assert_close(r["centres"], shard_grad, atol=1e-5, rtol=0)
