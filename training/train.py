"""Train an EdgeFace model on prepared crops; the output folder is a checkpoint folder the
service and the evaluation load as they are.

    python -m training.train --data CROPS --model edgeface_xxs --loss arcface --margin 0.5 \\
        --epochs 20 --batch-size 128 --lr 1e-3 --weight-decay 0.05 --out runs/xxs
    torchrun --nproc-per-node 2 -m training.train ...     # DistributedDataParallel

CROPS is what ``python -m training.prepare`` wrote. OUT receives:

- ``<model>.pt``: the backbone's state dict (``python api.py --model NAME --checkpoint-dir OUT``,
  ``python -m evaluation.lfw --model NAME --checkpoint-dir OUT``);
- ``thresholds.json``: the model's thresholds for every metric fitted on the validation pairs,
  which the service prefers to its committed table (and says so at startup);
- ``last.pt``: model, Partial FC, optimiser, scheduler, AMP scaler and every RNG state after the
  last finished epoch; ``--resume`` continues from it exactly;
- ``log.jsonl`` (one JSON object per logged step and per epoch), ``curves.png`` (loss and
  validation accuracy per epoch), ``result.json`` (the settings and the final figures,
  including the test part's pairs).

Under torchrun every rank reads its share of each epoch (DistributedSampler), the class centres
are sharded over the ranks (``training.partial_fc``), and only rank 0 writes anything. The batch
size is per rank, as in insightface's ``train_v2.py``.
"""

import argparse
import copy
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

import environment
from backbones.catalog import EMBEDDING_SIZE, MODELS, CheckpointError, checkpoint_path, model_info
from backbones.checkpoints import load_state_dict_strict, read_state_dict
from backbones.edgeface import EdgeFace, build_model
from evaluation.calibrate import operating_points
from evaluation.metrics import kfold_accuracy
from evaluation.pairs import Pair, unique_images
from training.data import (
    CropDataset,
    Split,
    crops_tensor,
    find_crops,
    lfw_crop_pairs,
    random_pairs,
    split_samples,
)
from training.losses import MINING, TripletLoss, margin_head
from training.partial_fc import PartialFC
from verification.distances import METRICS, pairwise_distances
from verification.thresholds import BESIDE_CHECKPOINT, accuracy_at, best_threshold

