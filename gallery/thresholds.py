"""The gallery's decision threshold: calibrated at a false-match rate, never the 1:1 default.

With N subjects enrolled an unknown face is compared with all of them, so it is falsely
identified at roughly N times the 1:1 false-match rate; the best-accuracy 1:1 threshold would
identify most strangers as someone (README, Gallery). The default is the threshold at FAR 1e-4
(``verification.thresholds.IDENTIFY_FAR``) from ``thresholds.json``.
"""

from verification.errors import NoThresholdError
from verification.pipeline import OperatingPoint, calibrated_far, given_threshold
from verification.thresholds import IDENTIFY_FAR, Thresholds

METRIC = "cosine"  # the gallery stores unit vectors and searches by cosine distance


def operating_point(
    thresholds: Thresholds, threshold: float | None = None, far: float | None = None
) -> OperatingPoint:
    """The caller's ``threshold``; else the one of ``thresholds`` (the model's table, read once
    where the model is loaded) calibrated at ``far`` (one of ``FARS``), by default at
    ``IDENTIFY_FAR``."""
    given = given_threshold(threshold, far)
    if given is not None:
        return given
    calibrated = calibrated_far(IDENTIFY_FAR if far is None else far)
    value = thresholds.at_far(METRIC, calibrated)
    if value is None:
        raise NoThresholdError(
            f"model {thresholds.model} has no cosine threshold calibrated at FAR {calibrated:g}; "
            "pass a threshold, or calibrate it with python -m evaluation.calibrate",
            "threshold",
        )
    return OperatingPoint(value, calibrated)
