"""Download pretrained EdgeFace checkpoints and check them against known SHA-256 sums.

This is an explicit, manual step for setting up a machine:

    python -m backbones.download edgeface_xs_q edgeface_xxs_q [--dir DIR] [--base-url URL] [--force]

Each file is fetched from the official sources of the model table (``backbones.catalog``: Idiap's
GitLab, then GitHub otroshi/edgeface), or from the base URLs given with ``--base-url`` /
``EDGEFACE_DOWNLOAD_URL`` (e.g. a local mirror), streamed to a temporary file in the target
directory, hashed while it is written and only then renamed to ``<dir>/<name>.pt``. A file whose
hash disagrees with the table's is deleted, never kept. The target directory defaults to
``EDGEFACE_CHECKPOINT_DIR``, else the repo's ``checkpoints/`` folder.
``--sha256sums`` prints the known hashes for ``sha256sum -c``.

The running service never downloads anything by itself: it only loads checkpoints that are
already on disk; fetching weights happens only when someone runs this module, starts the
service with ``python api.py --download`` (a missing checkpoint only) or calls
``download_checkpoint``, on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import environment
from backbones.catalog import MODELS, file_sha256, model_info

# Applies per socket operation (connect, each read), so a slow but progressing download is fine.
TIMEOUT_SECONDS = 30.0
CHUNK_SIZE = 1 << 20


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched from any source."""


class ChecksumMismatchError(DownloadError):
    """A downloaded checkpoint does not have its known SHA-256; nothing was kept."""


class _SourceFailed(Exception):
    """One source failed for a network reason; the next source may still work."""


def checkpoint_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{model_info(name).checkpoint_file}"


def sha256sums() -> str:
    """The known hashes in ``sha256sum`` format, for ``sha256sum -c`` in a checkpoint folder."""
    return "".join(
        f"{info.sha256}  {info.checkpoint_file}\n" for info in MODELS.values() if info.sha256
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return "timed out" if isinstance(reason, TimeoutError) else str(reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _progress_bar(total: int | None, desc: str):
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _fetch(url: str, directory: Path, name: str) -> tuple[Path, str]:
    """Stream ``url`` into a new temp file in ``directory``; return (temp path, sha256).

    Network problems raise ``_SourceFailed`` (the caller tries the next source); local problems
    such as a full disk propagate unchanged. The temp file never outlives a failure.
    """
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)
    except (OSError, http.client.HTTPException) as exc:
        raise _SourceFailed(_describe(exc)) from exc

    with response:
        length_header = response.headers.get("Content-Length")
        expected_size = int(length_header) if length_header and length_header.isdigit() else None
        tmp = directory / f".{name}.{secrets.token_hex(8)}.part"
        # Not mkstemp: its 0600 mode would survive the rename and hide the weights from a
        # service running as another user; 0666 here is narrowed by the umask as usual.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        bar = None
        try:
            bar = _progress_bar(expected_size, f"{name}.pt")
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _SourceFailed(_describe(exc)) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            # Without this, a cut-off transfer of a model with no known hash would be kept.
            if expected_size is not None and size != expected_size:
                raise _SourceFailed(f"incomplete download: got {size} of {expected_size} bytes")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            if bar is not None:
                bar.close()
    return tmp, digest.hexdigest()


def download_checkpoint(
    name: str,
    directory: Path,
    base_urls: Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Download ``<name>.pt`` into ``directory`` and return its path.

    Sources are ``base_urls`` (``<base>/<name>.pt``), else the model's official URLs, tried in
    order until one delivers the file. If the model table knows the file's hash,
    a mismatch raises ``ChecksumMismatchError`` and leaves nothing behind; otherwise the file is
    kept and its hash is printed with a warning. An existing file with the known hash is reused
    unless ``force``.

    Raises ``ValueError`` for an unknown name and ``DownloadError`` when every source fails.
    """
    info = model_info(name)
    directory = Path(directory)
    if isinstance(base_urls, str):
        base_urls = [base_urls]
    if base_urls is not None and not base_urls:
        raise ValueError("base_urls is empty: give at least one source")
    urls = [checkpoint_url(b, name) for b in base_urls] if base_urls else list(info.urls)
    if not urls:
        raise DownloadError(
            f"{name} has no published checkpoint; give a source with --base-url or "
            f"${environment.DOWNLOAD_URL}"
        )
    expected = info.sha256
    target = directory / info.checkpoint_file

    if target.is_file() and not force:
        existing = file_sha256(target, CHUNK_SIZE)
        if expected is None:
            print(
                f"warning: {target} already exists and {name}.pt has no known SHA-256; "
                f"keeping it (sha256 {existing}); use --force to download it again",
                file=sys.stderr,
            )
            return target
        if existing == expected:
            print(f"{target} already present, sha256 {existing} (verified)")
            return target
        print(
            f"{target} exists but its sha256 {existing} is not the expected {expected}; "
            "downloading it again",
            file=sys.stderr,
        )

    directory.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        try:
            tmp, actual = _fetch(url, directory, name)
        except _SourceFailed as exc:
            failures.append(f"  {url}: {exc}")
            continue
        if expected is not None and actual != expected:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{name}.pt from {url} has the wrong SHA-256; deleted it.\n"
                f"  expected: {expected}\n  actual:   {actual}"
            )
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if expected is None:
            print(
                f"warning: {name}.pt has no known SHA-256 in the model table; "
                f"check this hash against a trusted source: {actual}",
                file=sys.stderr,
            )
            print(f"{target} sha256 {actual} (unverified)")
        else:
            print(f"{target} sha256 {actual} (verified)")
        return target

    raise DownloadError(f"could not download {name}.pt from any source:\n" + "\n".join(failures))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backbones.download",
        description="Download pretrained EdgeFace checkpoints and verify their SHA-256.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(MODELS))
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"target directory (default: ${environment.CHECKPOINT_DIR}, else <repo>/checkpoints)",
    )
    parser.add_argument(
        "--base-url",
        action="append",
        default=None,
        metavar="URL",
        help=f"source to fetch <URL>/<NAME>.pt from; repeat to add fallbacks "
        f"(default: ${environment.DOWNLOAD_URL}, else the official GitHub and Idiap GitLab URLs)",
    )
    parser.add_argument("--force", action="store_true", help="download even if a good file exists")
    parser.add_argument(
        "--sha256sums", action="store_true", help="print the known hashes in sha256sum format"
    )
    args = parser.parse_args(argv)
    if args.sha256sums:
        print(sha256sums(), end="")
        return 0
    if not args.names:
        parser.error("give at least one model name")
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(MODELS)}")

    directory = environment.checkpoint_dir(args.dir)
    base_urls = args.base_url or environment.download_urls() or None
    status = 0
    for name in args.names:
        try:
            download_checkpoint(name, directory, base_urls, force=args.force)
        except (DownloadError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
