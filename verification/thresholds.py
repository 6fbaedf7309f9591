"""Decision thresholds: fitting them on labelled pairs, and the calibrated tables.

``thresholds.json`` beside this module is written by ``python -m evaluation.calibrate`` (LFW
View 1 DevTrain through this same pipeline); never edit it by hand. A checkpoint folder may hold
a ``thresholds.json`` of its own, in the same format (``python -m training.train`` writes one,
fitted on its validation pairs); for the models it lists, it wins over the committed table,
since a trained model's distances are not the released weights'.
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")
BESIDE_CHECKPOINT = "thresholds.json"
# The false-match rates the calibration gives thresholds for (operating points), and the one a
# gallery identifies at by default: with N people enrolled an unknown face is falsely identified
# at roughly N times the 1:1 rate (README, Gallery).
FARS = (1e-2, 1e-3, 1e-4, 1e-5)
IDENTIFY_FAR = 1e-4


def far_key(far: float) -> str:
    """How a FAR is written in the tables: ``1e-04``."""
    return f"{far:.0e}"


@cache
def calibrated_table(path: Path = THRESHOLDS_FILE) -> dict:
    if not path.is_file():
        return {"models": {}}
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Thresholds:
    """One model's calibrated thresholds by metric, and the file they came from."""

    model: str
    by_metric: dict
    source: Path | None  # None: no table knows the model

    def threshold(self, metric: str) -> float | None:
        """The best-accuracy threshold (the default of /verify), or None."""
        entry = self.by_metric.get(metric)
        return None if entry is None else float(entry["threshold"])

    def far(self, metric: str) -> float | None:
        """The false-match rate measured at the best-accuracy threshold, or None."""
        entry = self.by_metric.get(metric) or {}
        return entry.get("far")

    def at_far(self, metric: str, far: float) -> float | None:
        """The threshold with false-match rate ``far`` (one of ``FARS``), or None."""
        point = (self.by_metric.get(metric) or {}).get("at_far", {}).get(far_key(far))
        return None if point is None else float(point["threshold"])


def model_thresholds(model: str, checkpoint_dir: str | Path | None = None) -> Thresholds:
    """``model``'s thresholds: from ``checkpoint_dir/thresholds.json`` when it lists the model,
    else from the committed table. An unreadable file beside the checkpoint raises ValueError
    naming it, so a typo never silently serves the released weights' thresholds."""
    if checkpoint_dir is not None:
        beside = Path(checkpoint_dir) / BESIDE_CHECKPOINT
        if beside.is_file():
            try:
                entries = json.loads(beside.read_text())["models"].get(model)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(
                    f"{beside} is not a thresholds table like {THRESHOLDS_FILE.name} "
                    f"({type(exc).__name__}: {exc}); fix or remove it"
                ) from None
            if entries:
                return Thresholds(model, entries, beside)
    entries = calibrated_table()["models"].get(model)
    return Thresholds(model, entries or {}, THRESHOLDS_FILE if entries else None)


def default_threshold(model: str, metric: str) -> float | None:
    """The committed calibrated threshold for ``model`` and ``metric``, or None."""
    return model_thresholds(model).threshold(metric)


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
