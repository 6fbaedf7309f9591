"""Tests for backbones.download against a local HTTP server; nothing here touches the internet."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Lets plain `pytest` (not only `python -m pytest` from the repo root) import backbones.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from backbones import download  # noqa: E402
from backbones.catalog import MODELS  # noqa: E402
from benchmarks.server import free_port  # noqa: E402
from tests.server import started_server  # noqa: E402

OFFICIAL_SHA256 = {
    "edgeface_xs_q": "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6",
    "edgeface_xxs_q": "46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053",
    "edgeface_xxs": "5b6bac48ea660aca185be8a8ac934db2093b51259461721da53c468230bc24c9",
    "edgeface_s_gamma_05": "dc59abda2e8580399fd115a1eeb07e1f21156196db604b884407bcf0f17efb07",
}


def _shared_dir() -> Path:
    env = os.environ.get("EDGEFACE_CHECKPOINT_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "checkpoints"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Server:
    def __init__(self, directory: Path, handler: type[http.server.BaseHTTPRequestHandler]):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(handler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                requests.append(self.path)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval keeps shutdown() (which waits for one poll) from slowing tests.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def serve(
    directory: Path,
    handler: type[http.server.BaseHTTPRequestHandler] = http.server.SimpleHTTPRequestHandler,
) -> Iterator[_Server]:
    server = _Server(directory, handler)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured in the environment must not intercept the local test servers.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    directory = _shared_dir()
    if not directory.is_dir():
        pytest.skip(f"no local checkpoints at {directory} (set EDGEFACE_CHECKPOINT_DIR)")
    return directory


@pytest.fixture(scope="module")
def server(shared_dir: Path) -> Iterator[_Server]:
    with serve(shared_dir) as srv:
        yield srv


def _require(shared_dir: Path, name: str) -> Path:
    path = shared_dir / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_model_table_holds_the_official_hashes() -> None:
    assert {n: i.sha256 for n, i in MODELS.items() if i.sha256} == OFFICIAL_SHA256


def test_sha256sums_checks_a_folder_with_sha256sum(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert download.main(["--sha256sums"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1] for line in lines) == sorted(f"{n}.pt" for n in OFFICIAL_SHA256)
    official = [line for line in lines if line.split()[1] == "edgeface_xxs_q.pt"]
    (tmp_path / "edgeface_xxs_q.pt").write_bytes((shared_dir / "edgeface_xxs_q.pt").read_bytes())
    (tmp_path / "only.sums").write_text("\n".join(official) + "\n")
    done = subprocess.run(
        ["sha256sum", "-c", "only.sums"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "edgeface_xxs_q.pt: OK" in done.stdout


def test_download_verifies_and_leaves_no_temp(
    server: _Server, shared_dir: Path, tmp_path: Path
) -> None:
    source = _require(shared_dir, "edgeface_xs_q")
    target_dir = tmp_path / "new" / "ckpt"

    path = download.download_checkpoint("edgeface_xs_q", target_dir, [server.url])

    assert path == target_dir / "edgeface_xs_q.pt"
    assert _sha256(path) == OFFICIAL_SHA256["edgeface_xs_q"]
    assert path.stat().st_size == source.stat().st_size
    assert sorted(p.name for p in target_dir.iterdir()) == ["edgeface_xs_q.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_existing_good_file_is_not_downloaded_again(
    server: _Server, shared_dir: Path, tmp_path: Path
) -> None:
    _require(shared_dir, "edgeface_xs_q")
    download.download_checkpoint("edgeface_xs_q", tmp_path, [server.url])
    seen = len(server.requests)

    download.download_checkpoint("edgeface_xs_q", tmp_path, [server.url])
    assert len(server.requests) == seen

    download.download_checkpoint("edgeface_xs_q", tmp_path, [server.url], force=True)
    assert len(server.requests) == seen + 1


def test_existing_corrupt_file_is_replaced(
    server: _Server, shared_dir: Path, tmp_path: Path
) -> None:
    _require(shared_dir, "edgeface_xxs_q")
    (tmp_path / "edgeface_xxs_q.pt").write_bytes(b"truncated")

    path = download.download_checkpoint("edgeface_xxs_q", tmp_path, [server.url])

    assert _sha256(path) == OFFICIAL_SHA256["edgeface_xxs_q"]


def test_wrong_hash_raises_and_leaves_nothing(
    server: _Server, shared_dir: Path, tmp_path: Path
) -> None:
    served = _sha256(_require(shared_dir, "edgeface_s_gamma_05"))
    if served == OFFICIAL_SHA256["edgeface_s_gamma_05"]:
        pytest.skip("the served edgeface_s_gamma_05.pt is the official file: no wrong-hash case")

    with pytest.raises(download.ChecksumMismatchError) as info:
        download.download_checkpoint("edgeface_s_gamma_05", tmp_path, [server.url])

    message = str(info.value)
    assert "edgeface_s_gamma_05.pt" in message
    assert OFFICIAL_SHA256["edgeface_s_gamma_05"] in message
    assert served in message
    assert list(tmp_path.iterdir()) == []


def test_404_names_the_url_and_leaves_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    target_dir = tmp_path / "ckpt"

    with serve(empty) as srv, pytest.raises(download.DownloadError) as info:
        download.download_checkpoint("edgeface_xxs", target_dir, [srv.url])

    assert f"{srv.url}/edgeface_xxs.pt" in str(info.value)
    assert "404" in str(info.value)
    assert not any(target_dir.iterdir())


def test_every_source_failing_lists_each_url(tmp_path: Path) -> None:
    dead = _closed_port_url()
    empty = tmp_path / "empty"
    empty.mkdir()

    with serve(empty) as srv, pytest.raises(download.DownloadError) as info:
        download.download_checkpoint("edgeface_xxs", tmp_path / "ckpt", [dead, srv.url])

    assert f"{dead}/edgeface_xxs.pt" in str(info.value)
    assert f"{srv.url}/edgeface_xxs.pt" in str(info.value)


def test_falls_back_to_the_next_source(server: _Server, shared_dir: Path, tmp_path: Path) -> None:
    _require(shared_dir, "edgeface_xxs_q")
    empty = tmp_path / "empty"
    empty.mkdir()
    target_dir = tmp_path / "ckpt"

    with serve(empty) as missing:
        path = download.download_checkpoint(
            "edgeface_xxs_q", target_dir, [_closed_port_url(), missing.url, server.url]
        )

    assert missing.requests == ["/edgeface_xxs_q.pt"]
    assert _sha256(path) == OFFICIAL_SHA256["edgeface_xxs_q"]


def test_timeout_is_a_source_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.3)
    outcome: list[BaseException | Path] = []

    def attempt() -> None:
        try:
            outcome.append(download.download_checkpoint("edgeface_xxs", tmp_path, [url]))
        except BaseException as exc:
            outcome.append(exc)

    # Listening but never answering: the connection succeeds and the response never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # A thread, so that a missing timeout fails the test instead of hanging it.
        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout=5)
        assert not worker.is_alive(), "download did not time out"

    assert len(outcome) == 1
    assert isinstance(outcome[0], download.DownloadError)
    assert "timed out" in str(outcome[0])
    assert list(tmp_path.iterdir()) == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    def __init__(self, *args: object, directory: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.close_connection = True


def test_cut_off_download_of_unhashed_model_is_not_kept(tmp_path: Path) -> None:
    with serve(tmp_path, _TruncatingHandler) as srv:
        target_dir = tmp_path / "ckpt"
        with pytest.raises(download.DownloadError) as info:
            download.download_checkpoint("edgeface_base", target_dir, [srv.url])

    assert f"{srv.url}/edgeface_base.pt" in str(info.value)
    assert list(target_dir.iterdir()) == []


def test_unhashed_model_is_kept_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    content = b"not really a checkpoint"
    (mirror / "edgeface_xs_gamma_06.pt").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()

    with serve(mirror) as srv:
        path = download.download_checkpoint("edgeface_xs_gamma_06", tmp_path / "ckpt", [srv.url])

    assert path.read_bytes() == content
    err = capsys.readouterr().err
    assert "warning" in err
    assert digest in err


def test_unknown_name_lists_known_models(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        download.download_checkpoint("edgeface_huge", tmp_path, ["http://127.0.0.1:9"])

    for name in MODELS:
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _start_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.Popen(
        [sys.executable, "-m", "backbones.download", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def cli_runs(
    server: _Server, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """Run the CLI cases concurrently: each interpreter spends seconds importing the package."""
    _require(shared_dir, "edgeface_xxs_q")
    _require(shared_dir, "edgeface_s_gamma_05")
    cases = {"ok": "edgeface_xxs_q", "wrong_hash": "edgeface_s_gamma_05"}
    started = {}
    for case, name in cases.items():
        directory = tmp_path_factory.mktemp(f"cli_{case}")
        started[case] = (
            directory,
            _start_cli(name, "--dir", str(directory), "--base-url", server.url),
        )
    results = {}
    for case, (directory, proc) in started.items():
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[case] = (
            directory,
            subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
        )
    return results


def test_cli_downloads(cli_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]) -> None:
    directory, result = cli_runs["ok"]

    assert result.returncode == 0, result.stderr
    assert _sha256(directory / "edgeface_xxs_q.pt") == OFFICIAL_SHA256["edgeface_xxs_q"]
    assert OFFICIAL_SHA256["edgeface_xxs_q"] in result.stdout


def test_cli_wrong_hash_fails_without_traceback(
    cli_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], shared_dir: Path
) -> None:
    if _sha256(shared_dir / "edgeface_s_gamma_05.pt") == OFFICIAL_SHA256["edgeface_s_gamma_05"]:
        pytest.skip("the served edgeface_s_gamma_05.pt is the official file: no wrong-hash case")
    directory, result = cli_runs["wrong_hash"]

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert OFFICIAL_SHA256["edgeface_s_gamma_05"] in result.stderr
    assert list(directory.iterdir()) == []


def test_cli_network_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = _closed_port_url()

    assert download.main(["edgeface_xxs", "--dir", str(tmp_path), "--base-url", dead]) == 1

    captured = capsys.readouterr()
    assert f"{dead}/edgeface_xxs.pt" in captured.err
    assert "Traceback" not in captured.out + captured.err


def test_cli_unknown_name_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        download.main(["edgeface_huge", "--dir", str(tmp_path), "--base-url", "http://127.0.0.1:9"])

    assert info.value.code == 2
    assert "edgeface_xs_q" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# python api.py --download: the service fetches its own missing checkpoint, then serves


def _api(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    command = [sys.executable, "api.py", "--port", str(free_port()), *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_api_download_fetches_the_missing_checkpoint_then_serves(
    server: _Server, shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require(shared_dir, "edgeface_xxs_q")
    photos = Path(os.environ.get("EDGEFACE_PHOTOS_DIR") or REPO_ROOT.parent / "shared" / "photos")
    first, second = (photos / f"{stem}.jpg" for stem in ("005_02ab3a1b", "006_87166f38"))
    if not first.is_file():
        pytest.skip(f"no test photos at {photos}")
    target = tmp_path / "new-box"
    args = ["--model", "edgeface_xxs_q", "--download", "--download-url", server.url]
    with started_server(target, args=args) as api:
        files = {"image1": first.read_bytes(), "image2": second.read_bytes()}
        answer = httpx.post(f"{api.base}/verify", files=files, timeout=60)
        log = api.log()
    assert answer.status_code == 200, answer.text
    assert answer.json()["match"] is True and answer.json()["model"] == "edgeface_xxs_q"
    assert "/edgeface_xxs_q.pt" in server.requests
    assert f"{OFFICIAL_SHA256['edgeface_xxs_q']} (verified)" in log
    assert [p.name for p in target.iterdir()] == ["edgeface_xxs_q.pt"]
    assert _sha256(target / "edgeface_xxs_q.pt") == OFFICIAL_SHA256["edgeface_xxs_q"]


def test_api_download_of_a_wrong_file_stops_startup_and_keeps_nothing(
    server: _Server, shared_dir: Path, tmp_path: Path
) -> None:
    served = _require(shared_dir, "edgeface_s_gamma_05")
    if _sha256(served) == OFFICIAL_SHA256["edgeface_s_gamma_05"]:
        pytest.skip("the served edgeface_s_gamma_05.pt is the official file: no mismatch case")
    result = _api("--checkpoint-dir", str(tmp_path), "--download", "--download-url", server.url)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("edgeface: cannot start: ")
    assert (
        "wrong SHA-256" in result.stderr and OFFICIAL_SHA256["edgeface_s_gamma_05"] in result.stderr
    )
    assert "Uvicorn running" not in result.stdout + result.stderr  # it never listened
    assert list(tmp_path.iterdir()) == []
