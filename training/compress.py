"""LoRALin compression: a trained model made low-rank by truncated SVD, then distilled back.

    python -m training.compress --teacher edgeface_xs_q --gamma 0.6 --data CROPS [CROPS ...] \\
        --out DIR [--svd weights|activations] [--epochs 8] [--batch-size 64] \\
        [--augment flip|jitter|mixup] [--features W] [--exclude-people peopleDevTest.txt]

1. The student is the teacher's architecture with every Linear that the model table's rule
   replaces (``backbones.lora.replace_linear_with_lowrank``) turned into LoRALin at ``gamma``;
   every other weight is copied as it is. Each low-rank pair starts from the truncated SVD of the
   teacher's weight ``W ~ U_r S_r V_r^T``: ``linear1 = S_r^1/2 V_r^T``, ``linear2 = U_r S_r^1/2``
   (bias on linear2). By Eckart-Young that is the best rank-r layer in Frobenius norm, and at full
   rank it is the teacher's layer. A teacher that is itself LoRALin (``edgeface_s_gamma_05``) is
   compressed further through the SVD of the product of its pair. That is ``--svd weights``.
   The default, ``--svd activations``, weights that SVD by the second moment of each layer's
   inputs on a few hundred crops, which makes the pair the best rank-r layer for what the layer
   actually sees rather than for its weight (XS at gamma 0.6: 96.5% on LFW DevTest before any
   distillation, against 73.6%).
2. Distillation: the student learns to give each crop the teacher's normalised embedding (loss:
   cosine distance), on crops from ``python -m training.prepare`` with horizontal flips. No
   identity labels are needed. The teacher embeds every crop and its mirror once, up front;
   with ``--augment jitter`` or ``mixup`` it embeds every augmented batch instead.

DIR gets ``<student>.pt`` (a state dict that the model table's row for the student loads
strictly, so ``python api.py --model <student> --checkpoint-dir DIR`` serves it),
``compress.json`` (settings, ranks, parameters, loss per epoch, times) and ``compress.png``.
"""

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

import environment
from backbones.catalog import MODELS, model_info
from backbones.checkpoints import load_model
from backbones.edgeface import EdgeFace, count_parameters, get_model
from backbones.lora import LoRALin
from training import data
from verification.embedding import to_batch

REPORT = "compress.json"
CURVE = "compress.png"
# Relative to the mean eigenvalue of an input moment (see svd_factors).
MOMENT_DAMPING = 1e-4
# Crops whose layer inputs weight the SVD (--svd activations): enough positions for every
# moment (each crop gives hundreds per layer), a few seconds of teacher time.
CALIBRATION_CROPS = 512
SVD_METHODS = ("weights", "activations")  # see compressed_model
# flip: the cached targets of each crop and its mirror. jitter: each batch also shifted and
# scaled at random (alignment noise) and embedded by the teacher as the student sees it.
# mixup: jitter, then each image blended with another of the batch, the teacher again embedding
# exactly what the student sees ("consistent teaching", Beyer et al., CVPR 2022).
AUGMENTATIONS = ("flip", "jitter", "mixup")
JITTER_SHIFT = 0.06  # of the crop's side, either way
JITTER_SCALE = 0.08  # zoom in or out by up to this share
# --features: every block of every stage (timm's EdgeNeXt names them stages.S.blocks.B).
FEATURE_BLOCK = re.compile(r"(^|\.)stages\.\d+\.blocks\.\d+$")


def student_name(teacher: str, gamma: float) -> str:
    """The model table's name for the teacher's backbone made LoRALin at ``gamma``."""
    backbone = model_info(teacher).backbone
    for info in MODELS.values():
        if info.backbone == backbone and info.gamma is not None and math.isclose(info.gamma, gamma):
            return info.name
    raise ValueError(
        f"the model table has no row for {backbone} at gamma {gamma:g}; add one to "
        "backbones/catalog.py so that the compressed checkpoint has a name to be served by"
    )


