"""Open-set identification (1:N) on an LFW-layout folder, through the gallery's own search.

python -m evaluation.identify --images DIR [--model NAME] [--json FILE] [--cmc PNG] [--det PNG]

The gallery holds the first image (sorted by name) of every person with at least two images;
the mated probes are those people's other images, the non-mated probes every image of the
people with one image. Embeddings come from ``evaluation.embeddings`` (its cache; the same
pipeline as /verify); they are enrolled in a real SQLite gallery (``gallery``) and searched with
``Gallery.identify``, the code /gallery/identify runs. Reported: rank-1 identification rate
(closed set), FNIR at FPIR 1e-2 and 1e-3 (open set), FPIR and FNIR at the gallery's default
threshold, a CMC curve and a DET curve.
"""

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import environment
from backbones.catalog import DEFAULT_MODEL, MODELS, CheckpointError
from evaluation.embeddings import DEFAULT_CACHE_DIR, embed_images
from gallery import Gallery
from gallery.thresholds import operating_point
from training.prepare import find_images
from verification import InputError, Verifier

FPIRS = (1e-2, 1e-3)
MAX_RANK = 100  # the gallery lists at most this many candidates
CMC_RANKS = 20


@dataclass(frozen=True)
class Searches:
    """Per probe: the rank of its mate (0 when absent from the top ``MAX_RANK``; mated probes
    only) and the distance of the top candidate, and whether that candidate is the mate."""

    mate_rank: np.ndarray  # mated probes
    mated_top: np.ndarray  # distance of the best candidate, mated probes
    mated_top_is_mate: np.ndarray
    non_mated_top: np.ndarray  # distance of the best candidate, non-mated probes
    subjects: int


def split(images: Path) -> tuple[dict[str, Path], list[tuple[str, Path]], list[Path]]:
    """(person -> enrolled image, mated probes (person, image), non-mated probe images)."""
    by_person: dict[str, list[Path]] = {}
    for person, path in find_images(images):
        by_person.setdefault(person, []).append(path)
    enrolled = {p: paths[0] for p, paths in by_person.items() if len(paths) >= 2}
    mated = [(p, path) for p in enrolled for path in by_person[p][1:]]
    non_mated = [paths[0] for p, paths in by_person.items() if len(paths) == 1]
    return enrolled, mated, non_mated


def search(
    gallery: Gallery,
    embeddings: dict[Path, np.ndarray],
    enrolled: dict[str, Path],
    mated: list[tuple[str, Path]],
    non_mated: list[Path],
) -> Searches:
    for person, path in enrolled.items():
        gallery.add_face(person, embeddings[path], [0, 0, 0, 0], 1.0, str(path), True)
    top_k = min(MAX_RANK, len(enrolled))
    results = gallery.identify(np.stack([embeddings[p] for _, p in mated]), top_k)
    ranks = np.array(
        [
            next((i + 1 for i, m in enumerate(matches) if m.subject == person), 0)
            for (person, _), matches in zip(mated, results, strict=True)
        ]
    )
    mated_top = np.array([matches[0].distance for matches in results])
    strangers = gallery.identify(np.stack([embeddings[p] for p in non_mated]), 1)
    return Searches(
        mate_rank=ranks,
        mated_top=mated_top,
        mated_top_is_mate=ranks == 1,
        non_mated_top=np.array([matches[0].distance for matches in strangers]),
        subjects=len(enrolled),
    )


def fpir_at(searches: Searches, threshold: float) -> float:
    """Share of non-mated probes whose best candidate is within the threshold (identified as
    someone)."""
    return float(np.mean(searches.non_mated_top <= threshold))


def fnir_at(searches: Searches, threshold: float) -> float:
    """Share of mated probes not identified as their mate at rank 1 within the threshold."""
    hit = searches.mated_top_is_mate & (searches.mated_top <= threshold)
    return float(1.0 - np.mean(hit))


def threshold_at_fpir(searches: Searches, fpir: float) -> float:
    """The largest threshold whose FPIR is at most ``fpir``: just below the distance of the
    (floor(fpir * n) + 1)-th closest non-mated top candidate."""
    distances = np.sort(searches.non_mated_top)
    allowed = int(np.floor(fpir * distances.size))
    if allowed >= distances.size:
        return float(distances[-1])
    return float(np.nextafter(distances[allowed], -np.inf))


def report(searches: Searches, default_threshold: float, default_far: float | None) -> dict:
    cmc = [float(np.mean((searches.mate_rank >= 1) & (searches.mate_rank <= r)))
           for r in range(1, CMC_RANKS + 1)]  # fmt: skip
    open_set = {}
    for fpir in FPIRS:
        threshold = threshold_at_fpir(searches, fpir)
        open_set[f"{fpir:.0e}"] = {
            "threshold": round(threshold, 6),
            "fpir": fpir_at(searches, threshold),
            "fnir": fnir_at(searches, threshold),
        }
    return {
        "subjects": searches.subjects,
        "mated_probes": int(searches.mate_rank.size),
        "non_mated_probes": int(searches.non_mated_top.size),
        "rank1": cmc[0],
        "cmc": cmc,
        "fnir_at_fpir": open_set,
        "default_threshold": {
            "threshold": default_threshold,
            "far": default_far,
            "fpir": fpir_at(searches, default_threshold),
            "fnir": fnir_at(searches, default_threshold),
        },
    }


