"""training.prepare: the service's own crops of a folder of identities, on real LFW images."""

import json
import shutil

import numpy as np
from PIL import Image

from training.prepare import main, prepare


def lfw_subset(lfw_dir, tmp_path, people=3, per_person=2):
    src = tmp_path / "src"
    names = sorted(p.name for p in (lfw_dir / "images").iterdir() if p.is_dir())
    chosen = [n for n in names if len(list((lfw_dir / "images" / n).iterdir())) >= per_person]
    for name in chosen[:people]:
        (src / name).mkdir(parents=True)
        for image in sorted((lfw_dir / "images" / name).iterdir())[:per_person]:
            shutil.copy(image, src / name / image.name)
    (src / "Nobody").mkdir()
    Image.new("RGB", (250, 250), (128, 128, 128)).save(src / "Nobody" / "blank.jpg")
    (src / "Nobody" / "notes.txt").write_text("not an image: ignored")
    return src


def test_prepare_writes_the_pipelines_crops_and_reports_faceless_images(
    lfw_dir, tmp_path, checkpoint_dir, onnx_cache, verifier
):
    src = lfw_subset(lfw_dir, tmp_path)
    dst = tmp_path / "crops"
    options = {"checkpoint_dir": checkpoint_dir, "runtime": "auto", "onnx_dir": onnx_cache}
    report = prepare(src, dst, face="center", workers=2, options=options, progress=False)

    assert report["images"] == 7 and report["identities"] == 4
    assert report["written"] == 6 and report["no_face"] == 1
    assert report["failed"][0]["image"].endswith("Nobody/blank.jpg")
    assert "no face" in report["failed"][0]["reason"]
    assert json.loads((dst / "prepare.json").read_text()) == report
    crops = sorted(dst.glob("*/*.png"))
    assert len(crops) == 6 and not (dst / "Nobody" / "blank.png").exists()
    # Exactly the crop the service would embed for this image.
    first = crops[0]
    source = src / first.parent.name / f"{first.stem}.jpg"
    expected = verifier.faces_in(source, "image", face="center").crops[0]
    np.testing.assert_array_equal(np.asarray(Image.open(first)), expected)

    again = prepare(src, dst, face="center", workers=1, options=options, progress=False)
    assert again["written"] == 0 and again["already_there"] == 6 and again["no_face"] == 1


def test_prepare_command_line_refuses_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty" / "someone").mkdir(parents=True)
    assert main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "no images" in capsys.readouterr().err
