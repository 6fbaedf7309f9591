"""LoRALin compression measured: SVD alone and after distillation, for several gammas.

    python -m benchmarks.compression --crops CROPS_DEV CROPS_TRAIN --lfw LFW_DEV --out DIR \\
        [--rows xs:0.6 xs:0.2 s:0.3 ...] [--epochs 4] [--svd activations] [--json PATH]
    python -m benchmarks.compression --timing 5 --out DIR [--rows ...]

For each row (a teacher of the model table and a gamma) it builds the SVD-initialised student
(``training.compress``), measures parameters, MFLOPs (``torch.utils.flop_counter``, counted as the
paper counts them) and ONNX Runtime milliseconds per face on one thread, then the best-
threshold accuracy on LFW View 1 DevTest pairs after SVD alone, distils the student on every crop
of people outside DevTest, and measures the accuracy again. Accuracy is computed on the DevTest
crops that ``python -m training.prepare --face center`` wrote, which are the crops the service
embeds for those images; ``python -m evaluation.lfw --checkpoint-dir DIR/<row>`` gives the full
pipeline's figure for any distilled checkpoint.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import environment
from backbones.catalog import model_info
from backbones.checkpoints import load_model
from backbones.edgeface import count_parameters
from face_alignment.networks import onnx_session
from training.compress import (
    CALIBRATION_CROPS,
    SVD_METHODS,
    calibration_crops,
    compressed_model,
    distill,
    embed,
    find_crops,
    identities_in,
    read_crops,
    student_name,
    teacher_targets,
)
from training.data import lfw_crop_pairs
from verification.export import export_network
from verification.thresholds import best_threshold

TEACHERS = {"xs": "edgeface_xs_q", "s": "edgeface_s_gamma_05"}
DEFAULT_ROWS = ("xs:0.6", "xs:0.2", "xs:0.4", "xs:0.8", "s:0.2", "s:0.3")


def mflops(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 112, 112))
    # Two per multiply-add, as the paper counts: S 306, XS gamma 0.6 154, XXS 95 MFLOPs.
    return counter.get_total_flops() / 1e6


def onnx_ms_per_face(model: torch.nn.Module, runs: int = 30) -> float:
    with tempfile.TemporaryDirectory() as folder:
        axes = {"input": {0: "batch"}, "embedding": {0: "batch"}}
        path = export_network(model, Path(folder) / "m.onnx", (1, 3, 112, 112), ["embedding"], axes)
        session = onnx_session(path, threads=1)
        face = np.random.default_rng(0).uniform(-1, 1, (1, 3, 112, 112)).astype(np.float32)
        for _ in range(5):
            session.run(None, {"input": face})
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, {"input": face})
            times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


class DevTest:
    """LFW View 1 DevTest pairs over the prepared crops."""

    def __init__(self, lfw: Path, crops: Path) -> None:
        pairs = lfw_crop_pairs(lfw / "pairsDevTest.txt", crops)
        paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
        index = {p: i for i, p in enumerate(paths)}
        self.first = np.array([index[p.first] for p in pairs])
        self.second = np.array([index[p.second] for p in pairs])
        self.same = np.array([p.same for p in pairs])
        self.crops = read_crops(paths)
        self.pairs = len(pairs)

    def accuracy(self, model: torch.nn.Module) -> float:
        embeddings = embed(model, self.crops).numpy()
        distances = 1 - (embeddings[self.first] * embeddings[self.second]).sum(1)
        return best_threshold(distances, self.same)[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compression", description=__doc__)
    parser.add_argument(
        "--crops",
        type=Path,
        nargs="+",
        help="folders of training.prepare crops; the first holds LFW View 1's",
    )
    parser.add_argument(
        "--lfw", type=Path, default=None, help="LFW View 1 (default $EDGEFACE_LFW_DIR)"
    )
    parser.add_argument("--out", type=Path, required=True, help="where the students go")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=list(DEFAULT_ROWS),
        help="TEACHER:GAMMA with TEACHER one of " + ", ".join(TEACHERS),
    )
    parser.add_argument(
        "--svd", choices=SVD_METHODS, default="activations", help="as training.compress"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument(
        "--timing",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only time ONNX Runtime per face, teachers and the students already in --out, "
        "in this many interleaved rounds",
    )
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def timing(rows: Sequence[str], out: Path, checkpoints: Path, rounds: int) -> dict[str, list]:
    """ONNX Runtime ms per face (one thread) of each row's teacher and of its distilled student
    in ``out``, in ``rounds`` interleaved rounds: run it on an otherwise idle machine."""
    models: dict[str, torch.nn.Module] = {}
    for row in rows:
        key, gamma = row.split(":")
        teacher = TEACHERS[key]
        models.setdefault(teacher, load_model(teacher, checkpoints))
        name = student_name(teacher, float(gamma))
        models[name] = load_model(name, out / name)
    times: dict[str, list] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(onnx_ms_per_face(model))
    for name, values in times.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{name}: {np.median(values):.2f} ms/face (rounds {spread})")
    return times


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoints = environment.checkpoint_dir(args.checkpoint_dir)
    if args.timing:
        times = timing(args.rows, args.out, checkpoints, args.timing)
        if args.json:
            args.json.write_text(json.dumps({"onnx_ms_rounds": times}, indent=2) + "\n")
        return 0
    if not args.crops:
        raise SystemExit("--crops is needed, unless --timing")
    lfw = args.lfw or environment.lfw_dir()
    devtest = DevTest(lfw, args.crops[0])
    exclude = identities_in(lfw / "pairsDevTest.txt")
    if (lfw / "peopleDevTest.txt").is_file():
        exclude |= identities_in(lfw / "peopleDevTest.txt")
    paths = find_crops(args.crops, exclude)
    crops = read_crops(paths)
    print(
        f"DevTest: {devtest.pairs} pairs; distillation: "
        f"{len(crops)} crops, DevTest's {len(exclude)} people left out",
        flush=True,
    )
    results = {"devtest_pairs": devtest.pairs, "distill_crops": len(crops), "rows": []}
    teachers: dict[str, tuple] = {}  # name: (model, its embeddings of the crops)
    for row in args.rows:
        key, gamma = row.split(":")
        teacher_name = TEACHERS[key]
        if teacher_name not in teachers:
            teacher = load_model(teacher_name, checkpoints)
            # Cached: the teacher's embeddings of every crop take minutes on a small CPU.
            digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:12]
            cache = args.out / f"targets-{teacher_name}-{digest}.pt"
            if cache.is_file():
                targets = torch.load(cache)
            else:
                targets = teacher_targets(teacher, crops)
                args.out.mkdir(parents=True, exist_ok=True)
                torch.save(targets, cache)
            teachers[teacher_name] = (teacher, targets)
            results["rows"].append(
                {
                    "model": teacher_name,
                    "gamma": model_info(teacher_name).gamma,
                    "parameters": count_parameters(teacher),
                    "mflops": mflops(teacher),
                    "onnx_ms": onnx_ms_per_face(teacher),
                    "accuracy": devtest.accuracy(teacher),
                }
            )
            print(json.dumps(results["rows"][-1]), flush=True)
        teacher, targets = teachers[teacher_name]
        name = student_name(teacher_name, float(gamma))
        calibration = None
        if args.svd != "weights":
            calibration = calibration_crops(crops, CALIBRATION_CROPS, seed=0)
        started = time.perf_counter()
        student = compressed_model(teacher, name, calibration, args.svd)
        svd_seconds = time.perf_counter() - started
        record = {
            "model": name,
            "teacher": teacher_name,
            "gamma": float(gamma),
            "svd": args.svd,
            "svd_seconds": svd_seconds,
            "parameters": count_parameters(student),
            "mflops": mflops(student),
            "onnx_ms": onnx_ms_per_face(student),
            "svd_accuracy": devtest.accuracy(student),
        }
        if calibration is not None:
            # The plain SVD of the same row, for comparison: what the weighting wins.
            record["svd_weights_accuracy"] = devtest.accuracy(compressed_model(teacher, name))
        started = time.perf_counter()
        distill(student, crops, targets, args.epochs, args.batch_size, args.lr)
        record["distill_seconds"] = time.perf_counter() - started
        record["epochs"] = args.epochs
        record["accuracy"] = devtest.accuracy(student)
        (args.out / name).mkdir(parents=True, exist_ok=True)
        torch.save(student.state_dict(), args.out / name / model_info(name).checkpoint_file)
        results["rows"].append(record)
        print(json.dumps(record), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results["rows"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def format_table(rows: list[dict]) -> str:
    lines = [
        "| model | from | gamma | parameters | MFLOPs | ONNX ms/face | SVD alone (weights / "
        "activations) | distilled "
        "| distillation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        svd = f"{r['svd_accuracy']:.1%}" if "svd_accuracy" in r else "-"
        if "svd_weights_accuracy" in r:  # weights / activations
            svd = f"{r['svd_weights_accuracy']:.1%} / {svd}"
        took = (
            f"{r['distill_seconds'] / 60:.0f} min, {r['epochs']} epochs" if "epochs" in r else "-"
        )
        lines.append(
            f"| `{r['model']}` | {r.get('teacher', '(teacher)')} | {r['gamma']} "
            f"| {r['parameters'] / 1e6:.2f} M | {r['mflops']:.0f} | {r['onnx_ms']:.1f} | {svd} "
            f"| {r['accuracy']:.1%} | {took} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
