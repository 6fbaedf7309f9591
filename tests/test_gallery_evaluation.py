"""python -m evaluation.identify's figures on a small LFW-layout folder of real images."""

import os

import numpy as np

from evaluation.identify import (
    evaluate_identification,
    fnir_at,
    fpir_at,
    plot_cmc,
    plot_det,
    threshold_at_fpir,
)
from verification.thresholds import model_thresholds


def test_identification_figures(verifier, lfw_dir, checkpoint_dir, tmp_path):
    images = lfw_dir / "images"
    people = sorted(os.listdir(images))
    several = [p for p in people if len(os.listdir(images / p)) >= 2][:8]
    single = [p for p in people if len(os.listdir(images / p)) == 1][:12]
    folder = tmp_path / "lfw"
    for person in several + single:
        (folder / person).mkdir(parents=True)
        for name in sorted(os.listdir(images / person))[:3]:
            (folder / person / name).symlink_to(images / person / name)
    searches, result = evaluate_identification(verifier, folder, None)
    assert result["subjects"] == 8 and result["non_mated_probes"] == 12
    assert result["mated_probes"] == sum(min(3, len(os.listdir(images / p))) - 1 for p in several)
    assert 0.8 <= result["rank1"] <= 1.0  # LFW is easy for EdgeFace
    assert result["cmc"] == sorted(result["cmc"]) and len(result["cmc"]) == 20
    assert result["default_threshold"]["far"] == 1e-4
    calibrated = model_thresholds("edgeface_s_gamma_05", checkpoint_dir).at_far("cosine", 1e-4)
    assert result["default_threshold"]["threshold"] == calibrated
    assert result["default_threshold"]["fpir"] == fpir_at(searches, calibrated)
    # The threshold at FPIR p lets through at most floor(p * n) strangers.
    t = threshold_at_fpir(searches, 0.1)
    assert fpir_at(searches, t) <= 0.1 < fpir_at(searches, float(np.nextafter(t, 2)) + 1e-6)
    assert 0 <= fnir_at(searches, t) <= 1
    plot_cmc(result, "m", tmp_path / "cmc.png")
    plot_det(searches, result, "m", tmp_path / "det.png")
    for name in ("cmc.png", "det.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
