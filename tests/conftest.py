"""Shared test data: real checkpoints, LFW View 1 and photos, found next to the repository.

Paths come from EDGEFACE_CHECKPOINT_DIR, EDGEFACE_LFW_DIR and EDGEFACE_PHOTOS_DIR, defaulting to
../shared/*. Locally a missing folder skips the tests that need it; under CI it fails them, so
a broken setup cannot pass as green.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHECKPOINT_DIR = Path(os.environ.get("EDGEFACE_CHECKPOINT_DIR") or SHARED / "checkpoints")
LFW_DIR = Path(os.environ.get("EDGEFACE_LFW_DIR") or SHARED / "lfw-dev")
PHOTOS_DIR = Path(os.environ.get("EDGEFACE_PHOTOS_DIR") or SHARED / "photos")
REAL_WEIGHTS = ("edgeface_s_gamma_05", "edgeface_xs_q", "edgeface_xxs_q")


def require(path: Path, what: str) -> Path:
    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """A fresh ONNX export cache per session (servers started by tests inherit it), so the
    export path runs in every test session, unless EDGEFACE_ONNX_DIR names one."""
    if not os.environ.get("EDGEFACE_ONNX_DIR"):
        os.environ["EDGEFACE_ONNX_DIR"] = str(tmp_path_factory.mktemp("onnx"))
    return Path(os.environ["EDGEFACE_ONNX_DIR"])


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    return require(CHECKPOINT_DIR / "edgeface_s_gamma_05.pt", "real checkpoints").parent


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return require(LFW_DIR / "pairsDevTest.txt", "LFW View 1").parent


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return require(PHOTOS_DIR / "README.md", "test photos").parent


@pytest.fixture(scope="session")
def verifier(checkpoint_dir, onnx_cache):
    from verification import Verifier

    return Verifier.load("edgeface_s_gamma_05", checkpoint_dir, onnx_dir=onnx_cache)


@pytest.fixture(scope="session")
def postgres():
    """The URL of a real PostgreSQL server with pgvector, started for this test session."""
    from tests.postgres import postgres_bin, postgres_server

    try:
        postgres_bin()
    except RuntimeError as exc:  # as require(): skipped locally, a failure under CI
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with postgres_server() as url:
        yield url


LFW_TRAIN_DIR = SHARED / "lfw-train"


@pytest.fixture(scope="session")
def lfw_train_crops(tmp_path_factory, checkpoint_dir, onnx_cache) -> Path:
    """20 people of ../shared/lfw-train (14 to 20 images each, 328 in all) through
    ``training.prepare --face center``, once per test session."""
    from training.prepare import prepare

    images = require(LFW_TRAIN_DIR / "images", "LFW training subset")
    root = tmp_path_factory.mktemp("lfw-train")
    src = root / "src"
    people = [p for p in sorted(images.iterdir()) if 14 <= len(list(p.iterdir())) <= 20][:20]
    for person in people:
        (src / person.name).mkdir(parents=True)
        for image in person.iterdir():
            (src / person.name / image.name).symlink_to(image)
    options = {"checkpoint_dir": checkpoint_dir, "runtime": "auto", "onnx_dir": onnx_cache}
    prepare(src, root / "crops", face="center", workers=2, options=options, progress=False)
    return root / "crops"
