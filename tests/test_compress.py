"""training.compress: SVD initialisation of LoRALin students and distillation, on real weights."""

import copy
import json

import httpx
import pytest
import torch
from PIL import Image
from torch import nn

from backbones import (
    LoRALin,
    build_model,
    count_parameters,
    get_model,
    load_model,
    read_state_dict,
)
from backbones.checkpoints import load_state_dict_strict
from tests.server import started_server
from training.compress import (
    block_errors,
    calibration_crops,
    compressed_model,
    dense_weight,
    distill,
    feature_blocks,
    find_crops,
    identities_in,
    input_moments,
    jitter,
    lowrank_layers,
    main,
    read_crops,
    record_outputs,
    student_name,
    svd_factors,
    svd_student,
    teacher_targets,
)
from training.train import preserving_regulariser
from verification import Verifier
from verification.embedding import to_batch

STUDENT = "edgeface_xs_gamma_06"


def test_full_rank_svd_reproduces_the_layer():
    torch.manual_seed(0)
    layer = nn.Linear(96, 384)
    first, second = svd_factors(layer.weight, 96)
    pair = LoRALin(96, 384, 96)
    with torch.no_grad():
        pair.linear1.weight.copy_(first)
        pair.linear2.weight.copy_(second)
        pair.linear2.bias.copy_(layer.bias)
    x = torch.randn(32, 96)
    torch.testing.assert_close(pair(x), layer(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("rank", [2, 17, 60])
def test_truncation_error_is_the_discarded_singular_values(rank):
    torch.manual_seed(1)
    weight = torch.randn(192, 96) @ torch.diag(torch.linspace(3, 0.1, 96))
    first, second = svd_factors(weight, rank)
    singular = torch.linalg.svdvals(weight.double())
    error = torch.linalg.matrix_norm((weight - second @ first).double())
    # Eckart-Young: no rank-r matrix is closer, and this one is exactly that far.
    assert float(error) == pytest.approx(float(singular[rank:].norm()), rel=1e-5)
    assert first.shape == (rank, 96) and second.shape == (192, rank)


def anisotropic_inputs(count: int, width: int, seed: int) -> torch.Tensor:
    """Inputs that use a few directions much more than the rest, as a layer's inputs do."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(width, width, generator=generator, dtype=torch.float64))
    spread = torch.logspace(1, -2, width, dtype=torch.float64)
    return (torch.randn(count, width, generator=generator, dtype=torch.float64) * spread) @ basis.T


def output_error(weight: torch.Tensor, first: torch.Tensor, second: torch.Tensor, x) -> float:
    """Mean squared error of the factored layer's outputs on inputs ``x``."""
    return float(((x @ (weight.double() - second.double() @ first.double()).T) ** 2).sum(1).mean())


@pytest.mark.parametrize("rank", [4, 24])
def test_input_weighted_svd_is_the_best_layer_for_those_inputs(rank):
    torch.manual_seed(2)
    weight = torch.randn(80, 48, dtype=torch.float64)
    x = anisotropic_inputs(4000, 48, seed=3)
    moment = x.T @ x / len(x)
    first, second = svd_factors(weight, rank, moment)
    plain = svd_factors(weight, rank)
    weighted_error = output_error(weight, first, second, x)
    # Its error is what the truncation of W C^1/2 discards (up to the damping) ...
    values, vectors = torch.linalg.eigh(moment)
    root = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    discarded = torch.linalg.svdvals(weight @ root)[rank:]
    assert weighted_error == pytest.approx(float((discarded**2).sum()), rel=1e-3)
    # ... which is below what the plain SVD, best for the weight alone, leaves on these inputs.
    assert weighted_error < 0.9 * output_error(weight, *plain, x)
    # And the weight-space error is larger: the rank went where the inputs are.
    assert torch.linalg.matrix_norm(weight - second @ first) > torch.linalg.matrix_norm(
        weight - plain[1] @ plain[0]
    )


def test_input_weighted_svd_at_full_rank_is_the_layer():
    weight = torch.randn(40, 24, dtype=torch.float64)
    x = anisotropic_inputs(1000, 24, seed=4)
    first, second = svd_factors(weight, 24, x.T @ x / len(x))
    torch.testing.assert_close(second @ first, weight, atol=1e-8, rtol=1e-8)


@pytest.fixture(scope="module")
def teacher(checkpoint_dir):
    return load_model("edgeface_xs_q", checkpoint_dir)


def test_student_has_the_tables_architecture_and_counts(teacher):
    assert student_name("edgeface_xs_q", 0.6) == STUDENT
    student = compressed_model(teacher, STUDENT)
    assert count_parameters(student) == count_parameters(get_model(STUDENT))
    assert count_parameters(student) < count_parameters(teacher)
    # Weights outside the low-rank pairs are the teacher's.
    teacher_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if "linear1" not in key and "linear2" not in key:
            torch.testing.assert_close(value, teacher_state[key], atol=0, rtol=0)
    with pytest.raises(ValueError, match="no row"):
        student_name("edgeface_xs_q", 0.55)


def test_full_rank_student_is_the_teacher(teacher):
    # gamma 1.0: every pair at full rank, so the whole network must give the teacher's output.
    student = svd_student(teacher, build_model("edgenext_x_small", gamma=1.0)).eval()
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), atol=1e-4, rtol=1e-4)


