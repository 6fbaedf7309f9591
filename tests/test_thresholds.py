"""Default thresholds: the committed table, or the table beside a (trained) checkpoint."""

import json
import shutil

import httpx
import pytest

from tests.server import started_server
from verification import Verifier
from verification.thresholds import THRESHOLDS_FILE, model_thresholds

OWN = {"cosine": {"threshold": 0.5}, "euclidean": {"threshold": 2.5}}


@pytest.fixture
def own_folder(tmp_path, checkpoint_dir):
    folder = tmp_path / "trained"
    folder.mkdir()
    shutil.copy(checkpoint_dir / "edgeface_xxs_q.pt", folder)
    (folder / "thresholds.json").write_text(json.dumps({"models": {"edgeface_xxs_q": OWN}}))
    return folder


def test_a_table_beside_the_checkpoint_wins_for_the_models_it_lists(own_folder):
    own = model_thresholds("edgeface_xxs_q", own_folder)
    assert own.source == own_folder / "thresholds.json"
    assert own.threshold("cosine") == 0.5 and own.threshold("angular") is None
    other = model_thresholds("edgeface_s_gamma_05", own_folder)
    assert other.source == THRESHOLDS_FILE and other.threshold("cosine") is not None
    assert model_thresholds("edgeface_xs_gamma_06").source is None


def test_an_unreadable_table_beside_the_checkpoint_is_refused(own_folder):
    (own_folder / "thresholds.json").write_text("{not json")
    with pytest.raises(ValueError, match="thresholds.json"):
        model_thresholds("edgeface_xxs_q", own_folder)


def test_the_verifier_and_the_server_use_the_table_beside_the_checkpoint(
    own_folder, onnx_cache, photos_dir
):
    verifier = Verifier.load("edgeface_xxs_q", own_folder, onnx_dir=onnx_cache)
    assert verifier.operating_point("cosine").threshold == 0.5
    files = {
        f"image{i}": (f"{stem}.jpg", (photos_dir / f"{stem}.jpg").read_bytes(), "image/jpeg")
        for i, stem in enumerate(("002_3a2ef5df", "011_7b37bf1f"), start=1)
    }
    env = {"EDGEFACE_MODEL": "edgeface_xxs_q", "EDGEFACE_WORKER_MODE": "threads"}
    with started_server(own_folder, env=env) as server:
        answer = httpx.post(server.base + "/verify", files=files, timeout=60).json()
        assert answer["threshold"] == 0.5 and answer["model"] == "edgeface_xxs_q"
        assert f"default thresholds for edgeface_xxs_q from {own_folder}" in server.log()


def test_the_gallery_reads_the_table_beside_the_checkpoint_once_at_startup(
    own_folder, photos_dir, tmp_path
):
    own = {"cosine": {"threshold": 0.5, "at_far": {"1e-04": {"threshold": 0.25}}}}
    table = own_folder / "thresholds.json"
    table.write_text(json.dumps({"models": {"edgeface_xxs_q": own}}))
    env = {
        "EDGEFACE_MODEL": "edgeface_xxs_q",
        "EDGEFACE_WORKER_MODE": "threads",
        "EDGEFACE_GALLERY_URL": f"sqlite:///{tmp_path / 'gallery.db'}",
    }
    photo = ("p.jpg", (photos_dir / "002_3a2ef5df.jpg").read_bytes(), "image/jpeg")
    with started_server(own_folder, env=env) as server:
        table.write_text("{not json")  # a later edit must neither break nor change the service
        answer = httpx.post(server.base + "/gallery/identify", files={"image": photo}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["threshold"] == 0.25 and answer.json()["far"] == 1e-4
