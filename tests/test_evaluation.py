"""python -m evaluation.lfw on a slice of LFW View 1, its embedding cache and its metrics."""

import json

import numpy as np
import pytest
from PIL import Image

from evaluation import lfw
from evaluation.embeddings import embed_images
from evaluation.metrics import kfold_accuracy, roc_points, tar_at_far
from evaluation.pairs import read_pairs
from verification import Verifier

REPORT_FIELDS = {
    "model",
    "metric",
    "pairs",
    "folds",
    "accuracy",
    "accuracy_std",
    "default_threshold",
    "accuracy_at_default_threshold",
    "best_threshold",
    "tar_at_far",
    "different_pairs",
    "no_face",
    "fallback",
    "seconds_per_image",
    "cached_images",
}


@pytest.fixture(scope="module")
def dev_slice(lfw_dir) -> tuple[list[str], list[str]]:
    """15 same-person and 15 different-person lines spread over DevTest."""
    lines = (lfw_dir / "pairsDevTest.txt").read_text().splitlines()
    n = int(lines[0])
    return lines[1 : n + 1][::34], lines[n + 1 : 2 * n + 1][::34]


@pytest.fixture(scope="module")
def view1_file(tmp_path_factory, dev_slice):
    same, different = dev_slice
    path = tmp_path_factory.mktemp("pairs") / "view1.txt"
    path.write_text("\n".join([str(len(same)), *same, *different]) + "\n")
    return path


@pytest.fixture(scope="module")
def view2_file(tmp_path_factory, dev_slice):
    """Ten folds of 2 same and 2 different lines, reusing the slice's lines (no new images)."""
    same, different = dev_slice
    lines = ["10 2"]
    for fold in range(10):
        picks = [(2 * fold) % 15, (2 * fold + 1) % 15]
        lines += [same[i] for i in picks] + [different[i] for i in picks]
    path = tmp_path_factory.mktemp("pairs") / "view2.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def crop_calls(monkeypatch) -> list[str]:
    """Every Verifier.faces_in call (one per image detected) is recorded here."""
    calls: list[str] = []
    original = Verifier.faces_in

    def counting(self, image, field, *args, **kwargs):
        calls.append(field)
        return original(self, image, field, *args, **kwargs)

    monkeypatch.setattr(Verifier, "faces_in", counting)
    return calls


@pytest.fixture(scope="module")
def view1(verifier, lfw_dir, view1_file, cache_dir) -> lfw.Evaluation:
    pairs = read_pairs(view1_file, lfw_dir / "images")
    return lfw.evaluate(verifier, pairs, "cosine", cache_dir=cache_dir, progress=False)


def test_view1_slice_is_verified_accurately(view1):
    report = view1.report
    assert REPORT_FIELDS - report.keys() == set()
    assert (report["pairs"], report["folds"], report["accuracy_std"]) == (30, 1, 0.0)
    assert report["accuracy"] >= 0.9
    # The committed threshold is not fitted to these pairs: a broken pipeline cannot hide here.
    assert report["default_threshold"] is not None
    assert report["accuracy_at_default_threshold"] >= 0.9
    assert set(report["tar_at_far"]) == {"0.01", "0.001"}
    for entry in report["tar_at_far"].values():
        assert entry["different_pairs"] == 15 and entry["false_accepts"] == 0
    assert report["cached_images"] == 0 and report["seconds_per_image"] > 0


def test_view2_layout_reports_ten_folds(verifier, lfw_dir, view2_file, cache_dir, view1):
    pairs = read_pairs(view2_file, lfw_dir / "images")
    report = lfw.evaluate(verifier, pairs, cache_dir=cache_dir, progress=False).report
    assert (report["pairs"], report["folds"], report["images"]) == (40, 10, view1.report["images"])
    assert report["accuracy"] >= 0.9
    assert 0.0 <= report["accuracy_std"] <= 0.5
    assert "10-fold" in report["accuracy_protocol"]


