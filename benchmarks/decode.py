"""What does decoding an upload cost? ``python -m benchmarks.decode [--quick] [--json PATH]
[--cases NAME,...] [--return-memory]``

Synthetic worst cases inside the service's limits (a file of at most 10 MB, at most 40
megapixels): many pixels in few bytes, in every format and colour mode the decoder treats
differently, at 6000x6000 and at 40 megapixels with extreme aspect ratios (WebP stops at 16383
pixels a side). Each case is decoded the way ``Verifier.decode`` does it (``load_image_reduced``
with the detector's ``DETECT_MAX_SIDE``), then downscaled as the detector does, in a fresh
child process, which reports CPU seconds, wall seconds and its peak RSS above its idle
RSS (after imports, with the file's bytes already read; the peak is /proc's VmHWM, reset
before the decode). Prints a table, writes JSON.

``--quick`` runs every case at one small size, to check the benchmark itself (as the tests do).
"""

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from tqdm import tqdm

from environment import REPO
from face_alignment import png, with_huge_pages

MAX_FILE_BYTES = 10 * 1024 * 1024  # the service's default upload limit
TARGET_CPU_S = 1.0
TARGET_EXTRA_MB = 400.0
SQUARE = (6000, 6000)
WIDE = (40_000, 1_000)
WEBP_WIDE = (16_383, 2_441)  # WebP's largest side is 16383 pixels
QUICK_SQUARE = (1200, 1200)
QUICK_WIDE = (4000, 250)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    encode: Callable[[tuple[int, int]], bytes]
    webp: bool = False


