"""What the training heads cost: throughput against a plain loop, and Partial FC at scale.

    python -m benchmarks.training          # full run: tables, benchmarks/results/training.json
    python -m benchmarks.training --quick  # the same JSON shape in seconds (for the tests)

1. Training steps (forward, backward, AdamW step) of the same EdgeFace model on the same
   batches with each head: a plain ``nn.Linear`` + cross-entropy (the baseline), the margin
   heads through Partial FC at sample rate 1.0, Partial FC at 0.1, and the triplet loss.
   Configurations run in interleaved rounds (this machine's speed drifts within a minute);
   each head's overhead is the median over rounds of its time over the baseline's time in the
   same round, both as wall time and as the CPU time the process used (``--threads 1`` makes
   the second exact: on a shared machine a step's wall time includes waiting for a core, its
   CPU time does not). Images are random tensors: data loading is the same for every head and
   left out.
2. Partial FC alone with 100,000 classes: sample rate 0.1 against the full FC (1.0), each in a
   fresh child process; step time and the peak memory the steps add (VmHWM after the steps
   minus VmRSS before the first one).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backbones.catalog import EMBEDDING_SIZE
from backbones.edgeface import get_model
from training.losses import ArcFace, Combined, CosFace, SphereFace, TripletLoss
from training.partial_fc import PartialFC

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
LIMIT = 0.10  # the ceiling: a head may cost at most 10% over the plain loop


class PlainHead(nn.Module):
    """The baseline: an unnormalised linear classifier and cross-entropy."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(EMBEDDING_SIZE, classes)

    def forward(self, embeddings, labels):
        return F.cross_entropy(self.fc(embeddings), labels)


def heads(classes: int) -> dict[str, Callable[[], nn.Module]]:
    return {
        "plain_linear_ce": lambda: PlainHead(classes),
        "cosface": lambda: PartialFC(CosFace(64, 0.4), EMBEDDING_SIZE, classes),
        "arcface": lambda: PartialFC(ArcFace(64, 0.5), EMBEDDING_SIZE, classes),
        "sphereface": lambda: PartialFC(SphereFace(64, 1.35), EMBEDDING_SIZE, classes),
        "combined": lambda: PartialFC(Combined(64, 1.0, 0.3, 0.2), EMBEDDING_SIZE, classes),
        "partial_fc_0.1": lambda: PartialFC(ArcFace(64, 0.5), EMBEDDING_SIZE, classes, 0.1),
        "triplet": lambda: TripletLoss(0.2, "batch_hard"),
    }