LOSSES = ("cosface", "arcface", "sphereface", "combined", "triplet")
LAST = "last.pt"
LOG = "log.jsonl"
# A regulariser adds a term to each step's loss (e.g. a distillation or compression penalty):
# regulariser(images, embeddings, labels).
Regulariser = Callable[[Tensor, Tensor, Tensor], Tensor]
PRESERVE = ("cosine", "l2")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", type=Path, required=True, help="crops from python -m training.prepare")
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="architecture and name")
    p.add_argument("--loss", choices=LOSSES, default="arcface")
    p.add_argument("--margin", type=float, help="CosFace/ArcFace/SphereFace/triplet margin")
    p.add_argument("--m1", type=float, help="combined: SphereFace margin (cos(m1 θ + m2) - m3)")
    p.add_argument("--m2", type=float, help="combined: ArcFace margin")
    p.add_argument("--m3", type=float, help="combined: CosFace margin")
    p.add_argument("--scale", type=float, default=64.0, help="s, the logits' scale")
    p.add_argument("--mining", choices=MINING, default="batch_hard", help="triplet choice")
    p.add_argument("--sample-rate", type=float, default=1.0, help="Partial FC share of centres")
    p.add_argument(
        "--gamma",
        help="LoRALin rank ratio for every Linear layer; 'none' for full rank "
        "(default: the model's own, from the model table)",
    )
    p.add_argument("--init", help="start from a model name (its file in --checkpoint-dir) or a .pt")
    p.add_argument(
        "--layer-scale-init",
        type=float,
        default=None,
        help="from scratch only: start the blocks' layer scale here instead of timm's 1e-6 "
        "(short runs learn faster with 0.1)",
    )
    p.add_argument(
        "--checkpoint-dir", help=f"for --init NAME; default ${environment.CHECKPOINT_DIR}"
    )
    p.add_argument(
        "--preserve-weight",
        type=float,
        default=0.0,
        help="fine-tuning that does not forget: add this times the distance between each "
        "embedding and the frozen initial model's embedding of the same image (0: off)",
    )
    p.add_argument("--preserve", choices=PRESERVE, default="cosine", help="that distance")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=128, help="per rank")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--schedule", choices=("cosine", "poly"), default="cosine")
    p.add_argument("--clip-grad", type=float, default=5.0, help="max gradient norm; 0: none")
    p.add_argument("--amp", choices=("auto", "off"), default="auto", help="float16 on GPU")
    p.add_argument("--split", choices=("images", "identities"), default="images")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar="F")
    p.add_argument("--val-pairs", type=int, default=1000, help="random validation pairs")
    p.add_argument("--lfw-pairs", type=Path, help="validate on an LFW pair file instead ...")
    p.add_argument("--lfw-crops", type=Path, help="... over LFW prepared by training.prepare")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--stop-after-epochs", type=int, help="end this run after N epochs (time-limited jobs)"
    )
    p.add_argument("--log-every", type=int, default=50, help="steps between step log lines")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.loss == "combined" and args.margin is not None:
        p.error("--loss combined takes --m1 --m2 --m3, not --margin")
    if args.loss != "combined" and any(m is not None for m in (args.m1, args.m2, args.m3)):
        p.error("--m1 --m2 --m3 are for --loss combined")
    if (args.lfw_pairs is None) != (args.lfw_crops is None):
        p.error("--lfw-pairs and --lfw-crops go together")
    if args.epochs < 1 or args.batch_size < 2:
        p.error("need --epochs >= 1 and --batch-size >= 2")
    return args


def gamma_of(args: argparse.Namespace) -> float | None:
    if args.gamma is None:
        return model_info(args.model).gamma
    return None if args.gamma.lower() == "none" else float(args.gamma)


@dataclass
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_distributed() -> Context:
    rank, world_size, local_rank = environment.torchrun_rank()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world_size > 1:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Context(rank, world_size, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build(args: argparse.Namespace) -> EdgeFace:
    """The architecture of ``--model`` at ``--gamma``, from ``--init``'s weights if given."""
    model = build_model(model_info(args.model).backbone, gamma_of(args))
    if args.layer_scale_init is not None and not args.init:
        set_layer_scale(model, args.layer_scale_init)
    if args.init:
        if args.init in MODELS:
            path = checkpoint_path(args.init, environment.checkpoint_dir(args.checkpoint_dir))
        else:
            path = Path(args.init)
        load_state_dict_strict(model, read_state_dict(path), path)
    return model


@torch.no_grad()
def set_layer_scale(model: nn.Module, value: float) -> None:
    """Start every EdgeNeXt block's layer scale (timm's ``gamma`` and ``gamma_xca`` vectors) at
    ``value``.

    timm starts them at 1e-6, so that a deep network begins as the identity and stays stable
    over hundreds of ImageNet epochs; with AdamW moving a weight by about ``lr`` a step, a block
    then needs hundreds of steps before it contributes at all, which a short run from scratch
    cannot spare (README, the original experiments).
    """
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] in ("gamma", "gamma_xca"):
            parameter.fill_(value)


def preserving_regulariser(initial: nn.Module, weight: float, kind: str = "cosine") -> Regulariser:
    """``weight`` x the mean distance (cosine, or squared L2 of the normalised vectors) between
    the trained embedding and a frozen copy of ``initial``'s, so that fine-tuning on a few
    people keeps what the initial model knew. Zero while the weights are the initial ones."""
    frozen = copy.deepcopy(initial).eval().requires_grad_(False)

    def term(images: Tensor, embeddings: Tensor, labels: Tensor) -> Tensor:
        with torch.no_grad():
            target = F.normalize(frozen(images).float(), dim=1)
        current = F.normalize(embeddings.float(), dim=1)
        if kind == "cosine":
            distance = 1 - (current * target).sum(1)
        else:
            distance = (current - target).pow(2).sum(1)
        return weight * distance.mean()

    return term


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine or (power 2) polynomial to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return (1.0 - progress) ** 2