def gradient(size: tuple[int, int], bands: int, step: int = 1) -> np.ndarray:
    """Smooth colours (compress well, so many pixels fit in few bytes) that are not one colour;
    `step` > 1 makes runs of equal pixels, for LZW (TIFF, GIF), which has no row filters."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :] // step * step
    y = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis] // step * step
    planes = [x + 0 * y, y + 0 * x, (x + y) / 2, 255 - (x + y) / 2][:bands]
    return np.stack(planes, axis=2).astype(np.uint8)


def save(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def rgb(size: tuple[int, int], step: int = 1) -> Image.Image:
    return Image.fromarray(gradient(size, 3, step))


def rgba(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(gradient(size, 4))


def la(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gradient(size, 4)[:, :, 2:]))


def palette(size: tuple[int, int], step: int = 1) -> Image.Image:
    """A 256-colour palette image whose index 0 is transparent (tRNS / GIF transparency)."""
    img = Image.fromarray(gradient(size, 1, step)[:, :, 0]).convert("P")
    img.putpalette([value for i in range(256) for value in (i, 255 - i, 128)])
    img.info["transparency"] = 0
    return img


def gray16(size: tuple[int, int]) -> Image.Image:
    values = gradient(size, 1)[:, :, 0].astype(np.uint16) * 257
    return Image.fromarray(values)


def bilevel(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(gradient(size, 1)[:, :, 0] > 127).convert("1")


def cmyk(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("CMYK", size, gradient(size, 4).tobytes())


CASES = (
    Case("png-rgb", "PNG, 8-bit RGB", lambda s: save(rgb(s), "PNG")),
    Case("png-rgba", "PNG, 8-bit RGBA", lambda s: save(rgba(s), "PNG")),
    Case("png-la", "PNG, gray + alpha", lambda s: save(la(s), "PNG")),
    Case("png-p", "PNG, palette + tRNS", lambda s: save(palette(s), "PNG", transparency=0)),
    Case("png-16", "PNG, 16-bit gray", lambda s: save(gray16(s), "PNG")),
    Case(
        "webp-lossy",
        "WebP, lossy RGB",
        lambda s: save(rgb(s), "WEBP", quality=80, method=0),
        webp=True,
    ),
    Case(
        "webp-lossless",
        "WebP, lossless RGBA",
        lambda s: save(rgba(s), "WEBP", lossless=True, method=0),
        webp=True,
    ),
    Case("tiff-lzw", "TIFF, LZW RGB", lambda s: save(rgb(s, 32), "TIFF", compression="tiff_lzw")),
    Case(
        "tiff-deflate",
        "TIFF, deflate RGBA",
        lambda s: save(rgba(s), "TIFF", compression="tiff_adobe_deflate"),
    ),
    Case("bmp-1bit", "BMP, 1 bit per pixel", lambda s: save(bilevel(s), "BMP")),
    Case("gif", "GIF, palette + tRNS", lambda s: save(palette(s, 32), "GIF", transparency=0)),
    Case("jpeg-baseline", "JPEG, baseline", lambda s: save(rgb(s), "JPEG", quality=90)),
    Case(
        "jpeg-progressive",
        "JPEG, progressive",
        lambda s: save(rgb(s), "JPEG", quality=90, progressive=True),
    ),
    Case("jpeg-cmyk", "JPEG, CMYK", lambda s: save(cmyk(s), "JPEG", quality=90)),
)


def sizes_for(case: Case, quick: bool) -> list[tuple[int, int]]:
    if quick:  # one size a case, square and wide in turn
        return [QUICK_SQUARE if CASES.index(case) % 2 else QUICK_WIDE]
    wide = WEBP_WIDE if case.webp else WIDE
    return [SQUARE, wide, (wide[1], wide[0])]


def status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (given there in kB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    # ru_maxrss would not do: it survives exec, so it carries the parent's peak. Writing 5 to
    # clear_refs resets VmHWM (Linux >= 4.0) to the current RSS.
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def child(path: Path, keep_memory: bool) -> dict:
    """Decode one file as the pipeline does; runs in a fresh process (``--child``), which keeps
    freed heap as the service's decoding processes do (``EDGEFACE_DECODE_MEMORY_KEPT_MB``)
    unless `keep_memory` is False. The first decode of the process: the worst case."""
    from face_alignment import (
        DEFAULT_MAX_PIXELS,
        DETECT_MAX_SIDE,
        keep_decode_memory,
        load_image_reduced,
    )
    from face_alignment.detection import _resize  # the detector's own downscale

    if keep_memory:
        keep_decode_memory()
    data = path.read_bytes()
    reset_peak_rss()
    idle = status_bytes("VmRSS")
    cpu, wall = time.process_time(), time.perf_counter()
    pixels, scale = load_image_reduced(data, DEFAULT_MAX_PIXELS, DETECT_MAX_SIDE)  # as Verifier
    decode_cpu = time.process_time() - cpu
    decoded = pixels.shape
    if max(pixels.shape[:2]) > DETECT_MAX_SIDE:
        pixels = _resize(pixels, DETECT_MAX_SIDE / max(pixels.shape[:2]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = status_bytes("VmHWM")
    return {
        "cpu_s": round(cpu, 4),
        "decode_cpu_s": round(decode_cpu, 4),
        "wall_s": round(wall, 4),
        "peak_extra_mb": round(max(0, peak - idle) / 1e6, 1),
        "idle_mb": round(idle / 1e6, 1),
        "decoded": [decoded[1], decoded[0]],
        "scale": round(scale, 4),
        "mean_rgb": [round(float(v), 1) for v in pixels.reshape(-1, 3).mean(axis=0)],
    }


def reference_child(path: Path) -> dict:
    """The machine's speed: CPU seconds of PIL decoding a PNG at full size into NumPy (as the
    service did before reduced decoding; the issue measured 0.9 s for 6000x6000 RGB)."""
    data = path.read_bytes()
    cpu = time.process_time()
    with Image.open(io.BytesIO(data)) as img:
        np.asarray(img.convert("RGB"))
    return {"cpu_s": round(time.process_time() - cpu, 4)}


def reference(folder: Path, quick: bool, repeats: int = 3) -> float:
    """Median CPU seconds of `reference_child` on the 6000x6000 RGB PNG, in fresh processes."""
    path = folder / "reference.png"
    path.write_bytes(CASES[0].encode(QUICK_SQUARE if quick else SQUARE))
    command = [sys.executable, "-m", "benchmarks.decode", "--reference-child", str(path)]
    times = []
    for _ in range(repeats):
        done = subprocess.run(
            command,
            cwd=REPO,
            env=child_environment(huge_pages=False),  # the plain process
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the reference decode failed:\n{done.stderr[-2000:]}")
        times.append(json.loads(done.stdout)["cpu_s"])
    path.unlink()
    return sorted(times)[len(times) // 2]


def child_environment(huge_pages: bool) -> dict[str, str]:
    """The environment of a process that decodes: as the service's worker processes start,
    with malloc's huge pages (``face_alignment.with_huge_pages``), or as a plain process."""
    environment = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    if huge_pages:
        environment["GLIBC_TUNABLES"] = with_huge_pages(os.environ.get("GLIBC_TUNABLES"))
    return environment