def test_second_run_with_another_metric_detects_nothing(
    verifier, lfw_dir, view1_file, cache_dir, view1, crop_calls
):
    pairs = read_pairs(view1_file, lfw_dir / "images")
    again = lfw.evaluate(verifier, pairs, "euclidean", cache_dir=cache_dir, progress=False)
    assert crop_calls == []
    report = again.report
    assert report["metric"] == "euclidean"
    assert report["cached_images"] == report["images"] == view1.report["images"]
    assert report["no_face"] == view1.report["no_face"]
    assert report["seconds_per_image"] == pytest.approx(view1.report["seconds_per_image"])
    assert "cache" in report["seconds_per_image_source"]
    assert report["accuracy"] >= 0.9


def test_cli_writes_json_and_roc(view1_file, lfw_dir, checkpoint_dir, cache_dir, view1, tmp_path):
    report_path, roc_path = tmp_path / "report.json", tmp_path / "roc.png"
    code = lfw.main(
        [
            *("--images", str(lfw_dir / "images"), "--pairs", str(view1_file)),
            *("--checkpoint-dir", str(checkpoint_dir), "--cache", str(cache_dir)),
            *("--json", str(report_path), "--roc", str(roc_path)),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert REPORT_FIELDS - report.keys() == set()
    assert report["accuracy"] == view1.report["accuracy"]
    assert roc_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(roc_path) as image:
        assert image.format == "PNG"
        assert 300 <= image.width <= 2000 and 200 <= image.height <= 2000


def test_missing_image_is_a_clear_error(tmp_path, lfw_dir, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAbdullah_Gul\t13\t14\nAbdullah_Gul\t13\tNobody_Here\t1\n")
    code = lfw.main(["--images", str(lfw_dir / "images"), "--pairs", str(pairs)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Nobody_Here/Nobody_Here_0001.jpg" in err
    assert "Traceback" not in err


def test_image_without_face_counts_with_the_fallback(verifier, lfw_dir, tmp_path, crop_calls):
    images = tmp_path / "images"
    for name, shade in (("Blank_Person", 120), ("Other_Blank", 200)):
        (images / name).mkdir(parents=True)
        Image.new("RGB", (250, 250), (shade,) * 3).save(images / name / f"{name}_0001.jpg")
    real = lfw_dir / "images" / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg"
    (images / "Abdullah_Gul").mkdir()
    (images / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg").write_bytes(real.read_bytes())
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\nBlank_Person 1 1\nOther_Blank 1 Abdullah_Gul 13\n")
    pairs = read_pairs(pairs_file, images)
    cache = tmp_path / "cache"

    report = lfw.evaluate(verifier, pairs, cache_dir=cache, progress=False).report
    assert report["images"] == 3 and report["no_face"] == 2
    assert sorted(p.split("/")[-1] for p in report["no_face_images"]) == [
        "Blank_Person_0001.jpg",
        "Other_Blank_0001.jpg",
    ]
    assert "template" in report["fallback"] and "centre" in report["fallback"]
    assert len(crop_calls) == 3

    # The cache is keyed by the file: a rewritten image is detected again, the others are not.
    Image.new("RGB", (240, 240), (90,) * 3).save(images / "Blank_Person" / "Blank_Person_0001.jpg")
    again = lfw.evaluate(verifier, pairs, "angular", cache_dir=cache, progress=False).report
    assert len(crop_calls) == 4 and crop_calls[-1].endswith("Blank_Person_0001.jpg")
    assert again["no_face"] == 2 and again["cached_images"] == 2


def test_cached_embeddings_equal_fresh_ones(verifier, lfw_dir, view1_file, cache_dir, view1):
    paths = [read_pairs(view1_file, lfw_dir / "images")[0].first]
    fresh = embed_images(verifier, paths, cache_dir=None, progress=False)
    cached = embed_images(verifier, paths, cache_dir=cache_dir, progress=False)
    assert cached.cached_images == 1 and fresh.cached_images == 0
    # Not bit-equal: the cached one was computed in a batch of many crops, this one alone.
    np.testing.assert_allclose(cached.embedding(paths[0]), fresh.embedding(paths[0]), atol=1e-4)


def synthetic_folds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 folds of 5 same pairs in [0.1, 0.3] and 5 different pairs in [0.7, 0.9]."""
    same = np.tile(np.r_[np.ones(5, bool), np.zeros(5, bool)], 10)
    distances = np.where(same, np.tile(np.linspace(0.1, 0.3, 10), 10), 0.0)
    distances = np.where(same, distances, np.tile(np.linspace(0.7, 0.9, 10), 10))
    folds = np.repeat(np.arange(10), 10)
    return distances, same, folds


def test_kfold_accuracy_fits_each_threshold_on_the_other_folds():
    distances, same, folds = synthetic_folds()
    distances[30] = 0.95  # one same pair of fold 3 looks like a stranger
    result = kfold_accuracy(distances, same, folds)
    assert len(result.thresholds) == 10
    assert all(0.3 < t < 0.7 for t in result.thresholds)
    per_fold = np.r_[np.ones(3), 0.9, np.ones(6)]
    assert result.mean == pytest.approx(per_fold.mean())
    assert result.std == pytest.approx(per_fold.std())


def test_kfold_accuracy_on_one_fold_is_the_best_threshold():
    distances, same, _ = synthetic_folds()
    distances[0] = 0.95  # a same pair beyond every stranger: 99 of 100 right at best
    result = kfold_accuracy(distances, same, np.zeros(distances.size))
    assert (result.mean, result.std) == (pytest.approx(0.99), 0.0)
    assert 0.3 < result.thresholds[0] < 0.7


def test_tar_at_far_admits_at_most_that_share_of_strangers():
    impostors = np.arange(1, 1001) / 1000  # 0.001 .. 1.0
    genuine = np.r_[np.full(50, 0.0005), np.full(30, 0.0105), np.full(20, 0.5)]
    distances = np.r_[genuine, impostors]
    same = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    at_1e2 = tar_at_far(distances, same, 1e-2)
    assert (at_1e2.false_accepts, at_1e2.tar) == (10, pytest.approx(0.8))
    assert 0.0105 <= at_1e2.threshold < 0.011
    at_1e3 = tar_at_far(distances, same, 1e-3)
    assert (at_1e3.false_accepts, at_1e3.tar, at_1e3.different_pairs) == (1, 0.5, 1000)
    assert at_1e3.threshold < 0.002


def test_tar_at_far_never_exceeds_the_far_on_ties_or_small_sets():
    # 500 strangers: FAR 1e-3 allows no false accept at all.
    small = tar_at_far(
        np.r_[0.1, 0.3, np.linspace(0.2, 1, 500)], np.r_[True, True, [False] * 500], 1e-3
    )
    assert (small.false_accepts, small.tar) == (0, 0.5)
    # Ties at the limit: accepting one 0.2 would accept both, two false accepts of four.
    tied = tar_at_far(
        np.r_[0.15, 0.1, 0.2, 0.2, 0.3], np.r_[True, False, False, False, False], 0.25
    )
    assert (tied.false_accepts, tied.tar) == (1, 1.0)
    assert tied.threshold < 0.2


def test_roc_points_run_from_nothing_to_everything():
    distances, same, _ = synthetic_folds()
    far, tar = roc_points(distances, same)
    assert (far[0], tar[0], far[-1], tar[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    assert tar[far == 0].max() == 1.0  # perfectly separated: full TAR at FAR 0


def test_embedding_cache_tells_checkpoints_of_one_model_apart(verifier, checkpoint_dir, tmp_path):
    # A fine-tuned or compressed checkpoint keeps its model's name; its embeddings must not be
    # read back from the released weights' cache (or the other way round).
    from backbones.catalog import checkpoint_path, file_sha256
    from evaluation.embeddings import EmbeddingCache

    expected = file_sha256(checkpoint_path(verifier.model_name, checkpoint_dir))[:16]
    assert verifier.weights == expected
    released = EmbeddingCache(tmp_path, verifier.model_name, "center", "onnx", verifier.weights)
    trained = EmbeddingCache(tmp_path, verifier.model_name, "center", "onnx", "0123456789abcdef")
    assert released.folder != trained.folder
