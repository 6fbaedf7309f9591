"""Latency summaries: percentiles of measured seconds, reported in milliseconds."""

from collections.abc import Sequence

import numpy as np


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds, dtype=np.float64), q)) * 1000.0, 2)


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """Count, p50, p95 and mean of ``seconds``, in milliseconds."""
    if not seconds:
        raise ValueError("no measurements to summarize")
    return {
        "n": len(seconds),
        "p50_ms": percentile_ms(seconds, 50),
        "p95_ms": percentile_ms(seconds, 95),
        "mean_ms": round(float(np.mean(seconds)) * 1000.0, 2),
    }


def ratio(ours: float, baseline: float) -> float:
    return round(ours / baseline, 3)
