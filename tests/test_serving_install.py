"""The torch-free serving install: a fresh virtual environment with only requirements-serve.txt
runs api.py from ONNX files exported in this test session and answers /verify exactly as the
full install does; without the files it says what to run. The Dockerfile's runtime stage
installs only that file."""

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server import REPO, started_server
from verification.runtime import ensure_onnx

SERVING_REQUIREMENTS = REPO / "requirements-serve.txt"
TORCH_STACK = ("torch", "torchvision", "timm", "facenet_pytorch", "onnx")
SAME = ("005_02ab3a1b", "006_87166f38")
DIFFERENT = ("002_331d0423", "002_6749a2c4")


@pytest.fixture(scope="module")
def serving_python(tmp_path_factory) -> Path:
    """A new venv (no system site-packages) with the serving requirements, from pip's cache."""
    venv = tmp_path_factory.mktemp("serving-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the venv (so the venv needs no pip of its own);
    # --no-compile because the server compiles what it imports, a fraction of the files.
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    install += ["--no-compile", "--disable-pip-version-check", "-r", str(SERVING_REQUIREMENTS)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return python


def test_the_serving_venv_has_no_torch(serving_python):
    check = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    done = subprocess.run(
        [str(serving_python), "-c", check, *TORCH_STACK, "onnxruntime", "fastapi"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "['onnxruntime', 'fastapi']"


def verify(base: str, photos_dir: Path, pair: tuple[str, str]) -> dict:
    files = {
        f"image{i}": (photos_dir / f"{stem}.jpg").read_bytes() for i, stem in enumerate(pair, 1)
    }
    response = httpx.post(f"{base}/verify", files=files, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_serving_venv_answers_as_the_full_install(
    serving_python, checkpoint_dir, photos_dir, onnx_cache
):
    ensure_onnx("edgeface_s_gamma_05", checkpoint_dir, onnx_cache)  # exported in this session
    answers = {}
    for install, python in (("serving", str(serving_python)), ("full", sys.executable)):
        with started_server(checkpoint_dir, python=python) as server:
            answers[install] = [verify(server.base, photos_dir, pair) for pair in (SAME, DIFFERENT)]
    assert [answer["match"] for answer in answers["serving"]] == [True, False]
    assert answers["serving"] == answers["full"]


def test_without_onnx_files_the_serving_venv_says_what_to_run(
    serving_python, checkpoint_dir, tmp_path
):
    command = [
        str(serving_python),
        "api.py",
        "--port",
        "1",
        "--checkpoint-dir",
        str(checkpoint_dir),
    ]
    env = {"EDGEFACE_ONNX_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("edgeface: ")]
    assert line.startswith("edgeface: cannot start: no ONNX export of this edgeface_s_gamma_05")
    assert "python -m verification.export edgeface_s_gamma_05" in line
    assert "EDGEFACE_ONNX_DIR" in line and "pip install -r requirements.txt" in line


def dockerfile_stages(text: str) -> dict[str, tuple[str | None, str]]:
    """Each stage by name: the stage it is built ``FROM`` (None for an image) and its
    instructions, comments dropped and line continuations joined."""
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, tuple[str | None, list[str]]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        start = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if start:
            base, name = start.groups()
            lines = []
            stages[name or f"stage{len(stages)}"] = (base if base in stages else None, lines)
        elif line and not line.startswith("#"):
            lines.append(line)
    return {name: (base, "\n".join(body)) for name, (base, body) in stages.items()}


def built_from(stages: dict[str, tuple[str | None, str]], name: str) -> str:
    """A stage's instructions with those of the stages it is built on, first."""
    base, body = stages[name]
    return (built_from(stages, base) + "\n" if base else "") + body


def test_the_dockerfile_runtime_stage_installs_only_the_serving_requirements():
    stages = dockerfile_stages((REPO / "Dockerfile").read_text())
    assert list(stages)[-1] == "runtime", "the runtime stage is the default target"
    runtime = built_from(stages, "runtime")
    installs = re.findall(r"pip install[^\n&;]*", runtime)
    assert installs == ["pip install -r requirements-serve.txt"], installs
    assert not re.search(r"torch|timm|facenet", runtime)
    # The full install is the export stage's, whose ONNX files the runtime copies.
    assert "pip install -r requirements.txt" in built_from(stages, "export")
    assert re.search(r"^COPY --from=export .*/onnx", stages["runtime"][1], re.MULTILINE)
