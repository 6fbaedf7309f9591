"""Evaluate a model on LFW pairs through the service pipeline.

    python -m evaluation.lfw --images DIR --pairs FILE [--model NAME] [--metric cosine]
        [--face center|largest] [--json PATH] [--roc PATH] [--checkpoint-dir DIR] [--cache DIR]

Reads View 1 (``pairsDevTrain.txt``/``pairsDevTest.txt``) and View 2 (``pairs.txt``, ten folds).
On View 2 accuracy is the 10-fold protocol (threshold fitted on nine folds, tested on the tenth);
on View 1 it is the best single threshold on the pairs themselves. The committed default threshold
is reported too: it is what a user of /verify gets.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import environment
from backbones.catalog import DEFAULT_MODEL, MODELS, CheckpointError
from evaluation.embeddings import DEFAULT_CACHE_DIR, FALLBACK, EmbeddedImages, embed_images
from evaluation.metrics import kfold_accuracy, rates_at, roc_points, tar_at_far
from evaluation.pairs import Pair, PairsFormatError, read_pairs, unique_images
from verification import (
    METRICS,
    PIPELINE_VERSION,
    InputError,
    Verifier,
    accuracy_at,
    best_threshold,
    pairwise_distances,
)

FARS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Evaluation:
    report: dict
    distances: np.ndarray
    same: np.ndarray


def pair_distances(
    pairs: list[Pair], embedded: EmbeddedImages, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    first = np.stack([embedded.embedding(p.first) for p in pairs])
    second = np.stack([embedded.embedding(p.second) for p in pairs])
    return pairwise_distances(first, second, metric), np.array([p.same for p in pairs])


def evaluate(
    verifier: Verifier,
    pairs: list[Pair],
    metric: str = "cosine",
    face: str = "center",
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> Evaluation:
    """Embed every image of ``pairs`` once and measure ``verifier`` on them."""
    embedded = embed_images(verifier, unique_images(pairs), face, cache_dir, progress)
    distances, same = pair_distances(pairs, embedded, metric)
    folds = np.array([p.fold for p in pairs])
    report = {
        "model": verifier.model_name,
        "metric": metric,
        "face": face,
        "pipeline_version": PIPELINE_VERSION,
        **accuracy_report(distances, same, folds),
        **threshold_report(distances, same, verifier.thresholds.threshold(metric)),
        "thresholds_from": str(verifier.thresholds.source) if verifier.thresholds.source else None,
        "tar_at_far": far_report(distances, same),
        **image_report(embedded),
    }
    return Evaluation(report, distances, same)


def accuracy_report(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    accuracy = kfold_accuracy(distances, same, folds)
    n_folds = len(accuracy.thresholds)
    protocol = (
        f"{n_folds}-fold: threshold fitted on {n_folds - 1} folds, tested on the remaining one"
        if n_folds > 1
        else "one fold: best threshold fitted and tested on the same pairs (optimistic)"
    )
    return {
        "pairs": int(same.size),
        "same_pairs": int(same.sum()),
        "different_pairs": int((~same).sum()),
        "folds": n_folds,
        "accuracy": round(accuracy.mean, 6),
        "accuracy_std": round(accuracy.std, 6),
        "accuracy_protocol": protocol,
    }


def threshold_report(distances: np.ndarray, same: np.ndarray, default: float | None) -> dict:
    """Accuracy at the model's default threshold (the one /verify uses) and at the best one."""
    best, best_accuracy = best_threshold(distances, same)
    return {
        "default_threshold": default,
        "accuracy_at_default_threshold": (
            None if default is None else round(accuracy_at(distances, same, default), 6)
        ),
        "best_threshold": round(best, 6),
        "accuracy_at_best_threshold": round(best_accuracy, 6),
    }


def far_report(distances: np.ndarray, same: np.ndarray) -> dict:
    report = {}
    for far in FARS:
        result = tar_at_far(distances, same, far)
        report[str(far)] = {
            "tar": round(result.tar, 6),
            "threshold": round(result.threshold, 6),
            "false_accepts": result.false_accepts,
            "different_pairs": result.different_pairs,
        }
    return report


