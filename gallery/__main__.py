"""The gallery from the command line, through the same code as the HTTP routes.

python -m gallery [--url URL] [--model NAME] [--checkpoint-dir DIR] COMMAND
  enroll DIR        DIR/SUBJECT/*.jpg: the largest face of each image (progress bar; a report
                    of the images refused and why, also as JSON with --report FILE)
  identify IMAGE    the closest subjects of its faces (--max-faces, --top-k, --threshold)
  list | show SUBJECT | delete SUBJECT
  export FILE | import FILE   JSON lines with embeddings and the model binding

The gallery is $EDGEFACE_GALLERY_URL, else the service's SQLite file in $EDGEFACE_DATA_DIR.
"""

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

import environment
from backbones.catalog import DEFAULT_MODEL, CheckpointError, checkpoint_path, file_sha256
from gallery.errors import DuplicateFaceError, GalleryError
from gallery.operations import (
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_MIN_SCORE,
    enroll_face,
    gallery_faces,
    identify_answer,
    subject_record,
)
from gallery.records import check_subject_id
from gallery.store import Gallery
from gallery.thresholds import operating_point
from training.prepare import find_images
from verification import InputError, Verifier

FAILED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gallery", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="gallery URL (default: as the service)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--checkpoint-dir", help="folder with <model>.pt")
    commands = parser.add_subparsers(dest="command", required=True)
    enroll = commands.add_parser("enroll", help="enroll DIR/SUBJECT/*.jpg")
    enroll.add_argument("dir", type=Path)
    enroll.add_argument("--min-face-size", type=float, default=DEFAULT_MIN_FACE_SIZE)
    enroll.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    enroll.add_argument("--report", type=Path, help="also write the refusals as JSON here")
    identify = commands.add_parser("identify", help="who is in IMAGE")
    identify.add_argument("image", type=Path)
    identify.add_argument("--max-faces", type=int, default=1, help="0: every face")
    identify.add_argument("--top-k", type=int, default=5)
    identify.add_argument("--threshold", type=float)
    commands.add_parser("list", help="every subject with its face count")
    for name in ("show", "delete"):
        commands.add_parser(name, help=f"{name} one subject").add_argument("subject")
    commands.add_parser("export", help="write the gallery as JSON lines").add_argument(
        "file", type=Path
    )
    commands.add_parser("import", help="add a gallery export").add_argument("file", type=Path)
    return parser.parse_args(argv)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Gallery]:
    checkpoint = checkpoint_path(args.model, environment.checkpoint_dir(args.checkpoint_dir))
    gallery = Gallery.open(environment.gallery_url(args.url), args.model, file_sha256(checkpoint))
    try:
        yield gallery
    finally:
        gallery.close()


def load_verifier(args: argparse.Namespace) -> Verifier:
    return Verifier.load(args.model, **environment.verifier_options(args.checkpoint_dir))


def enroll(args: argparse.Namespace, gallery: Gallery) -> int:
    images = find_images(args.dir)
    verifier = load_verifier(args)
    refused: list[dict] = []
    enrolled = 0
    for subject, path in tqdm(images, desc="enroll", unit="img"):
        try:
            check_subject_id(subject)
            data = path.read_bytes()
            face = gallery_faces(verifier, data, 1)["faces"][0]
            enroll_face(
                gallery, subject, face, data, args.min_face_size, args.min_score,
                create_subject=True,
            )  # fmt: skip
            enrolled += 1
        except DuplicateFaceError as exc:
            refused.append({"image": str(path), "reason": "duplicate", "detail": exc.message})
        except (InputError, OSError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            refused.append({"image": str(path), "reason": type(exc).__name__, "detail": reason})
    print(f"enrolled {enrolled} of {len(images)} images; refused {len(refused)}")
    for item in refused:
        print(f"  {item['image']}: {item['detail']}")
    if args.report:
        report = {"enrolled": enrolled, "images": len(images), "refused": refused}
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def identify(args: argparse.Namespace, gallery: Gallery) -> int:
    verifier = load_verifier(args)
    point = operating_point(verifier.thresholds, args.threshold)
    found = gallery_faces(verifier, args.image.read_bytes(), args.max_faces)
    faces = found["faces"]
    results = gallery.identify([f["embedding"] for f in faces], args.top_k)
    answer = identify_answer(
        faces, results, point.threshold, point.far, args.model, found["face_count"]
    )
    print(json.dumps(answer, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with opened(args) as gallery:
            if args.command == "enroll":
                return enroll(args, gallery)
            if args.command == "identify":
                return identify(args, gallery)
            if args.command == "list":
                for subject in gallery.all_subjects():
                    print(f"{subject.id}\t{subject.face_count} faces")
            elif args.command == "show":
                print(json.dumps(subject_record(gallery.get_subject(args.subject), True), indent=2))
            elif args.command == "delete":
                gallery.delete_subject(args.subject)
                print(f"deleted {args.subject} and its faces")
            elif args.command == "export":
                with args.file.open("w") as out:
                    faces = gallery.export_jsonl(out)
                print(f"exported {faces} faces to {args.file}")
            elif args.command == "import":
                with args.file.open() as lines:
                    subjects, faces = gallery.import_jsonl(lines)
                print(f"imported {subjects} subjects and {faces} faces")
    except (GalleryError, InputError, CheckpointError, FileNotFoundError) as exc:
        print(f"gallery: {exc}", file=sys.stderr)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
