"""EdgeFace model construction, LoRALin replacement and strict checkpoint loading."""

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from backbones import (
    MODELS,
    CheckpointError,
    LoRALin,
    build_model,
    count_parameters,
    get_model,
    load_model,
    read_state_dict,
)
from tests.conftest import REAL_WEIGHTS

# The paper's counts (millions) for the four published variants; the _q files' exact counts
# come from the official full-rank checkpoints.
EXACT_Q_PARAMS = {"edgeface_xs_q": 2_242_620, "edgeface_xxs_q": 1_244_744}


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_counts(name):
    params = count_parameters(get_model(name))
    info = MODELS[name]
    if info.params_m is not None:
        assert params / 1e6 == pytest.approx(info.params_m, rel=0.01)
    elif name in EXACT_Q_PARAMS:
        assert params == EXACT_Q_PARAMS[name]
    if info.gamma is not None:
        assert params == rank_rule_count(info.backbone, info.gamma)


def rank_rule_count(backbone: str, gamma: float) -> int:
    """The full-rank model's count with each replaced Linear's in*out weights swapped for the
    rule's rank * (in + out), max(2, int(min(in, out) * gamma)), counted independently."""
    full = build_model(backbone)
    count = count_parameters(full)
    for name, layer in full.named_modules():
        if isinstance(layer, torch.nn.Linear) and name.rsplit(".", 1)[-1] != "head":
            rank = max(2, int(min(layer.in_features, layer.out_features) * gamma))
            count += rank * (layer.in_features + layer.out_features) - layer.weight.numel()
    return count


def test_state_dict_keys_are_prefixed_like_official_files():
    keys = list(get_model("edgeface_xxs").state_dict())
    assert keys and all(k.startswith("model.") for k in keys)
    assert "model.head.fc.weight" in keys


@pytest.mark.parametrize(
    "name,gamma", [("edgeface_s_gamma_05", 0.5), ("edgeface_xs_gamma_06", 0.6)]
)
def test_lowrank_variants_replace_every_linear(name, gamma):
    model = get_model(name)
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALin)}
    plain = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not n.endswith((".linear1", ".linear2"))
    ]
    assert plain == []
    assert "model.head.fc" in lora  # attribute name 'fc', so the head is low-rank as well
    for module in lora.values():
        in_f, out_f = module.linear1.in_features, module.linear2.out_features
        assert module.linear1.out_features == max(2, int(min(in_f, out_f) * gamma))
        assert module.linear1.bias is None
        assert module.linear2.bias is not None


def test_lowrank_keeps_a_missing_bias():
    wrapper = nn.Sequential()
    wrapper.proj = nn.Linear(8, 4, bias=False)
    from backbones import replace_linear_with_lowrank

    replace_linear_with_lowrank(wrapper, 0.5)
    assert isinstance(wrapper.proj, LoRALin)
    assert wrapper.proj.linear2.bias is None and wrapper.proj.linear1.out_features == 2


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="edgeface_xxs_q"):
        get_model("edgeface_huge")


@pytest.mark.parametrize("name", REAL_WEIGHTS)
def test_real_checkpoints_load_strictly(name, checkpoint_dir):
    model = load_model(name, checkpoint_dir)
    assert not model.training
    state = read_state_dict(checkpoint_dir / f"{name}.pt")
    assert set(state) == set(model.state_dict())
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 112, 112) * 2 - 1)
    assert out.shape == (2, 512) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["edgeface_xs_q", "edgeface_xxs_q"])
def test_dequantized_model_matches_the_int8_model(name, checkpoint_dir):
    raw = torch.load(checkpoint_dir / f"{name}.pt", map_location="cpu", weights_only=True)
    int8 = torch.ao.quantization.quantize_dynamic(
        get_model(name), {nn.Linear}, dtype=torch.qint8
    ).eval()
    int8.load_state_dict(raw, strict=True)
    float_model = load_model(name, checkpoint_dir)
    float_linears = dict(float_model.named_modules())
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    quantized = [(n, m) for n, m in int8.named_modules() if isinstance(m, dynamic_linear)]
    assert len(quantized) > 10
    for module_name, module in quantized:
        float_linear = float_linears[module_name]
        assert torch.equal(float_linear.weight, module.weight().dequantize()), module_name
        assert torch.equal(float_linear.bias, module.bias()), module_name
    # Same network up to int8 activation noise.
    x = torch.rand(4, 3, 112, 112) * 2 - 1
    with torch.inference_mode():
        cos = nn.functional.cosine_similarity(float_model(x), int8(x))
    assert cos.min() > 0.9


@pytest.mark.parametrize("name", ["edgeface_base", "edgeface_xs_gamma_06", "edgeface_xxs"])
def test_fresh_state_dict_roundtrips_strictly(name, tmp_path):
    original = get_model(name)
    torch.save(original.state_dict(), tmp_path / f"{name}.pt")
    loaded = load_model(name, tmp_path)
    reloaded = loaded.state_dict()
    for key, value in original.state_dict().items():
        assert torch.equal(value, reloaded[key]), key


def test_missing_checkpoint_says_where_and_how(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_model("edgeface_xxs_q", tmp_path)
    message = str(err.value)
    assert "edgeface_xxs_q.pt" in message and str(tmp_path) in message
    assert "python -m backbones.download edgeface_xxs_q" in message


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_checkpoint_is_a_clear_error(content, tmp_path, checkpoint_dir):
    target = tmp_path / "edgeface_xxs_q.pt"
    if content == "truncated":
        data = (checkpoint_dir / "edgeface_xxs_q.pt").read_bytes()
        target.write_bytes(data[: len(data) // 2])
    else:
        target.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch weights file"):
        load_model("edgeface_xxs_q", tmp_path)


def test_checkpoint_of_another_model_names_file_and_keys(tmp_path, checkpoint_dir):
    shutil.copy(checkpoint_dir / "edgeface_xxs_q.pt", tmp_path / "edgeface_s_gamma_05.pt")
    with pytest.raises(CheckpointError) as err:
        load_model("edgeface_s_gamma_05", tmp_path)
    message = str(err.value)
    assert "edgeface_s_gamma_05.pt" in message
    assert "missing keys" in message and "model." in message


# The inference snippet of the official EdgeFace README, as written there (the image path is the
# only line that changes).
OFFICIAL_SNIPPET = """
import torch
from torchvision import transforms
from face_alignment import align
from backbones import get_model

model_name="edgeface_s_gamma_05"
model=get_model(model_name)
checkpoint_path=f'checkpoints/{model_name}.pt'
model.load_state_dict(torch.load(checkpoint_path, map_location='cpu'))
model.eval()

transform = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
            ])

path = PATH
aligned = align.get_aligned_face(path) # align face
transformed_input = transform(aligned) # preprocessing

# extract embedding
embedding = model(transformed_input)
"""


def test_the_official_readme_snippet_embeds_like_the_service(
    tmp_path, monkeypatch, checkpoint_dir, photos_dir, verifier
):
    (tmp_path / "checkpoints").symlink_to(checkpoint_dir.resolve())
    monkeypatch.chdir(tmp_path)
    photo = photos_dir / "002_3a2ef5df.jpg"
    scope: dict = {}
    exec(OFFICIAL_SNIPPET.replace("PATH", repr(str(photo))), scope)
    snippet = scope["embedding"].detach().numpy()
    service = verifier.embed_faces(photo.read_bytes())[0].unit_embedding
    assert snippet.shape == (512,)
    cosine = float(snippet @ service / np.linalg.norm(snippet))
    assert cosine > 0.99