def test_lowrank_teacher_is_compressed_through_its_product(checkpoint_dir):
    teacher = load_model("edgeface_s_gamma_05", checkpoint_dir)
    student = compressed_model(teacher, student_name("edgeface_s_gamma_05", 0.3))
    name, pair = next((n, m) for n, m in student.named_modules() if isinstance(m, LoRALin))
    weight, _ = dense_weight(teacher.get_submodule(name))
    approx, _ = dense_weight(pair)
    rank = pair.linear1.out_features
    singular = torch.linalg.svdvals(weight.detach().double())
    error = torch.linalg.matrix_norm((weight - approx).detach().double())
    assert float(error) == pytest.approx(float(singular[rank:].norm()), rel=1e-4)


def test_input_weighted_student_starts_closer_to_the_teacher(teacher, crops_dir):
    crops = read_crops(sorted(crops_dir.glob("*/*.png")))
    calibration, held = crops[:24], crops[24:]
    student = get_model(STUDENT)
    moments = input_moments(teacher, lowrank_layers(student), calibration)
    # One moment per LoRALin layer, each the second moment of what that layer of the teacher
    # sees: symmetric, positive semi-definite, sized by the layer's input.
    assert sorted(moments) == sorted(lowrank_layers(student))
    for name, moment in moments.items():
        width = teacher.get_submodule(name).in_features
        assert moment.shape == (width, width)
        torch.testing.assert_close(moment, moment.T)
        assert float(torch.linalg.eigvalsh(moment).min()) > -1e-6 * float(moment.trace())

    targets = embed_normalised(teacher, held)
    plain = 1 - (embed_normalised(compressed_model(teacher, STUDENT), held) * targets).sum(1)
    weighted_model = compressed_model(teacher, STUDENT, calibration, "activations")
    weighted = 1 - (embed_normalised(weighted_model, held) * targets).sum(1)
    # On crops it was not calibrated on, the weighted student is closer to the teacher (here
    # ~0.6 against ~1.0 after 24 calibration crops; on DevTest, 512 crops take the SVD-alone
    # accuracy of XS gamma 0.6 from 73.6% to 96.5%).
    assert float(weighted.mean()) < 0.75 * float(plain.mean())


def embed_normalised(model: nn.Module, crops) -> torch.Tensor:
    with torch.no_grad():
        return nn.functional.normalize(model.eval()(torch.from_numpy(to_batch(crops))), dim=1)


def test_calibration_crops_are_a_seeded_subset():
    crops = torch.arange(10).numpy()
    first = calibration_crops(crops, 4, seed=1)
    assert len(first) == 4 and len(set(first.tolist())) == 4
    assert first.tolist() == calibration_crops(crops, 4, seed=1).tolist()
    assert calibration_crops(crops, 20, seed=1).tolist() == crops.tolist()


def test_identities_come_from_people_and_pairs_files(tmp_path):
    people = tmp_path / "people.txt"
    people.write_text("2\nAJ_Cook\t1\nAaron_Eckhart\t3\n")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\nAbel_Pacheco\t1\t4\nAkhmed_Zakayev\t1\tAdel_Al-Jubeir\t1\n")
    assert identities_in(people) == {"AJ_Cook", "Aaron_Eckhart"}
    assert identities_in(pairs) == {"Abel_Pacheco", "Akhmed_Zakayev", "Adel_Al-Jubeir"}


