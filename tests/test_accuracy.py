"""Accuracy guard: LFW View 1 DevTest pairs through the library with the committed threshold."""

import numpy as np

from evaluation.pairs import read_pairs, unique_images
from verification import accuracy_at, default_threshold, pairwise_distances


def test_devtest_accuracy_with_committed_threshold(verifier, lfw_dir):
    pairs = read_pairs(lfw_dir / "pairsDevTest.txt", lfw_dir / "images")
    sample = pairs[::4]  # 250 pairs, same and different alike: at most 3 errors pass
    assert len(sample) >= 250 and 0.4 < np.mean([p.same for p in sample]) < 0.6
    paths = unique_images(sample)
    faces = verifier.represent_many(paths, [str(p) for p in paths], face="center", fallback=True)
    embedding = {path: face.embedding for path, face in zip(paths, faces, strict=True)}
    first = np.stack([embedding[p.first] for p in sample])
    second = np.stack([embedding[p.second] for p in sample])
    distances = pairwise_distances(first, second, "cosine")
    same = np.array([p.same for p in sample])
    threshold = default_threshold("edgeface_s_gamma_05", "cosine")
    assert threshold is not None
    accuracy = accuracy_at(distances, same, threshold)
    assert accuracy >= 0.985, f"DevTest accuracy {accuracy:.2%} at threshold {threshold:.4f}"
