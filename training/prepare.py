"""Prepare a folder of face photos for training: the service's own crops, one PNG per image.

    python -m training.prepare SRC DST [--face center|largest] [--fallback] [--workers N]

SRC holds one folder per identity (``SRC/NAME/*.jpg``, the LFW and ImageFolder layout). Every
image goes through the service's decoding, detection and alignment (``Verifier.faces_in``), so
a model trains on exactly the crops it will see when serving. ``--face center`` suits data that
is already cropped around one face, such as LFW (the face nearest the image centre); ``largest``
(the default) suits ordinary photos. DST gets ``DST/NAME/<image stem>.png`` (112x112 RGB, PNG so
that training reads the crops without a second lossy step) and ``prepare.json``: the counts,
the settings and every image without a usable face with the reason. Crops already in DST are
kept, so an interrupted run picks up where it stopped.
"""

import argparse
import json
import multiprocessing
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

import environment
from backbones.catalog import DEFAULT_MODEL, CheckpointError
from verification import InputError, Verifier

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
REPORT = "prepare.json"


@dataclass(frozen=True)
class Task:
    source: Path
    target: Path


@dataclass(frozen=True)
class Outcome:
    source: Path
    error: str | None  # None: the crop was written


def find_images(src: Path) -> list[tuple[str, Path]]:
    """(identity, image) for every image in ``src/<identity>/``, sorted."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of identity folders")
    found = [
        (folder.name, image)
        for folder in sorted(p for p in src.iterdir() if p.is_dir())
        for image in sorted(folder.iterdir())
        if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file()
    ]
    if not found:
        raise FileNotFoundError(f"no images in {src}/<identity>/ (expected e.g. {src}/NAME/1.jpg)")
    return found


def plan(src: Path, dst: Path) -> list[Task]:
    return [Task(image, dst / name / f"{image.stem}.png") for name, image in find_images(src)]


_verifier: Verifier | None = None
_options: dict = {}


def _start_worker(model: str, options: dict, face: str, fallback: bool) -> None:
    global _verifier
    _verifier = Verifier.load(model, **options)
    _options.update(face=face, fallback=fallback)


def _prepare(task: Task) -> Outcome:
    assert _verifier is not None
    try:
        faces = _verifier.faces_in(
            task.source, str(task.source), _options["face"], 1, _options["fallback"]
        )
    except InputError as exc:
        return Outcome(task.source, exc.message)
    except OSError as exc:
        return Outcome(task.source, f"cannot read: {exc.strerror or exc}")
    task.target.parent.mkdir(parents=True, exist_ok=True)
    temporary = task.target.with_name(f".{task.target.name}.{os.getpid()}.tmp")
    Image.fromarray(faces.crops[0]).save(temporary, format="PNG")
    temporary.replace(task.target)  # never a half-written crop under its name
    return Outcome(task.source, None)


def prepare(
    src: Path,
    dst: Path,
    face: str = "largest",
    fallback: bool = False,
    workers: int | None = None,
    model: str = DEFAULT_MODEL,
    options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Write the crops of every image of ``src`` into ``dst``; returns the report it saves."""
    tasks = plan(src, dst)
    todo = [task for task in tasks if not task.target.is_file()]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    options = options if options is not None else environment.verifier_options()
    options = {**options, "threads": 1}
    failures: list[Outcome] = []
    if todo:
        context = multiprocessing.get_context("spawn")
        init = (model, options, face, fallback)
        with context.Pool(workers, initializer=_start_worker, initargs=init) as pool:
            outcomes = pool.imap_unordered(_prepare, todo, chunksize=8)
            bar = tqdm(outcomes, total=len(todo), desc="prepare", unit="img", disable=not progress)
            failures = [outcome for outcome in bar if outcome.error is not None]
    report = {
        "source": str(src),
        "images": len(tasks),
        "identities": len({task.target.parent.name for task in tasks}),
        "written": len(todo) - len(failures),
        "already_there": len(tasks) - len(todo),
        "no_face": len(failures),
        "face": face,
        "fallback": fallback,
        "model_for_detection": model,
        "failed": [
            {"image": str(o.source), "reason": o.error}
            for o in sorted(failures, key=lambda o: str(o.source))
        ],
    }
    dst.mkdir(parents=True, exist_ok=True)
    (dst / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("src", type=Path, help="folder with one sub-folder of images per person")
    parser.add_argument("dst", type=Path, help="where the crops and prepare.json go")
    parser.add_argument("--face", choices=("largest", "center"), default="largest")
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="where no face is found, align the template on the image centre instead of "
        "skipping the image (for centred crops such as LFW)",
    )
    parser.add_argument("--workers", type=int, help="processes (default: every core)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="whose pipeline detects")
    parser.add_argument("--checkpoint-dir", help=f"default ${environment.CHECKPOINT_DIR}")
    args = parser.parse_args(argv)
    try:
        report = prepare(
            args.src,
            args.dst,
            args.face,
            args.fallback,
            args.workers,
            args.model,
            environment.verifier_options(args.checkpoint_dir),
        )
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report['images']} images of {report['identities']} people: {report['written']} "
        f"written, {report['already_there']} already there, {report['no_face']} without a face"
    )
    for failure in report["failed"]:
        print(f"  {failure['image']}: {failure['reason']}")
    print(f"wrote {args.dst / REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