def dense_weight(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    """(out x in weight, bias) of a Linear, or of a LoRALin pair multiplied out."""
    if isinstance(layer, LoRALin):
        return layer.linear2.weight @ layer.linear1.weight, layer.linear2.bias
    if isinstance(layer, nn.Linear):
        return layer.weight, layer.bias
    raise TypeError(f"expected a Linear or LoRALin layer, got {type(layer).__name__}")


def svd_factors(weight: Tensor, rank: int, moment: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(rank x in, out x rank)`` factors whose product is the best rank-``rank`` ``weight``.

    Without ``moment``: best for the weight itself (Eckart-Young, ``W = U S V^T``). With
    ``moment``, the second moment ``E[x x^T]`` of the layer's inputs: best for the layer's output
    on those inputs, i.e. the rank-r ``W_r`` that minimises ``E ||W x - W_r x||^2``. With
    ``C = R R`` (``R`` the symmetric square root) that is ``E ||...|| = ||(W - W_r) R||_F``, so
    the truncated SVD of ``W R`` mapped back by ``R^-1``. Directions that inputs hardly use cost
    little to lose, so the rank goes where the signal is.
    """
    w = weight.detach().double()
    inverse_root = None
    if moment is not None:
        values, vectors = torch.linalg.eigh(moment.double())
        # A little damping: input directions that never vary would otherwise blow up R^-1.
        values = values.clamp_min(0) + MOMENT_DAMPING * values.clamp_min(0).mean()
        root = (vectors * values.sqrt()) @ vectors.T
        inverse_root = (vectors * values.rsqrt()) @ vectors.T
        w = w @ root
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    scale = s[:rank].sqrt()
    first = scale[:, None] * vh[:rank]
    if inverse_root is not None:
        first = first @ inverse_root
    second = u[:, :rank] * scale[None, :]
    return first.to(weight.dtype), second.to(weight.dtype)


@torch.no_grad()
def input_moments(
    model: nn.Module, names: Iterable[str], crops: np.ndarray, batch_size: int = 64
) -> dict[str, Tensor]:
    """``E[x x^T]`` (float64) of the inputs of each named layer of ``model`` over ``crops``,
    every position of the feature map counting as one input (as the layer sees it)."""
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def accumulate(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + (x.T @ x).double()
            counts[name] = counts.get(name, 0) + x.shape[0]

        return accumulate

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        embed(model, crops, batch_size)
    finally:
        for handle in handles:
            handle.remove()
    return {name: sums[name] / counts[name] for name in sums}


@torch.no_grad()
def svd_student(
    teacher: nn.Module, student: nn.Module, moments: dict[str, Tensor] | None = None
) -> nn.Module:
    """Fill ``student`` (the teacher's architecture with LoRALin layers) from ``teacher``:
    LoRALin pairs from the truncated SVD of the teacher's layer (weighted by the layer's input
    moment where ``moments`` has one, see ``svd_factors``), everything else copied."""
    teacher_layers = dict(teacher.named_modules())
    low_rank = lowrank_layers(student)
    moments = moments or {}
    for name in low_rank:
        layer = student.get_submodule(name)
        weight, bias = dense_weight(teacher_layers[name])
        first, second = svd_factors(weight, layer.linear1.out_features, moments.get(name))
        layer.linear1.weight.copy_(first)
        layer.linear2.weight.copy_(second)
        if bias is not None:
            layer.linear2.bias.copy_(bias)
    inside_pairs = tuple(f"{name}." for name in low_rank)
    teacher_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if not key.startswith(inside_pairs):
            value.copy_(teacher_state[key])
    return student


def lowrank_layers(model: nn.Module) -> list[str]:
    """Names of the LoRALin layers of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, LoRALin)]


def compressed_model(
    teacher: nn.Module,
    student: str,
    calibration: np.ndarray | None = None,
    method: str = "weights",
) -> EdgeFace:
    """The table's ``student`` model initialised by SVD from ``teacher``.

    ``weights``: each pair from its teacher weight alone. ``activations``: weighted by what the
    teacher's layer sees on the ``calibration`` crops (``input_moments``).
    """
    model = get_model(student)
    if method == "weights":
        return svd_student(teacher, model).eval()
    if calibration is None:
        raise ValueError(f"--svd {method} needs calibration crops")
    if method == "activations":
        return svd_student(
            teacher, model, input_moments(teacher, lowrank_layers(model), calibration)
        ).eval()
    raise ValueError(f"unknown SVD method {method!r}; one of {', '.join(SVD_METHODS)}")


