"""Verification metrics on labelled pair distances: k-fold accuracy, TAR at FAR, ROC points.

Everything here follows the service's rule: a pair is accepted (same person) when
``distance <= threshold``.
"""

from dataclasses import dataclass

import numpy as np

from verification import accuracy_at, best_threshold
from verification.distances import distance_matrix


@dataclass(frozen=True)
class FoldAccuracy:
    mean: float
    std: float
    thresholds: tuple[float, ...]  # the threshold used on each fold


@dataclass(frozen=True)
class TarAtFar:
    far: float  # the FAR asked for
    tar: float  # share of same-person pairs accepted at ``threshold``
    threshold: float
    false_accepts: int
    different_pairs: int


def _labelled(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if distances.shape != same.shape or distances.ndim != 1:
        raise ValueError("need one label per distance")
    return distances, same


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldAccuracy:
    """Accuracy with the threshold fitted on the other folds, averaged over folds.

    With a single fold (LFW View 1) there is nothing to hold out: the best threshold on all pairs
    and its accuracy are returned, with std 0. The std is the population std over folds (ddof=0),
    as LFW results are usually reported.
    """
    distances, same = _labelled(distances, same)
    folds = np.asarray(folds)
    labels = np.unique(folds)
    if labels.size == 1:
        threshold, accuracy = best_threshold(distances, same)
        return FoldAccuracy(accuracy, 0.0, (threshold,))
    accuracies, thresholds = [], []
    for fold in labels:
        test = folds == fold
        threshold, _ = best_threshold(distances[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(distances[test], same[test], threshold))
    return FoldAccuracy(float(np.mean(accuracies)), float(np.std(accuracies)), tuple(thresholds))


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> TarAtFar:
    """The most permissive threshold that accepts at most ``far`` of the different-person pairs.

    With D different pairs at most ``floor(far * D)`` false accepts are allowed, so on 500 pairs
    FAR 1e-3 means none: the threshold must stay below the closest different-person pair.
    """
    distances, same = _labelled(distances, same)
    impostors = np.sort(distances[~same])
    if impostors.size == 0 or not same.any():
        raise ValueError("need same-person and different-person pairs")
    allowed = int(np.floor(far * impostors.size + 1e-9))
    if allowed >= impostors.size:
        threshold = float(distances.max())
    else:
        # Midway between the first rejected different pair and the largest distance below it.
        limit = impostors[allowed]
        below = distances[distances < limit]
        threshold = float((below.max() + limit) / 2) if below.size else float(limit - 1e-6)
    accepted = distances <= threshold
    return TarAtFar(
        far=far,
        tar=float(np.mean(accepted[same])),
        threshold=threshold,
        false_accepts=int(np.sum(accepted[~same])),
        different_pairs=int(impostors.size),
    )


def roc_points(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) for every distinct threshold, from accepting nothing to accepting everything."""
    distances, same = _labelled(distances, same)
    values = np.unique(distances)
    genuine, impostor = np.sort(distances[same]), np.sort(distances[~same])
    tar = np.searchsorted(genuine, values, side="right") / max(genuine.size, 1)
    far = np.searchsorted(impostor, values, side="right") / max(impostor.size, 1)
    return np.concatenate(([0.0], far)), np.concatenate(([0.0], tar))


def rates_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, TAR) when accepting ``distance <= threshold``."""
    distances, same = _labelled(distances, same)
    accepted = distances <= threshold
    return float(np.mean(accepted[~same])), float(np.mean(accepted[same]))


def all_pairs(
    embeddings: np.ndarray, identities: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Distance and same-person flag of every unordered pair of rows (i < j).

    On LFW View 1 DevTrain's 3,443 images that is 5.9 million pairs, of which 2,209 show the
    same person: enough different-person pairs to measure false-match rates down to 1e-5.
    """
    identities = np.asarray(identities)
    first, second = np.triu_indices(len(identities), k=1)
    distances = distance_matrix(embeddings, embeddings, metric)[first, second]
    return distances, identities[first] == identities[second]
