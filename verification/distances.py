"""Distances between face embeddings. Smaller means more alike for every metric."""

from typing import Literal, get_args

import numpy as np

from verification.errors import UnknownMetricError

Metric = Literal["cosine", "angular", "euclidean", "euclidean_l2"]
METRICS: tuple[str, ...] = get_args(Metric)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise UnknownMetricError(
            f"unknown metric {metric!r}; use one of {', '.join(METRICS)}", "metric"
        )
    return metric  # type: ignore[return-value]


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance between row i of ``a`` and row i of ``b`` (raw, unnormalised embeddings).

    cosine: 1 - cos; angular: arccos(cos) / pi; euclidean: on the raw embeddings;
    euclidean_l2: on the L2-normalised embeddings.
    """
    check_metric(metric)
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    a, b = l2_normalize(a), l2_normalize(b)
    if metric == "euclidean_l2":
        return np.linalg.norm(a - b, axis=1)
    cos = np.clip(np.sum(a * b, axis=1), -1.0, 1.0)
    if metric == "cosine":
        return 1.0 - cos
    return np.arccos(cos) / np.pi


def distance_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance between every row of ``a`` and every row of ``b`` (same metrics as above)."""
    check_metric(metric)
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if metric == "euclidean":
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(squared, 0.0))
    cos = np.clip(l2_normalize(a) @ l2_normalize(b).T, -1.0, 1.0)
    if metric == "cosine":
        return 1.0 - cos
    if metric == "euclidean_l2":
        return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))
    return np.arccos(cos) / np.pi