def det_points(searches: Searches) -> tuple[np.ndarray, np.ndarray]:
    """(FPIR, FNIR) at every threshold between observed distances."""
    thresholds = np.unique(np.concatenate([searches.non_mated_top, searches.mated_top]))
    fpir = np.searchsorted(np.sort(searches.non_mated_top), thresholds, side="right")
    fpir = fpir / searches.non_mated_top.size
    fnir = np.array([fnir_at(searches, t) for t in thresholds])
    return fpir, fnir


def plot_cmc(result: dict, model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ranks = np.arange(1, len(result["cmc"]) + 1)
    ax.plot(ranks, result["cmc"], "o-", label=model)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (mate within rank)")
    ax.set_title(f"CMC, {result['subjects']} enrolled, {result['mated_probes']} mated probes")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_det(searches: Searches, result: dict, model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpir, fnir = det_points(searches)
    floor = 0.5 / searches.non_mated_top.size  # FPIR 0 cannot sit on a log axis
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.step(np.maximum(fpir, floor), fnir, where="post", label=model)
    default = result["default_threshold"]
    point = (max(default["fpir"], floor), default["fnir"])
    ax.plot(*point, "o", color="tab:red")
    label = f"default threshold {default['threshold']:.4f}"
    ax.annotate(label, point, textcoords="offset points", xytext=(10, 10))
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_xlabel(f"FPIR (non-mated probes identified; 0 drawn at {floor:.0e})")
    ax.set_ylabel("FNIR (mated probes missed at rank 1)")
    ax.set_title(f"DET, {result['subjects']} enrolled subjects")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def evaluate_identification(
    verifier: Verifier, images: Path, cache_dir: Path | None
) -> tuple[Searches, dict]:
    enrolled, mated, non_mated = split(images)
    if not enrolled or not mated or not non_mated:
        raise FileNotFoundError(
            f"{images} needs people with two or more images and people with one image"
        )
    paths = [*enrolled.values(), *(p for _, p in mated), *non_mated]
    embedded = embed_images(verifier, paths, "center", cache_dir)
    embeddings = {p: embedded.embedding(p) for p in paths}
    point = operating_point(verifier.thresholds)
    with tempfile.TemporaryDirectory() as folder:
        gallery = Gallery.open(f"sqlite:///{folder}/eval.db", verifier.model_name, "evaluation")
        try:
            searches = search(gallery, embeddings, enrolled, mated, non_mated)
        finally:
            gallery.close()
    result = {"model": verifier.model_name, "images": str(images)}
    result |= report(searches, point.threshold, point.far)
    result["no_face_images"] = len(embedded.no_face_images)
    return searches, result


def format_report(result: dict) -> str:
    lines = [
        f"model {result['model']}: {result['subjects']} enrolled subjects, "
        f"{result['mated_probes']} mated and {result['non_mated_probes']} non-mated probes",
        f"rank-1 identification rate (closed set): {result['rank1']:.2%}",
    ]
    for fpir, entry in result["fnir_at_fpir"].items():
        at = f"threshold {entry['threshold']:.4f}"
        lines.append(f"FNIR at FPIR {float(fpir):g}: {entry['fnir']:.2%} ({at})")
    default = result["default_threshold"]
    lines.append(
        f"default threshold {default['threshold']:.4f} (FAR {default['far']:g} 1:1): "
        f"FPIR {default['fpir']:.2%}, FNIR {default['fnir']:.2%}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with NAME/*.jpg")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=list(MODELS))
    parser.add_argument("--checkpoint-dir", help="default: $EDGEFACE_CHECKPOINT_DIR")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write it")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--cmc", type=Path, help="write the CMC curve here (PNG)")
    parser.add_argument("--det", type=Path, help="write the DET curve here (PNG)")
    args = parser.parse_args(argv)
    checkpoint_dir = environment.checkpoint_dir(args.checkpoint_dir)
    try:
        verifier = Verifier.load(args.model, **environment.verifier_options(checkpoint_dir))
        searches, result = evaluate_identification(
            verifier, args.images, None if args.no_cache else args.cache
        )
    except (FileNotFoundError, CheckpointError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.cmc:
        plot_cmc(result, args.model, args.cmc)
        print(f"wrote {args.cmc}")
    if args.det:
        plot_det(searches, result, args.model, args.det)
        print(f"wrote {args.det}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
