"""Verify or embed without a server; prints the same JSON as POST /verify and POST /embed.

python -m verification verify A.jpg B.jpg [--metric cosine] [--threshold T | --far F]
    [--face largest|center] [--return-crops]
python -m verification embed A.jpg [--max-faces N] [--return-crops]
(both take --model NAME and --checkpoint-dir DIR; the folder defaults to $EDGEFACE_CHECKPOINT_DIR,
the runtime to $EDGEFACE_RUNTIME and the ONNX cache to $EDGEFACE_ONNX_DIR)

Exit status: 0 with the answer on stdout; 2 with ``error: <field>: <why>`` on stderr for bad input
(unreadable file, not an image, no face, invalid option); 1 when the model cannot be loaded.
"""

import argparse
import json
import math
import sys
from pathlib import Path
from typing import get_args

import environment
from backbones.catalog import DEFAULT_MODEL, CheckpointError
from verification.answers import Answer, embedding_answer, verification_answer
from verification.distances import METRICS
from verification.errors import InputError
from verification.pipeline import FaceChoice, Verifier

BAD_INPUT = 2
CANNOT_RUN = 1


def threshold_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return value


def max_faces_value(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be an integer >= 0 (0: every face)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verification",
        description="EdgeFace face verification on the command line (prints JSON).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    common.add_argument(
        "--checkpoint-dir", help="folder with <model>.pt (default $EDGEFACE_CHECKPOINT_DIR)"
    )
    common.add_argument(
        "--return-crops", action="store_true", help="add each aligned 112x112 face as base64 PNG"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", parents=[common], help="do two photos match?")
    verify.add_argument("image1", type=Path)
    verify.add_argument("image2", type=Path)
    verify.add_argument("--metric", choices=METRICS, default="cosine")
    verify.add_argument(
        "--threshold", type=threshold_value, help="default: calibrated for model and metric"
    )
    verify.add_argument(
        "--far",
        type=float,
        help="use the threshold calibrated at this false-match rate (1e-2, 1e-3, 1e-4, 1e-5)",
    )
    verify.add_argument(
        "--face",
        choices=get_args(FaceChoice),
        default="largest",
        help="which face of each photo: the largest (default) or the one nearest the centre",
    )
    embed = commands.add_parser("embed", parents=[common], help="embed every face of a photo")
    embed.add_argument("image", type=Path)
    embed.add_argument(
        "--max-faces", type=max_faces_value, default=1, help="largest N faces; 0: all (default 1)"
    )
    return parser


def read_image(path: Path, field: str) -> bytes:
    """The file's bytes; the pipeline gets bytes, exactly as from an HTTP upload."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", field) from None


def load_verifier(args: argparse.Namespace) -> Verifier:
    return Verifier.load(args.model, **environment.verifier_options(args.checkpoint_dir))


def run(args: argparse.Namespace) -> Answer:
    if args.command == "verify":
        images = read_image(args.image1, "image1"), read_image(args.image2, "image2")
        verifier = load_verifier(args)
        result = verifier.verify(
            *images, metric=args.metric, threshold=args.threshold, face=args.face, far=args.far
        )
        return verification_answer(result, return_crops=args.return_crops)
    image = read_image(args.image, "image")
    verifier = load_verifier(args)
    faces = verifier.embed_faces(image, "image", max_faces=args.max_faces)
    return embedding_answer(faces, verifier.model_name, return_crops=args.return_crops)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        answer = run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return CANNOT_RUN
    # The separators of the HTTP API's JSON responses, so the bytes match as well.
    print(json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