def validation_pairs(args: argparse.Namespace, split: Split) -> tuple[list[Pair], str]:
    if args.lfw_pairs:
        return lfw_crop_pairs(args.lfw_pairs, args.lfw_crops), f"LFW pairs {args.lfw_pairs.name}"
    pairs = random_pairs(split.val, args.val_pairs, args.seed)
    if not pairs:
        raise ValueError(
            f"the validation part ({len(split.val)} crops) makes no same-person pair; "
            "use more images per person, larger --fractions or --lfw-pairs"
        )
    return pairs, f"{len(pairs)} random pairs of the validation part ({args.split} split)"


@torch.no_grad()
def embed_paths(
    model: nn.Module, paths: list[Path], device: torch.device
) -> dict[Path, np.ndarray]:
    was_training = model.training
    model.eval()
    out: dict[Path, np.ndarray] = {}
    for start in range(0, len(paths), 128):
        chunk = paths[start : start + 128]
        embeddings = model(crops_tensor(chunk).to(device)).float().cpu().numpy()
        out.update(zip(chunk, embeddings, strict=True))
    model.train(was_training)
    return out


def pair_distances(
    embeddings: dict[Path, np.ndarray], pairs: list[Pair], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    first = np.stack([embeddings[p.first] for p in pairs])
    second = np.stack([embeddings[p.second] for p in pairs])
    return pairwise_distances(first, second, metric), np.array([p.same for p in pairs])


def evaluate_pairs(
    model: nn.Module, pairs: list[Pair], device: torch.device, operating: bool = False
) -> dict:
    """Accuracy on these pairs with the project's metrics; fitted thresholds for every metric.

    ``accuracy``: 10-fold (threshold fitted on nine tenths, applied to the tenth), the honest
    figure; ``best_accuracy``: the best single threshold on all pairs (the original
    experiments' protocol, optimistic). Pairs of an LFW file keep their own folds. With
    ``operating``, each metric also gets the FAR at its threshold and the thresholds at the
    service's operating points, over every pair of the pairs' images (as
    ``evaluation.calibrate`` measures them).
    """
    images = unique_images(pairs)
    embeddings = embed_paths(model, images, device)
    folds = np.array([p.fold for p in pairs])
    if np.unique(folds).size == 1:
        folds = np.arange(len(pairs)) % 10
    report: dict = {"pairs": len(pairs), "thresholds": {}}
    for metric in METRICS:
        distances, same = pair_distances(embeddings, pairs, metric)
        threshold, best = best_threshold(distances, same)
        entry = {"threshold": round(threshold, 6), "accuracy": round(best, 4)}
        if operating:
            matrix = np.stack([embeddings[path] for path in images])
            identities = np.array([path.parent.name for path in images])
            points, far = operating_points(matrix, identities, metric, threshold)
            entry.update(far=float(f"{far:.3g}"), at_far=points)
        report["thresholds"][metric] = entry
        if metric == "cosine":
            report["accuracy"] = kfold_accuracy(distances, same, folds).mean
            report["best_accuracy"] = best
            report["cosine"] = (distances, same)  # for the caller, not for JSON
    return report


def thresholds_table(name: str, report: dict, fitted_on: str) -> dict:
    return {
        "note": "Written by python -m training.train; fitted on its validation pairs.",
        "fitted_on": fitted_on,
        "rule": "match when distance <= threshold",
        "models": {
            name: {
                metric: {
                    "threshold": entry["threshold"],
                    "far": entry.get("far"),
                    "val_accuracy": entry["accuracy"],
                    "at_far": entry.get("at_far", {}),
                }
                for metric, entry in report["thresholds"].items()
            }
        },
    }


def save_atomic(obj, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(obj, temporary)
    temporary.replace(path)


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, left = plt.subplots(figsize=(6, 3.5))
    left.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss", color="tab:blue")
    right = left.twinx()
    right.plot(epochs, [h["val_accuracy"] for h in history], "s-", color="tab:red")
    right.set_ylabel("validation accuracy (10-fold)", color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(args: argparse.Namespace, regulariser: Regulariser | None = None) -> dict | None:
    """Run the training ``args`` describe; rank 0 returns the result it writes, others None.

    ``regulariser(images, embeddings, labels)``, if given, is added to every step's loss;
    without one, ``--preserve-weight`` > 0 builds ``preserving_regulariser`` from the initial
    weights.
    """
    ctx = start_distributed()
    if regulariser is None and args.preserve_weight > 0:
        regulariser = preserving_regulariser(build(args).to(ctx.device), args.preserve_weight,
                                             args.preserve)  # fmt: skip
    try:
        return _train(args, ctx, regulariser)
    finally:
        if ctx.world_size > 1:
            dist.destroy_process_group()


def _train(args: argparse.Namespace, ctx: Context, regulariser: Regulariser | None) -> dict | None:
    out: Path = args.out
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    split = split_samples(find_crops(args.data), tuple(args.fractions), args.split, args.seed)
    val_pairs, val_name = validation_pairs(args, split)
    dataset = CropDataset(split.train, split.labels(split.train), flip=not args.no_flip)
    if ctx.world_size > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed, drop_last=True)
    else:
        sampler = RandomSampler(dataset)
    loader = DataLoader(
        dataset, args.batch_size, sampler=sampler, num_workers=args.workers, drop_last=True
    )
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training crops make no batch of {args.batch_size}")

    model = build(args).to(ctx.device)
    if args.loss == "triplet":
        head: nn.Module = TripletLoss(0.2 if args.margin is None else args.margin, args.mining)
    else:
        margin = margin_head(args.loss, args.scale, args.margin, args.m1, args.m2, args.m3)
        head = PartialFC(margin, EMBEDDING_SIZE, len(split.classes), args.sample_rate)
    head = head.to(ctx.device)
    trained = nn.parallel.DistributedDataParallel(model) if ctx.world_size > 1 else model
    parameters = [*model.parameters(), *head.parameters()]
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            parameters, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    steps_per_epoch = len(loader)
    total, warmup = args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total, args.schedule)
    )
    amp = args.amp == "auto" and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[dict] = []
    first_epoch = 1
    resuming = args.resume and (out / LAST).is_file()
    if resuming:
        state = torch.load(out / LAST, map_location=ctx.device, weights_only=False)
        if state["world_size"] != ctx.world_size:
            raise ValueError(
                f"{out / LAST} was written by {state['world_size']} ranks, not {ctx.world_size}"
            )
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"][ctx.rank])
        optimizer.load_state_dict(state["optimizer"][ctx.rank])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][ctx.rank])
        history, first_epoch = state["history"], state["epoch"] + 1

    log = (out / LOG).open("a" if resuming else "w") if ctx.main else None
    last_epoch = args.epochs
    if args.stop_after_epochs:
        last_epoch = min(args.epochs, first_epoch + args.stop_after_epochs - 1)
    step = (first_epoch - 1) * steps_per_epoch
    started = time.monotonic()
    for epoch in range(first_epoch, last_epoch + 1):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        trained.train()
        losses = []
        bar = tqdm(
            loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch",
            disable=args.no_progress or not ctx.main,
        )  # fmt: skip
        for images, labels in bar:
            images, labels = images.to(ctx.device), labels.to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=amp):
                embeddings = trained(images)
                loss = head(embeddings, labels)
                if regulariser is not None:
                    loss = loss + regulariser(images, embeddings, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if args.clip_grad > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(parameters, args.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {step}; lower --lr")
            losses.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
            if log and (step % args.log_every == 0 or step == (epoch - 1) * steps_per_epoch + 1):
                log.write(json.dumps({"kind": "step", "epoch": epoch, "step": step, "loss": value,
                                      "lr": scheduler.get_last_lr()[0]}) + "\n")  # fmt: skip
                log.flush()
        record = {"kind": "epoch", "epoch": epoch, "steps": step, "loss": float(np.mean(losses))}
        if ctx.main:
            report = evaluate_pairs(model, val_pairs, ctx.device)
            record.update(
                val_accuracy=report["accuracy"], val_best_accuracy=report["best_accuracy"]
            )
            record["seconds"] = round(time.monotonic() - started, 1)
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            plot_curves(history, out / "curves.png")
        save_checkpoint(out, ctx, epoch, model, head, optimizer, scheduler, scaler, history)
    if log:
        log.close()
    if last_epoch < args.epochs or not ctx.main:
        return None
    return finish(args, model, split, val_pairs, val_name, history, ctx)


def _gather(obj, ctx: Context) -> list:
    """Every rank's ``obj`` on every rank (only rank 0 uses them)."""
    if ctx.world_size == 1:
        return [obj]
    everything: list = [None] * ctx.world_size
    dist.all_gather_object(everything, obj)
    return everything


def save_checkpoint(out, ctx, epoch, model, head, optimizer, scheduler, scaler, history) -> None:
    # Partial FC's centres, the optimiser's moments of them and the RNG differ per rank.
    heads = _gather({k: v.cpu() for k, v in head.state_dict().items()}, ctx)
    optimizers = _gather(optimizer.state_dict(), ctx)
    rngs = _gather(rng_state(), ctx)
    if ctx.main:
        state = {
            "epoch": epoch,
            "world_size": ctx.world_size,
            "model": model.state_dict(),
            "head": heads,
            "optimizer": optimizers,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rngs,
            "history": history,
        }
        save_atomic(state, out / LAST)
    if ctx.world_size > 1:
        dist.barrier()


def finish(args, model, split, val_pairs, val_name, history, ctx) -> dict:
    """Write ``<model>.pt``, its thresholds and result.json (rank 0)."""
    out: Path = args.out
    model_file = checkpoint_path(args.model, out)
    save_atomic({k: v.cpu() for k, v in model.state_dict().items()}, model_file)
    val = evaluate_pairs(model, val_pairs, ctx.device, operating=True)
    thresholds = thresholds_table(args.model, val, val_name)
    (out / BESIDE_CHECKPOINT).write_text(json.dumps(thresholds, indent=2) + "\n")
    test_pairs = random_pairs(split.test, args.val_pairs, args.seed + 1)
    result = {
        "model": args.model,
        "gamma": gamma_of(args),
        "loss": args.loss,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train_images": len(split.train),
        "classes": len(split.classes),
        "validation": {
            "on": val_name,
            **{k: val[k] for k in ("pairs", "accuracy", "best_accuracy")},
        },
        "history": history,
        "checkpoint": str(model_file),
    }
    if test_pairs:
        test = evaluate_pairs(model, test_pairs, ctx.device)
        distances, same = test["cosine"]
        result["test"] = {
            "pairs": len(test_pairs),
            "best_accuracy": test["best_accuracy"],
            "accuracy_10fold": test["accuracy"],
            "accuracy_at_val_threshold": accuracy_at(
                distances, same, thresholds["models"][args.model]["cosine"]["threshold"]
            ),
        }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if gamma_of(args) != model_info(args.model).gamma:
        print(
            f"note: {model_file.name} has gamma {gamma_of(args)}, not {args.model}'s "
            f"{model_info(args.model).gamma}, so python api.py cannot serve it under that name",
            file=sys.stderr,
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = train(args)
    except (FileNotFoundError, CheckpointError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result:
        line = f"validation accuracy {result['validation']['accuracy']:.2%} (10-fold)"
        if "test" in result:
            line += f", test {result['test']['best_accuracy']:.2%} (best threshold)"
        print(f"{line}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
