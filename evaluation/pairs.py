"""Reading LFW pair lists in both official layouts.

View 1 (``pairsDevTrain.txt``/``pairsDevTest.txt``): a first line ``N``, then N same-person lines
``NAME i j`` and N different-person lines ``NAME1 i NAME2 j``.
View 2 (``pairs.txt``): a first line ``FOLDS N``, then per fold N same and N different lines.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    same: bool
    fold: int


class PairsFormatError(ValueError):
    pass


def lfw_image(images: Path, name: str, index: int) -> Path:
    return images / name / f"{name}_{index:04d}.jpg"


def _parse_line(fields: list[str], images: Path, where: str) -> tuple[Path, Path, bool]:
    try:
        if len(fields) == 3:
            name, i, j = fields
            return lfw_image(images, name, int(i)), lfw_image(images, name, int(j)), True
        if len(fields) == 4:
            name1, i, name2, j = fields
            return lfw_image(images, name1, int(i)), lfw_image(images, name2, int(j)), False
    except ValueError:
        pass
    raise PairsFormatError(f"{where}: expected 'NAME i j' or 'NAME1 i NAME2 j', got {fields}")


def read_pairs(pairs_file: str | Path, images: str | Path, check_files: bool = True) -> list[Pair]:
    """All pairs of a View 1 or View 2 file; with ``check_files`` a missing image is an error."""
    pairs_file, images = Path(pairs_file), Path(images)
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    if not lines:
        raise PairsFormatError(f"{pairs_file} is empty")
    header = lines[0]
    try:
        folds, per_side = (1, int(header[0])) if len(header) == 1 else map(int, header)
    except ValueError:
        raise PairsFormatError(f"{pairs_file}:1: expected 'N' or 'FOLDS N', got {header}") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_side:
        raise PairsFormatError(
            f"{pairs_file}: header promises {folds} fold(s) of {per_side} same and {per_side} "
            f"different pairs ({folds * 2 * per_side} lines), found {len(body)}"
        )
    pairs = []
    for n, fields in enumerate(body):
        first, second, same = _parse_line(fields, images, f"{pairs_file}:{n + 2}")
        expected_same = (n % (2 * per_side)) < per_side
        if same != expected_same:
            kind = "same-person" if expected_same else "different-person"
            raise PairsFormatError(f"{pairs_file}:{n + 2}: expected a {kind} line, got {fields}")
        pairs.append(Pair(first, second, same, fold=n // (2 * per_side)))
    if check_files:
        missing = sorted(
            {str(p) for pair in pairs for p in (pair.first, pair.second) if not p.is_file()}
        )
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"{pairs_file} references missing image {missing[0]}{more}")
    return pairs


def unique_images(pairs: list[Pair]) -> list[Path]:
    return sorted({p for pair in pairs for p in (pair.first, pair.second)})
