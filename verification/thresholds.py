"""Decision thresholds: fitting them on labelled pairs, and the committed calibrated table.

``thresholds.json`` is written by ``python -m evaluation.calibrate`` (LFW View 1 DevTrain through
this same pipeline); never edit it by hand.
"""

import json
from functools import cache
from pathlib import Path

import numpy as np

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")


@cache
def calibrated_table(path: Path = THRESHOLDS_FILE) -> dict:
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text())


def default_threshold(model: str, metric: str) -> float | None:
    """The calibrated threshold for ``model`` and ``metric``, or None when never calibrated."""
    entry = calibrated_table()["models"].get(model, {}).get(metric)
    return None if entry is None else float(entry["threshold"])


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs decided right when ``distance <= threshold`` means the same person."""
    distances, same = np.asarray(distances), np.asarray(same, dtype=bool)
    return float(np.mean((distances <= threshold) == same))


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Candidates lie midway between consecutive sorted distances; among equally accurate ones the
    middle of the best run is taken, which keeps the margin on both sides.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if distances.size == 0 or distances.shape != same.shape:
        raise ValueError("need as many labels as distances, and at least one pair")
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    # Accepting the k smallest distances: correct = same pairs among them + different pairs after.
    correct = np.concatenate(([0], np.cumsum(s))) + np.concatenate(
        ([np.sum(~s)], np.sum(~s) - np.cumsum(~s))
    )
    bounds = np.concatenate(([d[0] - 1e-6], (d[:-1] + d[1:]) / 2, [d[-1] + 1e-6]))
    # Cuts between equal distances cannot be realised by a threshold.
    valid = np.concatenate(([True], d[1:] > d[:-1], [True]))
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    k = best[len(best) // 2]
    return float(bounds[k]), float(correct[k] / d.size)
