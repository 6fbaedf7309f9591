"""Training data: the crops ``python -m training.prepare`` wrote, their split, validation pairs.

A prepared folder holds ``NAME/<stem>.png`` (112x112 RGB, the service's own alignment). Labels
are the identities' indices in sorted name order. Pixels are scaled to [-1, 1] exactly as the
service does (``verification.embedding.to_batch``), so a trained model sees serving's input.
"""

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from evaluation.pairs import Pair, read_pairs
from verification.embedding import to_batch

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    identity: str


@dataclass(frozen=True)
class Split:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]  # the training identities, a label is an index into this

    def labels(self, samples: list[Sample]) -> list[int]:
        index = {name: i for i, name in enumerate(self.classes)}
        return [index[sample.identity] for sample in samples]


def find_crops(root: Path) -> list[Sample]:
    """Every ``root/NAME/*.png``, sorted."""
    samples = [
        Sample(path, path.parent.name)
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir())
        for path in sorted(folder.glob("*.png"))
    ]
    if not samples:
        raise FileNotFoundError(
            f"no crops in {root}/<identity>/*.png; make them with python -m training.prepare"
        )
    return samples


def split_samples(
    samples: list[Sample],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    by: str = "images",
    seed: int = 0,
) -> Split:
    """Train / validation / test, the same for the same ``seed``.

    ``images``: every identity's images are shuffled and cut in these fractions (stratified per
    identity; the original EdgeFace experiments' protocol): every identity is in training, and
    validation and test pairs are of unseen images of known people. An identity with fewer than
    3 images trains only. ``identities``: whole identities go to each part, so validation and
    test pairs are of people never trained on (what a verification service faces).
    """
    if by not in ("images", "identities"):
        raise ValueError("split by 'images' or 'identities'")
    rng = random.Random(seed)
    people: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        people[sample.identity].append(sample)
    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    if by == "identities":
        names = sorted(people)
        rng.shuffle(names)
        n_val, n_test = (max(1, round(f * len(names))) for f in fractions[1:])
        cuts = {"val": names[:n_val], "test": names[n_val : n_val + n_test]}
        cuts["train"] = names[n_val + n_test :]
        for part, chosen in cuts.items():
            parts[part] = [s for name in sorted(chosen) for s in people[name]]
        classes = sorted(cuts["train"])
    else:
        for name in sorted(people):
            images = list(people[name])
            rng.shuffle(images)
            n = len(images)
            n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
            n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
            parts["val"] += images[:n_val]
            parts["test"] += images[n_val : n_val + n_test]
            parts["train"] += images[n_val + n_test :]
        classes = sorted(people)
    return Split(parts["train"], parts["val"], parts["test"], classes)


def random_pairs(samples: list[Sample], count: int = 1000, seed: int = 0) -> list[Pair]:
    """Up to ``count`` distinct pairs, half same-person and half different, drawn at random.

    Same pairs pick an identity with at least two images uniformly, so the people with hundreds
    of images (LFW's George_W_Bush) do not make up most of them.
    """
    rng = random.Random(seed)
    people: dict[str, list[Path]] = defaultdict(list)
    for sample in samples:
        people[sample.identity].append(sample.path)
    names = sorted(people)
    several = [name for name in names if len(people[name]) >= 2]
    possible_same = sum(len(people[n]) * (len(people[n]) - 1) // 2 for n in several)
    # As many different pairs as same ones: best-threshold accuracy then has chance level 0.5.
    n_same = n_different = min(count // 2, possible_same) if len(names) >= 2 else 0
    chosen: dict[tuple[Path, Path], bool] = {}
    while sum(chosen.values()) < n_same:
        a, b = rng.sample(people[rng.choice(several)], 2)
        chosen.setdefault(tuple(sorted((a, b))), True)
    different = 0
    while different < n_different:
        first, second = rng.sample(names, 2)
        key = tuple(sorted((rng.choice(people[first]), rng.choice(people[second]))))
        if key not in chosen:
            chosen[key] = False
            different += 1
    return [Pair(a, b, same, 0) for (a, b), same in chosen.items()]


def lfw_crop_pairs(pairs_file: Path, crops: Path) -> list[Pair]:
    """An LFW pair list (View 1 or View 2) over a folder prepared from LFW's images."""
    pairs = read_pairs(pairs_file, crops, check_files=False)
    as_png = [
        Pair(p.first.with_suffix(".png"), p.second.with_suffix(".png"), p.same, p.fold)
        for p in pairs
    ]
    missing = sorted({str(x) for p in as_png for x in (p.first, p.second) if not x.is_file()})
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} crops of {pairs_file.name} are missing from {crops}, "
            f"e.g. {missing[0]}; prepare the LFW images with python -m training.prepare"
        )
    return as_png


def read_crop(path: Path) -> np.ndarray:
    """One 112x112 crop as HxWx3 uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def crops_tensor(paths: list[Path]) -> torch.Tensor:
    """Nx3x112x112 float32 in [-1, 1], the service's scaling."""
    return torch.from_numpy(to_batch([read_crop(p) for p in paths]))


class CropDataset(Dataset):
    """(image, label) over prepared crops; ``flip`` mirrors half of them at random.

    The flip draws from torch's generator, so seeded runs (and DataLoader workers, which torch
    seeds from it) repeat exactly.
    """

    def __init__(self, samples: list[Sample], labels: list[int], flip: bool = False) -> None:
        if len(samples) != len(labels):
            raise ValueError("one label per sample")
        self.samples, self.labels, self.flip = samples, labels, flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = crops_tensor([self.samples[index].path])[0]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.labels[index]