@pytest.fixture(scope="module")
def crops_dir(lfw_dir, verifier, tmp_path_factory):
    """Real crops, the service's own, of DevTrain people with several images."""
    root = tmp_path_factory.mktemp("crops")
    images = lfw_dir / "images"
    people = [p for p in sorted(images.iterdir()) if len(list(p.iterdir())) >= 3][:16]
    for person in people:
        (root / person.name).mkdir()
        for image in sorted(person.iterdir())[:3]:
            crop = verifier.faces_in(image, "image", face="center").crops[0]
            Image.fromarray(crop).save(root / person.name / f"{image.stem}.png")
    return root


def test_distillation_lowers_the_distance_and_serves(checkpoint_dir, lfw_dir, crops_dir, tmp_path):
    out = tmp_path / "out"
    excluded = tmp_path / "exclude.txt"
    excluded.write_text(f"{sorted(p.name for p in crops_dir.iterdir())[0]}\t3\n")
    argv = ["--teacher", "edgeface_xs_q", "--gamma", "0.6", "--data", str(crops_dir)]
    argv += ["--out", str(out), "--epochs", "3", "--batch-size", "12", "--held-out", "0.25"]
    # From the plain SVD: a start far enough from the teacher for 3 epochs on 34 crops to close
    # in (from the input-weighted one, at 0.28, so few crops only overfit).
    argv += ["--lr", "1e-3", "--exclude-people", str(excluded), "--svd", "weights"]
    argv += ["--checkpoint-dir", str(checkpoint_dir), "--threads", "2"]
    assert main(argv) == 0

    report = json.loads((out / "compress.json").read_text())
    assert report["crops"] == 45 and report["excluded_identities"] == 1
    assert report["student"] == STUDENT and len(report["history"]) == 3
    assert report["final_cosine"] < report["svd_cosine"]
    assert (out / "compress.png").stat().st_size > 0
    state = read_state_dict(out / f"{STUDENT}.pt", STUDENT)
    load_state_dict_strict(get_model(STUDENT), state, out / f"{STUDENT}.pt")

    # Served as it is, by the model table's name, giving the distance these weights give.
    person = sorted(p for p in (lfw_dir / "images").iterdir() if len(list(p.iterdir())) >= 2)[0]
    first, second = sorted(person.iterdir())[:2]
    files = {"image1": first.read_bytes(), "image2": second.read_bytes()}
    with started_server(out, env={"EDGEFACE_MODEL": STUDENT}) as server:
        response = httpx.post(
            f"{server.base}/verify", files=files, data={"threshold": "0.7"}, timeout=60
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == STUDENT and answer["threshold"] == 0.7
    local = Verifier.load(STUDENT, out, runtime="torch").verify(first, second, threshold=0.7)
    assert answer["distance"] == pytest.approx(local.distance, abs=1e-3)


def test_crops_prepared_twice_count_once_and_excluded_people_not_at_all(tmp_path):
    for folder, name, stem in [
        ("a", "Ann", "1"),
        ("a", "Bob", "1"),
        ("b", "Ann", "1"),
        ("b", "Ann", "2"),
    ]:
        (tmp_path / folder / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (112, 112)).save(tmp_path / folder / name / f"{stem}.png")
    found = find_crops([tmp_path / "a", tmp_path / "b"], exclude={"Bob"})
    assert [(p.parent.parent.name, p.parent.name, p.stem) for p in found] == [
        ("a", "Ann", "1"),
        ("b", "Ann", "2"),
    ]


def test_preserving_regulariser_is_zero_at_the_start_and_grows_after_a_step(
    checkpoint_dir, crops_dir
):
    model = load_model("edgeface_xxs_q", checkpoint_dir).train()
    cosine = preserving_regulariser(model, weight=2.0, kind="cosine")
    l2 = preserving_regulariser(model, weight=1.0, kind="l2")
    images = torch.from_numpy(to_batch(read_crops(sorted(crops_dir.glob("*/*.png"))[:8])))
    assert float(cosine(images, model(images), None).detach()) == pytest.approx(0, abs=1e-5)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model(images)[:, 0].mean().backward()  # any step that moves the weights
    optimizer.step()
    with torch.no_grad():
        embeddings = model(images)
    after = float(cosine(images, embeddings, None))
    assert after > 1e-4
    # For unit vectors |a - b|^2 = 2 (1 - cos): the two kinds agree up to that factor.
    assert float(l2(images, embeddings, None)) == pytest.approx(after, rel=1e-4)


def test_jitter_moves_a_crop_by_a_few_pixels_and_keeps_its_content(crops_dir):
    images = torch.from_numpy(to_batch(read_crops(sorted(crops_dir.glob("*/*.png"))[:8])))
    moved = jitter(images, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    # Every image moved (no sample left as it was) but stayed the same picture: a shift of at
    # most ~7 px and a zoom of 8% keep it far closer to itself than to another face.
    change = (moved - images).abs().mean((1, 2, 3))
    others = (images - images.roll(1, 0)).abs().mean((1, 2, 3))
    assert bool((change > 0.01).all()) and bool((change < 0.6 * others).all())


def test_distillation_with_the_teacher_online_lowers_the_distance(teacher, crops_dir):
    augment = "mixup"  # jitter, then blends: both online augmentations
    crops = read_crops(sorted(crops_dir.glob("*/*.png")))[:36]
    # The teacher embeds exactly what the student sees: a student that is the teacher starts
    # at zero loss on augmented batches (cached targets of the unaugmented crops would not).
    twin = copy.deepcopy(teacher)
    history = distill(twin, crops, None, 1, batch_size=12, lr=0, teacher=teacher, augment=augment)
    assert history[0]["loss"] < 1e-5

    student = compressed_model(teacher, STUDENT)  # plain SVD: far from the teacher
    with pytest.raises(ValueError, match="needs the teacher"):
        distill(student, crops, None, 1, augment=augment)
    targets = teacher_targets(teacher, crops)
    before = float((1 - (embed_normalised(student, crops) * targets[0]).sum(1)).mean())
    torch.manual_seed(0)
    history = distill(
        student, crops, None, 3, batch_size=12, lr=1e-3, teacher=teacher, augment=augment
    )
    after = float((1 - (embed_normalised(student, crops) * targets[0]).sum(1)).mean())
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    assert after < 0.9 * before


def errors_on(student: nn.Module, teacher: nn.Module, crops) -> torch.Tensor:
    """``block_errors`` of the student against the teacher on ``crops``, in eval mode."""
    names = feature_blocks(teacher)
    ours, our_hooks = record_outputs(student, names)
    theirs, their_hooks = record_outputs(teacher, names)
    images = torch.from_numpy(to_batch(crops))
    with torch.no_grad():
        student.eval()(images), teacher.eval()(images)
    for handle in our_hooks + their_hooks:
        handle.remove()
    return block_errors(ours, theirs)


def test_block_matching_distillation_lowers_the_blocks_error(teacher, crops_dir):
    crops = read_crops(sorted(crops_dir.glob("*/*.png")))[:24]
    student = compressed_model(teacher, STUDENT)  # plain SVD: far from the teacher
    # Every block of every stage, the same names in both: the student is the teacher's
    # architecture with low-rank layers inside the blocks.
    assert len(feature_blocks(student)) == 18 and feature_blocks(student) == feature_blocks(teacher)
    with pytest.raises(ValueError, match="features must be 0 or more"):
        distill(student, crops, None, 1, teacher=teacher, features=-1.0)
    twin = copy.deepcopy(teacher)
    history = distill(twin, crops, None, 1, batch_size=12, lr=0, teacher=teacher, features=1.0)
    assert history[0]["feature_error"] < 1e-10 and history[0]["loss"] < 1e-5

    before = errors_on(student, teacher, crops)
    torch.manual_seed(0)
    history = distill(
        student, crops, None, 3, batch_size=12, lr=1e-3, teacher=teacher, features=10.0
    )
    after = errors_on(student, teacher, crops)
    # Measured: the mean over blocks falls by about a fifth, 13 of the 18 blocks gain, the
    # deep ones most; the first ones, nearly exact after the SVD, drift a little.
    assert float(after.mean()) < 0.88 * float(before.mean())
    assert int((after < before).sum()) >= 10
    assert history[-1]["loss"] < history[0]["loss"]
    # The recording hooks are gone afterwards, from both models.
    assert not any(m._forward_hooks for m in [*student.modules(), *teacher.modules()])