def calibration_crops(crops: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` crops drawn with ``seed`` (all of them if there are fewer)."""
    if count >= len(crops):
        return crops
    return crops[np.sort(np.random.default_rng(seed).choice(len(crops), count, replace=False))]


def identities_in(file: Path) -> set[str]:
    """Names in an LFW people file (``NAME<TAB>count``) or pairs file."""
    names = set()
    for line in file.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) in (2, 3):
            names.add(fields[0])
        elif len(fields) == 4:
            names.update((fields[0], fields[2]))
    return names


def find_crops(folders: Iterable[Path], exclude: set[str] = frozenset()) -> list[Path]:
    """Every ``FOLDER/NAME/*.png`` crop (``training.prepare``'s layout) of people not excluded,
    each image once."""
    crops: dict[tuple[str, str], Path] = {}
    for folder in folders:
        for sample in data.find_crops(folder):
            # The same image prepared into two folders (LFW subsets overlap) counts once.
            if sample.identity not in exclude:
                crops.setdefault((sample.identity, sample.path.stem), sample.path)
    if not crops:
        raise FileNotFoundError("every crop belongs to an excluded identity")
    return list(crops.values())


def read_crops(paths: Sequence[Path]) -> np.ndarray:
    """N x 112 x 112 x 3 uint8."""
    return np.stack([data.read_crop(p) for p in paths])


@torch.no_grad()
def embed(model: nn.Module, crops: np.ndarray, batch_size: int = 128) -> Tensor:
    """Normalised embeddings of uint8 crops, as the service computes them."""
    model.eval()
    out = [
        model(torch.from_numpy(to_batch(crops[start : start + batch_size])))
        for start in range(0, len(crops), batch_size)
    ]
    return nn.functional.normalize(torch.cat(out), dim=1)


def teacher_targets(teacher: nn.Module, crops: np.ndarray) -> Tensor:
    """2 x N x 512: the teacher's embedding of every crop and of its mirror image."""
    return torch.stack([embed(teacher, crops), embed(teacher, crops[:, :, ::-1].copy())])


def cosine_distance(student: nn.Module, crops: np.ndarray, targets: Tensor) -> float:
    """Mean cosine distance between the student's and the teacher's embeddings (no flips)."""
    return float((1 - (embed(student, crops) * targets[0]).sum(1)).mean())


def jitter(batch: Tensor, generator: torch.Generator) -> Tensor:
    """Each image of an N x 3 x H x W batch shifted and scaled at random (edges repeated)."""
    n = len(batch)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * JITTER_SCALE
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * JITTER_SHIFT)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    return nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)


def mixup(batch: Tensor, generator: torch.Generator) -> Tensor:
    """Each image blended with another image of the batch, in a share drawn uniformly."""
    share = torch.rand(len(batch), 1, 1, 1, generator=generator)
    other = torch.randperm(len(batch), generator=generator)
    return share * batch + (1 - share) * batch[other]


def feature_blocks(model: nn.Module) -> list[str]:
    """Names of the blocks whose outputs ``--features`` matches (every block of every stage)."""
    return [name for name, _ in model.named_modules() if FEATURE_BLOCK.search(name)]


def record_outputs(model: nn.Module, names: Sequence[str]) -> tuple[dict[str, Tensor], list]:
    """A dict that every forward pass of ``model`` fills with the output of each named module,
    and the hooks' handles (``handle.remove()`` when done)."""
    outputs: dict[str, Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            outputs[name] = output

        return record

    return outputs, [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]


def block_errors(student: dict[str, Tensor], teacher: dict[str, Tensor]) -> Tensor:
    """Each block's squared error relative to the teacher block's output energy, so that every
    block counts alike whatever the scale of its activations (``--features`` minimises the
    mean), in the teacher's order."""
    errors = [
        (student[name] - out).pow(2).sum() / out.pow(2).sum().clamp_min(1e-12)
        for name, out in teacher.items()
    ]
    return torch.stack(errors)


def distill(
    student: nn.Module,
    crops: np.ndarray,
    targets: Tensor | None,
    epochs: int,
    batch_size: int = 64,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    seed: int = 0,
    on_epoch=None,
    teacher: nn.Module | None = None,
    augment: str = "flip",
    features: float = 0.0,
) -> list[dict]:
    """Train ``student`` so that its normalised embeddings match the teacher's (AdamW, one epoch
    of linear warm-up inside a cosine decay). Returns one record per epoch
    (``loss``: the mean cosine distance on the training batches).

    With ``augment="flip"`` and no ``features`` the targets are ``targets`` (see
    ``teacher_targets``); otherwise ``teacher`` embeds every batch as the student sees it. With
    ``features`` > 0 the loss adds that weight times the mean of ``block_errors`` over every block
    (``feature_blocks``): the student, the teacher's architecture with low-rank layers, is
    also asked to reproduce each block's output, far more targets per crop than one embedding."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, not {augment!r}")
    if features < 0:
        raise ValueError(f"features must be 0 or more, not {features:g}")
    online = augment != "flip" or features > 0
    if online and teacher is None:
        raise ValueError(f"augment={augment!r} with features={features:g} needs the teacher")
    if teacher is not None:
        teacher.eval()
    handles = []
    if features > 0:
        blocks = feature_blocks(student)
        if not blocks or blocks != feature_blocks(teacher):
            raise ValueError("features needs a student and teacher with the same blocks")
        student_blocks, student_handles = record_outputs(student, blocks)
        teacher_blocks, teacher_handles = record_outputs(teacher, blocks)
        handles = student_handles + teacher_handles
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(crops) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total // 10 + 1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        ),
    )
    history = []
    try:
        for epoch in range(epochs):
            student.train()
            order = torch.randperm(len(crops), generator=generator)
            flips = torch.rand(len(crops), generator=generator) < 0.5
            distances, feature_errors, started = [], [], time.perf_counter()
            bar = tqdm(range(steps_per_epoch), desc=f"distil {epoch + 1}/{epochs}", leave=False)
            for step in bar:
                index = order[step * batch_size : (step + 1) * batch_size]
                flip = flips[index]
                batch = crops[index.numpy()]
                batch[flip.numpy()] = batch[flip.numpy(), :, ::-1]
                images = torch.from_numpy(to_batch(batch))
                if augment != "flip":
                    images = jitter(images, generator)
                    if augment == "mixup":
                        images = mixup(images, generator)
                if online:
                    with torch.no_grad():
                        target = nn.functional.normalize(teacher(images), dim=1)
                else:
                    target = targets[flip.long(), index]
                out = nn.functional.normalize(student(images), dim=1)
                loss = distance = (1 - (out * target).sum(1)).mean()
                if handles:
                    error = block_errors(student_blocks, teacher_blocks).mean()
                    loss = distance + features * error
                    feature_errors.append(error.item())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                distances.append(distance.item())
                bar.set_postfix(loss=f"{distance.item():.4f}")
            record = {
                "epoch": epoch + 1,
                "loss": float(np.mean(distances)),
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
            }
            if feature_errors:
                record["feature_error"] = float(np.mean(feature_errors))
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        for handle in handles:
            handle.remove()
    student.eval()
    return history


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [0] + [h["epoch"] for h in history]
    ax.plot(epochs, [history[0]["start_cosine"]] + [h["cosine"] for h in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cosine distance to the teacher (held-out crops)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.compress",
        description="Make a trained EdgeFace low-rank (LoRALin) by SVD, then distil it.",
    )
    parser.add_argument("--teacher", required=True, help="a model of the table, e.g. edgeface_xs_q")
    parser.add_argument("--gamma", type=float, required=True, help="LoRALin rank ratio")
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="folders of crops from python -m training.prepare",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--exclude-people",
        type=Path,
        action="append",
        default=[],
        help="LFW people or pairs file whose identities are left out (keep "
        "the identities you evaluate on out of distillation)",
    )
    parser.add_argument(
        "--svd",
        choices=SVD_METHODS,
        default="activations",
        help="weights: truncated SVD of each weight (the best rank-r weight); activations: "
        "weighted by the layer's inputs on calibration crops (the best rank-r output on them)",
    )
    parser.add_argument(
        "--calibration",
        type=int,
        default=CALIBRATION_CROPS,
        help="with --svd activations: how many training crops weight the SVD",
    )
    parser.add_argument("--epochs", type=int, default=8, help="0: SVD alone")
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="flip",
        help="flip: cached teacher embeddings of each crop and its mirror; jitter: random "
        "shifts and zooms too; mixup: jitter and blends of two crops (the teacher embeds each "
        "batch as the student sees it: about a third more time per epoch)",
    )
    parser.add_argument(
        "--features",
        type=float,
        default=0.0,
        metavar="W",
        help="also match every block's output to the teacher's, with this weight on the mean "
        "relative squared error (0: the embedding alone; the teacher then runs on every batch)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.05,
        help="share of crops kept out of training to measure the distance",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="where the teacher's weights are (default: $EDGEFACE_CHECKPOINT_DIR)",
    )
    args = parser.parse_args(argv)
    if args.features < 0:
        parser.error(f"--features must be 0 or more, not {args.features:g}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        student = student_name(args.teacher, args.gamma)
        exclude = set().union(*(identities_in(f) for f in args.exclude_people))
        paths = find_crops(args.data, exclude)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    teacher = load_model(args.teacher, environment.checkpoint_dir(args.checkpoint_dir))
    started = time.perf_counter()
    crops = read_crops(paths)
    rng = np.random.default_rng(args.seed)
    held = rng.random(len(crops)) < args.held_out
    print(f"{len(crops)} crops ({int(held.sum())} held out), {len(exclude)} identities excluded")
    # Augmented batches get their targets as they are drawn: cache only what is used.
    held_targets = teacher_targets(teacher, crops[held])
    cached = args.augment == "flip" and not args.features
    train_targets = teacher_targets(teacher, crops[~held]) if cached else None
    teacher_seconds = time.perf_counter() - started

    calibration = None
    if args.svd != "weights":
        calibration = calibration_crops(crops[~held], args.calibration, args.seed)
    model = compressed_model(teacher, student, calibration, args.svd)
    start_cosine = cosine_distance(model, crops[held], held_targets)
    print(
        f"{student}: {count_parameters(model):,} parameters (teacher "
        f"{count_parameters(teacher):,}); SVD ({args.svd}) alone: cosine distance "
        f"{start_cosine:.4f}"
    )

    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        record["cosine"] = cosine_distance(model, crops[held], held_targets)
        record["start_cosine"] = start_cosine
        print(
            f"epoch {record['epoch']}: train loss {record['loss']:.4f}, held-out cosine "
            f"distance {record['cosine']:.4f}, {record['seconds']:.0f} s",
            flush=True,
        )

    distill_started = time.perf_counter()
    history = distill(
        model,
        crops[~held],
        train_targets,
        args.epochs,
        args.batch_size,
        args.lr,
        args.weight_decay,
        args.seed,
        on_epoch,
        teacher,
        args.augment,
        args.features,
    )
    distill_seconds = time.perf_counter() - distill_started

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / model_info(student).checkpoint_file)
    report = {
        "teacher": args.teacher,
        "student": student,
        "gamma": args.gamma,
        "ranks": {
            n: m.linear1.out_features for n, m in model.named_modules() if isinstance(m, LoRALin)
        },
        "parameters": count_parameters(model),
        "teacher_parameters": count_parameters(teacher),
        "crops": len(crops),
        "held_out": int(held.sum()),
        "excluded_identities": len(exclude),
        "data": [str(d) for d in args.data],
        "epochs": args.epochs,
        "augment": args.augment,
        "features": args.features,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "svd": args.svd,
        "calibration_crops": 0 if calibration is None else len(calibration),
        "svd_cosine": start_cosine,
        "final_cosine": history[-1]["cosine"] if history else start_cosine,
        "history": history,
        "teacher_embedding_seconds": teacher_seconds,
        "distill_seconds": distill_seconds,
    }
    (args.out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    if history:
        plot_history(history, args.out / CURVE)
    print(f"wrote {args.out / model_info(student).checkpoint_file} and {args.out / REPORT}")
    print(
        f"next: python -m evaluation.calibrate --lfw LFW --models {student} "
        f"--checkpoint-dir {args.out} --out {args.out / 'thresholds.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
