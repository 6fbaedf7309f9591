"""python -m training.train for real: XXS on 20 prepared LFW people, two epochs; exact resume;
the output folder served by a real server; two ranks under torchrun."""

import json
import subprocess
import sys

import httpx
import pytest
import torch

from tests.server import REPO, started_server
from training.train import build, main, parse_args
from verification.thresholds import FARS, far_key

# Fine-tuned from the released XXS weights with fresh class centres: two epochs from scratch
# stay at chance here (50.8% 10-fold validation accuracy measured), which tests nothing.
TINY = [
    "--model", "edgeface_xxs", "--init", "edgeface_xxs_q", "--loss", "cosface", "--margin", "0.2",
    "--scale", "32", "--epochs", "2", "--batch-size", "32", "--lr", "5e-4",
    "--fractions", "0.7", "0.2", "0.1", "--log-every", "1", "--no-progress",
]  # fmt: skip


def records(out, kind):
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def data_args(lfw_train_crops, checkpoint_dir):
    return ["--data", str(lfw_train_crops), "--checkpoint-dir", str(checkpoint_dir), *TINY]


@pytest.fixture(scope="module")
def trained(lfw_train_crops, checkpoint_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main([*data_args(lfw_train_crops, checkpoint_dir), "--out", str(out)]) == 0
    return out


def test_a_tiny_run_lowers_the_loss_and_beats_chance(trained):
    epochs = records(trained, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2]
    steps = records(trained, "step")
    assert len(steps) == epochs[-1]["steps"] == 2 * 7  # 229 training crops, batches of 32
    assert epochs[1]["loss"] < epochs[0]["loss"]
    result = json.loads((trained / "result.json").read_text())
    # 10-fold accuracy (threshold fitted on the other folds) on balanced pairs: chance is 0.5.
    assert result["validation"]["accuracy"] > 0.6
    assert result["classes"] == 20 and result["test"]["pairs"] > 0
    thresholds = json.loads((trained / "thresholds.json").read_text())["models"]["edgeface_xxs"]
    assert set(thresholds) == {"cosine", "angular", "euclidean", "euclidean_l2"}
    # The service's operating points too, over every pair of the validation images.
    assert set(thresholds["cosine"]["at_far"]) == {far_key(far) for far in FARS}
    assert 0 <= thresholds["cosine"]["far"] <= 1
    assert (trained / "curves.png").stat().st_size > 0
    last = torch.load(trained / "last.pt", weights_only=False)
    assert last["epoch"] == 2 and {"model", "head", "optimizer", "scheduler", "rng"} <= set(last)


def test_stop_and_resume_continues_exactly(trained, lfw_train_crops, checkpoint_dir, tmp_path):
    args = [*data_args(lfw_train_crops, checkpoint_dir), "--out", str(tmp_path)]
    assert main([*args, "--stop-after-epochs", "1"]) == 0
    assert not (tmp_path / "edgeface_xxs.pt").exists()  # stopped, not finished
    assert main([*args, "--resume"]) == 0
    resumed, uninterrupted = records(tmp_path, "step"), records(trained, "step")
    assert [s["step"] for s in resumed] == list(range(1, 15))
    assert resumed[7]["loss"] == uninterrupted[7]["loss"]  # the first step after the stop
    assert [s["loss"] for s in resumed] == [s["loss"] for s in uninterrupted]
    final = torch.load(tmp_path / "edgeface_xxs.pt")
    expected = torch.load(trained / "edgeface_xxs.pt")
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_the_output_folder_is_served_with_its_own_thresholds(trained, photos_dir):
    threshold = json.loads((trained / "thresholds.json").read_text())["models"]["edgeface_xxs"]
    with started_server(trained, env={"EDGEFACE_MODEL": "edgeface_xxs"}) as server:
        files = {
            "image1": (photos_dir / "005_02ab3a1b.jpg").read_bytes(),
            "image2": (photos_dir / "006_87166f38.jpg").read_bytes(),
        }
        response = httpx.post(server.base + "/verify", files=files, timeout=60)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model"] == "edgeface_xxs"
        assert answer["threshold"] == pytest.approx(threshold["cosine"]["threshold"])
        assert str(trained / "thresholds.json") in server.log()


def test_torchrun_two_ranks_train_and_only_rank_zero_writes(
    lfw_train_crops, checkpoint_dir, tmp_path
):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "training.train", *data_args(lfw_train_crops, checkpoint_dir), "--out", str(out),
        "--epochs", "1", "--batch-size", "16",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation accuracy") == 1  # printed by rank 0 only
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png", "edgeface_xxs.pt", "last.pt", "log.jsonl", "result.json", "thresholds.json",
    ]  # fmt: skip
    steps = records(out, "step")
    # 229 crops over 2 ranks: 114 each, 7 batches of 16; one log line per step, not per rank.
    assert [s["step"] for s in steps] == list(range(1, 8))
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["world_size"] == 2
    assert [h["weight"].shape[0] for h in last["head"]] == [10, 10]  # the centres, sharded


def test_the_original_experiments_command_runs_a_row_and_writes_its_table(
    lfw_train_crops, tmp_path
):
    from training.experiments import main as experiments

    argv = ["original", "--budget", "tiny", "--crops", str(lfw_train_crops), "--out", str(tmp_path)]
    assert experiments([*argv, "--rows", "cosface_0.4", "triplet_1.5"]) == 0
    summary = json.loads((tmp_path / "experiments.json").read_text())
    assert set(summary["rows"]) == {"cosface_0.4", "triplet_1.5"}
    assert all(0.0 <= row["test"]["best_accuracy"] <= 1.0 for row in summary["rows"].values())
    table = (tmp_path / "README.md").read_text()
    assert "| cosface | 0.4 | 83.7 |" in table and "| triplet | 1.5 | 69.8 |" in table
    assert "| 0.5 | 83.7 |" in table  # the gamma table reuses the CosFace row
    steps = len(records(tmp_path / "cosface_0.4", "step"))
    assert experiments([*argv, "--rows", "cosface_0.4"]) == 0  # a finished row is not rerun
    assert len(records(tmp_path / "cosface_0.4", "step")) == steps


def layer_scales(model) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if n.rsplit(".", 1)[-1] in ("gamma", "gamma_xca")
    }


def test_layer_scale_start_is_set_in_every_block_and_only_from_scratch(checkpoint_dir, tmp_path):
    common = ["--data", str(tmp_path), "--out", str(tmp_path), "--model", "edgeface_xxs"]
    common += ["--epochs", "1", "--checkpoint-dir", str(checkpoint_dir)]
    default = layer_scales(build(parse_args(common)))
    started = layer_scales(build(parse_args([*common, "--layer-scale-init", "0.1"])))
    # XXS: 12 blocks with a layer scale, 3 of them with a second one for the attention.
    assert len(default) == len(started) == 15
    assert all(torch.all(v == 1e-6) for v in default.values())
    assert all(torch.all(v == 0.1) for v in started.values())
    # Fine-tuning keeps the loaded model's own layer scales.
    released = layer_scales(build(parse_args([*common, "--init", "edgeface_xxs_q"])))
    loaded = layer_scales(
        build(parse_args([*common, "--init", "edgeface_xxs_q", "--layer-scale-init", "0.1"]))
    )
    for name, value in released.items():
        torch.testing.assert_close(loaded[name], value, atol=0, rtol=0)
        assert not torch.all(value == 0.1)
