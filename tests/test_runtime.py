"""ONNX Runtime serving: same answers as PyTorch, no torch in the process, exports cached."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from backbones import CheckpointError
from verification import Verifier
from verification.runtime import ensure_onnx, resolve_runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAME = ("002_3a2ef5df", "011_7b37bf1f")
DIFFERENT = ("002_331d0423", "005_8af3cada")


def test_auto_picks_onnx_when_installed():
    assert resolve_runtime("auto") == "onnx"
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        resolve_runtime("tensorrt")


@pytest.fixture(scope="module")
def torch_verifier(checkpoint_dir):
    return Verifier.load("edgeface_s_gamma_05", checkpoint_dir, runtime="torch")


@pytest.mark.parametrize("pair", [SAME, DIFFERENT])
def test_onnx_and_torch_give_the_same_answer(verifier, torch_verifier, photos_dir, pair):
    assert verifier.runtime == "onnx" and torch_verifier.runtime == "torch"
    paths = [photos_dir / f"{stem}.jpg" for stem in pair]
    ours, reference = verifier.verify(*paths), torch_verifier.verify(*paths)
    assert ours.match == reference.match == (pair == SAME)
    assert ours.distance == pytest.approx(reference.distance, abs=1e-4)
    for face, expected in zip(ours.faces, reference.faces, strict=True):
        np.testing.assert_allclose(face.face.box, expected.face.box, atol=0.01)
        np.testing.assert_allclose(face.face.landmarks, expected.face.landmarks, atol=0.01)


def test_onnx_serving_never_imports_torch(checkpoint_dir, photos_dir, verifier, onnx_cache):
    script = (
        "import sys\n"
        "from verification import Verifier\n"
        f"v = Verifier.load('edgeface_s_gamma_05', {str(checkpoint_dir)!r}, "
        f"onnx_dir={str(onnx_cache)!r})\n"
        f"r = v.verify({str(photos_dir / '002_3a2ef5df.jpg')!r}, "
        f"{str(photos_dir / '011_7b37bf1f.jpg')!r})\n"
        "import api\n"
        "print(v.runtime, r.match, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["onnx", "True", "False"]


@pytest.fixture
def own_checkpoints(tmp_path, checkpoint_dir):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(checkpoint_dir / "edgeface_xxs_q.pt", folder)
    return folder


def test_exports_are_reused_and_follow_the_checkpoint(own_checkpoints, tmp_path):
    cache = tmp_path / "onnx"
    first = ensure_onnx("edgeface_xxs_q", own_checkpoints, cache)
    written = first.embedding.stat().st_mtime_ns
    start = time.perf_counter()
    again = ensure_onnx("edgeface_xxs_q", own_checkpoints, cache)
    assert again == first and first.embedding.stat().st_mtime_ns == written
    assert time.perf_counter() - start < 2  # a hash, no export (an export takes seconds)
    # Other weights under the same name: a new export, not the stale one.
    with (own_checkpoints / "edgeface_xxs_q.pt").open("ab") as f:
        f.write(b"\0")  # zip readers ignore trailing bytes; the hash does not
    changed = ensure_onnx("edgeface_xxs_q", own_checkpoints, cache)
    assert changed.embedding != first.embedding and changed.embedding.is_file()


def test_a_corrupt_checkpoint_stops_the_onnx_path_with_advice(own_checkpoints, tmp_path):
    path = own_checkpoints / "edgeface_xxs_q.pt"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as caught:
        Verifier.load("edgeface_xxs_q", own_checkpoints, onnx_dir=tmp_path / "onnx")
    message = str(caught.value)
    assert "edgeface_xxs_q.pt" in message and "python -m backbones.download" in message


def test_an_unreadable_checkpoint_inside_a_valid_zip_is_reported(own_checkpoints, tmp_path):
    import zipfile

    path = own_checkpoints / "edgeface_xxs_q.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("not_a_model/data.pkl", b"garbage")
    with pytest.raises(CheckpointError) as caught:
        Verifier.load("edgeface_xxs_q", own_checkpoints, onnx_dir=tmp_path / "onnx")
    message = str(caught.value)
    assert "could not prepare edgeface_xxs_q for ONNX Runtime" in message
    assert "not a readable PyTorch weights file" in message
    assert "EDGEFACE_RUNTIME=torch" in message


def test_an_unwritable_cache_is_reported(own_checkpoints, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CheckpointError, match="EDGEFACE_ONNX_DIR") as caught:
        ensure_onnx("edgeface_xxs_q", own_checkpoints, blocker / "onnx")
    # Checked before the export starts: the folder and the reason, not an exporter's traceback.
    assert f"cannot write to {blocker / 'onnx'} (Not a directory)" in str(caught.value)