def throughput(model_name: str, batch: int, classes: int, steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    model = get_model(model_name).train()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(batch, 3, 112, 112)
    labels = torch.arange(batch) % max(2, batch // 4)  # 4 images per class, for the triplets
    made = {name: make() for name, make in heads(classes).items()}
    seconds: dict[str, list[float]] = {name: [] for name in made}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in made}

    def run(name: str) -> tuple[float, float]:
        model.load_state_dict(initial)  # every head trains the same weights from the same start
        head = made[name]
        optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-4)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(steps):
            loss = head(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start, time.process_time() - cpu_start

    for name in made:  # warm-up, untimed
        run(name)
    for r in range(rounds):
        order = list(made) if r % 2 == 0 else list(reversed(made))
        for name in order:
            wall, cpu = run(name)
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
    base, cpu_base = seconds["plain_linear_ce"], cpu_seconds["plain_linear_ce"]
    table = {}
    for name, times in seconds.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        cpu_ratios = [t / b for t, b in zip(cpu_seconds[name], cpu_base, strict=True)]
        table[name] = {
            "images_per_s": round(batch * steps / statistics.median(times), 2),
            "ratio_to_plain": round(statistics.median(ratios), 4),
            "round_ratios": [round(x, 4) for x in ratios],
            "cpu_ratio_to_plain": round(statistics.median(cpu_ratios), 4),
            "cpu_round_ratios": [round(x, 4) for x in cpu_ratios],
            "within_limit": statistics.median(ratios) <= 1 + LIMIT,
            "cpu_within_limit": statistics.median(cpu_ratios) <= 1 + LIMIT,
        }
    return {
        "model": model_name,
        "batch": batch,
        "classes": classes,
        "steps_per_round": steps,
        "rounds": rounds,
        "heads": table,
    }


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def partial_fc_child(classes: int, sample_rate: float, batch: int, steps: int) -> dict:
    """One configuration in this (fresh) process: step time and the memory the steps add."""
    torch.manual_seed(0)
    head = PartialFC(ArcFace(64, 0.5), EMBEDDING_SIZE, classes, sample_rate)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    embeddings = torch.randn(batch, EMBEDDING_SIZE, requires_grad=True)
    labels = torch.randint(0, classes, (batch,))
    before = rss_mb("VmRSS")
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = head(embeddings, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {
        "sample_rate": sample_rate,
        "centres_used": max(int(sample_rate * classes), batch) if sample_rate < 1 else classes,
        "step_ms_median": round(1000 * statistics.median(times[1:] or times), 2),
        "added_peak_mb": round(rss_mb("VmHWM") - before, 1),
        "parameters_mb": round(classes * EMBEDDING_SIZE * 4 / 2**20, 1),
    }


def partial_fc_scale(classes: int, batch: int, steps: int) -> dict:
    runs = {}
    for rate in (0.1, 1.0):
        command = [sys.executable, "-m", "benchmarks.training", "--child", str(classes), str(rate),
                   str(batch), str(steps)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs[str(rate)] = json.loads(done.stdout.strip().splitlines()[-1])
    sampled, full = runs["0.1"], runs["1.0"]
    return {
        "classes": classes,
        "batch": batch,
        "steps": steps,
        "runs": runs,
        "step_time_ratio_0.1_to_full": round(sampled["step_ms_median"] / full["step_ms_median"], 3),
        "added_memory_ratio_0.1_to_full": round(
            sampled["added_peak_mb"] / max(full["added_peak_mb"], 1e-9), 3
        ),
    }


def format_report(report: dict) -> str:
    t = report["throughput"]
    lines = [
        f"{t['model']}, batch {t['batch']}, {t['classes']} classes, {t['rounds']} rounds of "
        f"{t['steps_per_round']} steps, {report['meta']['threads']} torch threads",
        f"{'head':18s} {'images/s':>9s} {'x plain':>8s} {'CPU x plain':>12s} {'CPU range':>12s}"
        f"  within +{LIMIT:.0%} (CPU)",
    ]
    for name, row in t["heads"].items():
        spread = f"{min(row['cpu_round_ratios']):.2f}-{max(row['cpu_round_ratios']):.2f}"
        lines.append(
            f"{name:18s} {row['images_per_s']:9.1f} {row['ratio_to_plain']:8.3f} "
            f"{row['cpu_ratio_to_plain']:12.3f} {spread:>12s}  "
            f"{'yes' if row['cpu_within_limit'] else 'NO'}"
        )
    p = report["partial_fc"]
    lines.append(f"\nPartial FC alone, {p['classes']:,} classes, batch {p['batch']}, AdamW")
    lines.append(f"{'sample rate':12s} {'centres':>8s} {'step ms':>8s} {'added MB':>9s}")
    for run in p["runs"].values():
        lines.append(
            f"{run['sample_rate']:<12} {run['centres_used']:8d} {run['step_ms_median']:8.1f} "
            f"{run['added_peak_mb']:9.1f}"
        )
    lines.append(
        f"0.1 / full: step time {p['step_time_ratio_0.1_to_full']}, added memory "
        f"{p['added_memory_ratio_0.1_to_full']} (the centres alone: "
        f"{p['runs']['1.0']['parameters_mb']} MB; their gradient and AdamW's two moments are as "
        f"large again each, sampled or not)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        classes, rate, batch, steps = argv[1:5]
        print(json.dumps(partial_fc_child(int(classes), float(rate), int(batch), int(steps))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same JSON shape")
    parser.add_argument("--model", default="edgeface_xxs")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--batch", type=int, help="throughput batch (default 64)")
    parser.add_argument("--steps", type=int, help="steps per head per round (default 3)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads (1: exact CPU-time ratios)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        sizes = {"batch": 8, "classes": 100, "steps": 1, "rounds": 1}
        scale = {"classes": 10_000, "batch": 32, "steps": 2}
    else:
        sizes = {"batch": 64, "classes": 1000, "steps": 3, "rounds": 5}
        scale = {"classes": 100_000, "batch": 128, "steps": 6}
    for key in ("batch", "steps", "rounds"):
        if getattr(args, key):
            sizes[key] = getattr(args, key)
    started = time.monotonic()
    report = {
        "meta": {
            "command": "python -m benchmarks.training " + " ".join(argv),
            "quick": args.quick,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "throughput": throughput(args.model, **sizes),
        "partial_fc": partial_fc_scale(**scale),
    }
    report["meta"]["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
