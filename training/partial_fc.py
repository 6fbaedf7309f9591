"""Partial FC (An et al., CVPR 2022): a margin softmax over very many identities.

Each step scores the batch against every class present in it plus a random share of the others,
``sample_rate · C`` centres in all, so memory and time grow with the sample, not with C. With
``sample_rate = 1.0`` nothing is sampled and the loss is exactly the full softmax's.

Under ``torch.distributed`` (gloo on CPU, nccl on GPU) the C centres are split into contiguous
shards, one per rank (about C / world_size each), as in Partial FC v2: every rank gathers all
ranks' embeddings and labels, scores them against its own shard, and the softmax's maximum and
denominator are all-reduced, so no rank ever holds all the logits or all the centres.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from training.losses import MarginSoftmax


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def full_precision(tensor: Tensor) -> Tensor:
    """float16 and bfloat16 as float32; float32 and float64 as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def shard(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, class count) of ``rank``'s contiguous shard; sizes differ by at most one."""
    base, extra = divmod(num_classes, world_size)
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


class _AllGather(torch.autograd.Function):
    """all_gather with a gradient: each rank gets back the sum over ranks of d loss / d its rows.

    The backward also multiplies by the world size, because DistributedDataParallel then
    averages the backbone's gradients over ranks while the gathered loss is already global.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        world, rank = dist.get_world_size(), dist.get_rank()
        return grad.chunk(world)[rank] * world


class _DistributedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits whose columns are split over the ranks.

    ``labels`` index this rank's columns, -1 where the true class is on another rank.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor) -> Tensor:
        peak = logits.max(dim=1, keepdim=True).values
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        probabilities = torch.exp(logits - peak)
        total = probabilities.sum(dim=1, keepdim=True)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        probabilities /= total
        mine = torch.nonzero(labels != -1, as_tuple=True)[0]
        true = torch.zeros(logits.shape[0], 1, device=logits.device, dtype=logits.dtype)
        true[mine, 0] = logits[mine, labels[mine]]
        dist.all_reduce(true, op=dist.ReduceOp.SUM)
        ctx.save_for_backward(probabilities, labels, mine)
        # -log softmax in log space: a true logit far below the peak must not underflow.
        return (torch.log(total) + peak - true).mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        probabilities, labels, mine = ctx.saved_tensors
        out = probabilities.clone()
        out[mine, labels[mine]] -= 1.0
        return out * (grad / probabilities.shape[0]), None


class PartialFC(nn.Module):
    """Class centres (this rank's shard) and the sampled margin-softmax loss over them.

    ``forward(embeddings, labels)`` takes this rank's batch (N x D, N) and returns the mean loss
    over the global batch, the same value on every rank.
    """

    def __init__(
        self,
        margin: MarginSoftmax,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError("sample_rate must be in (0, 1]")
        self.margin = margin
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.rank = dist.get_rank() if distributed() else 0
        self.world_size = dist.get_world_size() if distributed() else 1
        self.class_start, self.num_local = shard(num_classes, self.rank, self.world_size)
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (self.num_local, embedding_size)))

    def sample(self, labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """(sampled centre indices or None for all, labels re-indexed into them or -1).

        The classes in the batch always are in the sample: their random key is set above
        every other before taking the top ``sample_rate · num_local``.
        """
        local = labels - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, -1)
        if self.sample_rate >= 1.0:
            return None, local
        present = torch.unique(local[local != -1])
        count = max(int(self.sample_rate * self.num_local), present.numel())
        keys = torch.rand(self.num_local, device=labels.device)
        keys[present] = 2.0
        index = torch.sort(torch.topk(keys, count).indices).values
        remapped = torch.searchsorted(index, local.clamp_min(0))
        return index, torch.where(local != -1, remapped, -1)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = labels.long()
        if self.world_size > 1:
            embeddings = _AllGather.apply(embeddings)
            gathered = [torch.empty_like(labels) for _ in range(self.world_size)]
            dist.all_gather(gathered, labels)
            labels = torch.cat(gathered)
        index, local = self.sample(labels)
        weight = self.weight if index is None else self.weight[index]
        # The angle is computed in float32 even under autocast (see training.losses).
        with torch.autocast(embeddings.device.type, enabled=False):
            cosine = F.normalize(full_precision(embeddings)) @ F.normalize(full_precision(weight)).T
            logits = self.margin(cosine.clamp(-1.0, 1.0), local)
            if self.world_size > 1:
                return _DistributedCrossEntropy.apply(logits, local)
            return F.cross_entropy(logits, local)

    def extra_repr(self) -> str:
        return (
            f"classes={self.num_classes}, local={self.num_local} from {self.class_start}, "
            f"sample_rate={self.sample_rate}, world_size={self.world_size}"
        )