def image_report(embedded: EmbeddedImages) -> dict:
    computed = len(embedded.images) - embedded.cached_images
    seconds = embedded.seconds_per_image
    return {
        "images": len(embedded.images),
        "no_face": len(embedded.no_face_images),
        "no_face_images": [str(path) for path in embedded.no_face_images],
        "fallback": FALLBACK,
        "cached_images": embedded.cached_images,
        "seconds_per_image": None if seconds is None else round(seconds, 4),
        "seconds_per_image_source": (
            f"measured in this run on the {computed} images not in the cache"
            if computed
            else "all images from the cache: the figure stored by the run that computed them"
        ),
    }


def format_report(report: dict) -> str:
    """The short table printed by the command."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2%}"

    default = report["default_threshold"]
    rows = [
        ("model", f"{report['model']} ({report['metric']}, face: {report['face']})"),
        (
            "pairs",
            f"{report['pairs']} ({report['same_pairs']} same, {report['different_pairs']} "
            f"different), {report['folds']} fold(s)",
        ),
        ("accuracy", f"{pct(report['accuracy'])} ± {pct(report['accuracy_std'])}"),
        ("best threshold", f"{report['best_threshold']:.4f}"),
        (
            "at default threshold",
            "n/a (no calibrated threshold)"
            if default is None
            else f"{pct(report['accuracy_at_default_threshold'])} (threshold {default:.4f})",
        ),
    ]
    for far, entry in report["tar_at_far"].items():
        rows.append(
            (
                f"TAR @ FAR {float(far):.0e}".replace("e-0", "e-"),
                f"{pct(entry['tar'])} (threshold {entry['threshold']:.4f}, "
                f"{entry['false_accepts']}/{entry['different_pairs']} false accepts)",
            )
        )
    rows += [
        (
            "no face",
            f"{report['no_face']} of {report['images']} images "
            "(fallback: template on the image centre)",
        ),
        (
            "seconds per image",
            f"{report['seconds_per_image']} ({report['cached_images']} cached; "
            f"{report['seconds_per_image_source']})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def plot_roc(evaluation: Evaluation, path: Path) -> None:
    """ROC curve as a PNG: log-scale FAR, the committed default threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = evaluation.report
    # A log axis cannot show FAR 0: the best TAR at FAR 0 is drawn at half the smallest FAR.
    floor = 0.5 / max(report["different_pairs"], 1)
    far, tar = roc_points(evaluation.distances, evaluation.same)
    shown = (far > 0) | (np.arange(far.size) == np.flatnonzero(far == 0)[-1])
    far, tar = np.maximum(far[shown], floor), tar[shown]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.step(far, tar, where="post", label=report["model"])
    lowest = tar.min()
    default = report["default_threshold"]
    if default is not None:
        point_far, point_tar = rates_at(evaluation.distances, evaluation.same, default)
        point = (max(point_far, floor), point_tar)
        ax.plot(*point, "o", color="tab:red", clip_on=False)
        label = f"default threshold {default:.4f}\nFAR {point_far:.2%}, TAR {point_tar:.2%}"
        ax.annotate(label, point, textcoords="offset points", xytext=(10, -30))
        lowest = min(lowest, point_tar)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(max(0.0, lowest - 0.02), 1.002)
    ax.set_xlabel(f"false accept rate (FAR; 0 drawn at {floor:.0e})")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(f"LFW ROC, {report['pairs']} pairs, {report['metric']} distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with NAME/NAME_i.jpg")
    parser.add_argument("--pairs", type=Path, required=True, help="View 1 or View 2 pairs file")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=list(MODELS))
    parser.add_argument("--metric", default="cosine", choices=METRICS)
    parser.add_argument("--face", default="center", choices=("center", "largest"))
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--roc", type=Path, help="write the ROC curve here (PNG)")
    parser.add_argument("--checkpoint-dir", help="default: $EDGEFACE_CHECKPOINT_DIR")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pairs = read_pairs(args.pairs, args.images)
        verifier = Verifier.load(args.model, **environment.verifier_options(args.checkpoint_dir))
        evaluation = evaluate(
            verifier, pairs, args.metric, args.face, None if args.no_cache else args.cache
        )
    except (FileNotFoundError, PairsFormatError, CheckpointError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {"pairs_file": str(args.pairs), **evaluation.report}
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.roc:
        plot_roc(evaluation, args.roc)
        print(f"wrote {args.roc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