def measure(path: Path, keep_memory: bool, huge_pages: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.decode", "--child", str(path)]
    command += [] if keep_memory else ["--return-memory"]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=child_environment(huge_pages),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout)


def run(
    quick: bool,
    folder: Path,
    names: Sequence[str] | None = None,
    keep_memory: bool = True,
    huge_pages: bool = True,
) -> list[dict]:
    cases = [case for case in CASES if not names or case.name in names]
    jobs = [(case, size) for case in cases for size in sizes_for(case, quick)]
    results = []
    for case, size in tqdm(jobs, desc="decode cases", unit="case", file=sys.stderr):
        data = case.encode(size)
        path = folder / f"{case.name}-{size[0]}x{size[1]}"
        path.write_bytes(data)
        row = {
            "case": case.name,
            "what": case.what,
            "width": size[0],
            "height": size[1],
            "megapixels": round(size[0] * size[1] / 1e6, 1),
            "file_bytes": len(data),
            "inside_limits": len(data) <= MAX_FILE_BYTES,
        }
        row.update(measure(path, keep_memory, huge_pages))
        path.unlink()
        results.append(row)
    return results


def table(rows: Sequence[dict]) -> str:
    lines = [
        "| case | size | file | CPU s | wall s | peak extra MB | decoded to |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        size = f"{row['width']}x{row['height']}"
        file = f"{row['file_bytes'] / 1e6:.2f} MB"
        if "error" in row:
            lines.append(f"| {row['case']} | {size} | {file} | error: {row['error']} | | | |")
            continue
        decoded = "x".join(str(v) for v in row["decoded"])
        lines.append(
            f"| {row['case']} | {size} | {file} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} "
            f"| {row['peak_extra_mb']:.0f} | {decoded} |"
        )
    return "\n".join(lines)


def transparent_hugepage() -> str | None:
    """The kernel's transparent huge page mode (always, madvise or never), None if unknown."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else None


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--cases", type=lambda text: text.split(","), help="only these, comma-separated"
    )
    parser.add_argument(
        "--return-memory",
        action="store_true",
        help="decode as with EDGEFACE_DECODE_MEMORY_KEPT_MB=0 (freed heap given back at once)",
    )
    parser.add_argument(
        "--no-huge-pages",
        action="store_true",
        help="decode in plain processes, without the malloc huge pages the service's workers get",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reference-child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, keep_memory=not args.return_memory)))
        return 0
    if args.reference_child:
        print(json.dumps(reference_child(args.reference_child)))
        return 0
    started, load_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgeface-decode-") as folder:
        reference_cpu_s = reference(Path(folder), args.quick)
        rows = run(
            args.quick,
            Path(folder),
            args.cases,
            keep_memory=not args.return_memory,
            huge_pages=not args.no_huge_pages,
        )
    measured = [row for row in rows if "error" not in row]
    worst = {
        "cpu_s": max((row["cpu_s"] for row in measured), default=None),
        "wall_s": max((row["wall_s"] for row in measured), default=None),
        "peak_extra_mb": max((row["peak_extra_mb"] for row in measured), default=None),
    }
    report = {
        "meta": {
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.decode", *argv])
            if argv is not None
            else " ".join(sys.argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "cases": args.cases,
            "decode_memory_kept": not args.return_memory,
            "huge_pages": not args.no_huge_pages,
            "transparent_hugepage": transparent_hugepage(),
            "pillow": PIL.__version__,
            # what face_alignment.png decodes with (None: every PNG by PIL)
            "pyspng": png.pyspng.__version__ if png.pyspng else None,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "git_commit": git_commit(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "target": {"cpu_s": TARGET_CPU_S, "peak_extra_mb": TARGET_EXTRA_MB},
        # Times drift with the machine's speed; this one, measured in the same run, tells how fast
        # it was (the figure for the same work: 0.9 s).
        "reference_cpu_s": reference_cpu_s,
        "worst": worst,
        "cases": rows,
    }
    print(table(rows))
    print(
        f"\nworst: {worst['cpu_s']} CPU s, {worst['wall_s']} wall s, "
        f"{worst['peak_extra_mb']} MB above idle "
        f"(target {TARGET_CPU_S} s, {TARGET_EXTRA_MB:.0f} MB); "
        f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"reference (PIL, full size, the first RGB PNG into NumPy): {reference_cpu_s} CPU s"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    # Every case is a valid image inside the limits: one that does not decode is a failure.
    failed = [row for row in rows if "error" in row or not row["inside_limits"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
