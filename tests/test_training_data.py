"""training.data on real prepared LFW crops: the split, the pairs, the dataset, LFW pair files."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import CropDataset, find_crops, lfw_crop_pairs, random_pairs, split_samples


def test_stratified_split_is_per_identity_and_fixed_by_the_seed(lfw_train_crops):
    samples = find_crops(lfw_train_crops)
    split = split_samples(samples, (0.8, 0.1, 0.1), "images", seed=3)
    assert split == split_samples(samples, (0.8, 0.1, 0.1), "images", seed=3)
    assert split != split_samples(samples, (0.8, 0.1, 0.1), "images", seed=4)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(samples) == len(set.union(*parts))
    per_person = Counter(s.identity for s in samples)
    assert split.classes == sorted(per_person) and len(split.classes) == 20
    for part, fraction in ((split.val, 0.1), (split.test, 0.1)):
        counts = Counter(s.identity for s in part)
        assert all(counts[name] == max(1, round(fraction * n)) for name, n in per_person.items())
    labels = split.labels(split.train)
    assert all(
        split.classes[label] == s.identity for s, label in zip(split.train, labels, strict=True)
    )


def test_identity_split_holds_whole_people_out(lfw_train_crops):
    split = split_samples(find_crops(lfw_train_crops), (0.6, 0.2, 0.2), "identities", seed=0)
    people = [{s.identity for s in part} for part in (split.train, split.val, split.test)]
    assert [len(p) for p in people] == [12, 4, 4] and len(set.union(*people)) == 20
    assert split.classes == sorted(people[0])


def test_random_pairs_are_balanced_distinct_and_labelled_right(lfw_train_crops):
    samples = find_crops(lfw_train_crops)
    pairs = random_pairs(samples, 400, seed=1)
    assert pairs == random_pairs(samples, 400, seed=1)
    assert len(pairs) == 400 and sum(p.same for p in pairs) == 200
    assert len({frozenset((p.first, p.second)) for p in pairs}) == 400
    assert all((p.first.parent == p.second.parent) == p.same and p.first != p.second for p in pairs)
    # Two images of each of three people allow three same pairs, hence three different ones.
    few = [s for s in samples if s.identity in {x.identity for x in samples[:1]}][:2]
    few += [s for s in samples if s.identity == samples[-1].identity][:2]
    assert [p.same for p in random_pairs(few, 100)].count(True) == 2


def test_dataset_scales_like_the_service_and_flips(lfw_train_crops):
    samples = find_crops(lfw_train_crops)[:4]
    plain = CropDataset(samples, [0, 1, 2, 3])
    image, label = plain[2]
    pixels = np.asarray(Image.open(samples[2].path).convert("RGB"))
    assert image.shape == (3, 112, 112) and label == 2
    np.testing.assert_allclose(image.numpy(), pixels.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
    flipping = CropDataset(samples, [0, 1, 2, 3], flip=True)
    torch.manual_seed(0)
    seen = [flipping[0][0] for _ in range(20)]
    flipped = [torch.equal(x, plain[0][0].flip(-1)) for x in seen]
    assert 0 < sum(flipped) < 20
    assert all(f or torch.equal(x, plain[0][0]) for f, x in zip(flipped, seen, strict=True))


def test_lfw_pair_files_over_prepared_crops(lfw_train_crops, tmp_path):
    a, b = sorted(p.name for p in lfw_train_crops.iterdir() if p.is_dir())[:2]
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(f"1\n{a}\t1\t2\n{a}\t1\t{b}\t3\n")
    pairs = lfw_crop_pairs(pairs_file, lfw_train_crops)
    assert [p.same for p in pairs] == [True, False]
    assert pairs[1].second == lfw_train_crops / b / f"{b}_0003.png" and pairs[1].second.is_file()
    pairs_file.write_text(f"1\n{a}\t1\t99\n{a}\t1\t{b}\t3\n")
    with pytest.raises(FileNotFoundError, match="training.prepare"):
        lfw_crop_pairs(pairs_file, lfw_train_crops)
