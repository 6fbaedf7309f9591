"""python -m gallery on real photos: enroll a folder (with refusals), identify, list, show,
delete, and a move from SQLite to PostgreSQL through export/import."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.postgres import fresh_database
from tests.server import REPO

PERSON = ["002_3a2ef5df", "011_7b37bf1f", "013_46b35530", "025_c55c4e11"]


def gallery_cli(*args: str, url: str, checkpoint_dir) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gallery", "--url", url, "--checkpoint-dir"]
    return subprocess.run(
        [*command, str(checkpoint_dir), *args],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_enroll_identify_and_move_to_postgres(tmp_path, photos_dir, checkpoint_dir, postgres):
    folder = tmp_path / "people"
    (folder / "person").mkdir(parents=True)
    (folder / "other").mkdir()
    for name in PERSON[:2]:
        shutil.copy(photos_dir / f"{name}.jpg", folder / "person" / f"{name}.jpg")
    shutil.copy(photos_dir / f"{PERSON[0]}.jpg", folder / "person" / "copy.jpg")  # same bytes
    shutil.copy(photos_dir / "002_331d0423.jpg", folder / "other" / "a.jpg")
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(folder / "other" / "blank.png")
    url = f"sqlite:///{tmp_path}/g.db"

    enrolled = gallery_cli(
        "enroll", str(folder), "--report", str(tmp_path / "r.json"),
        url=url, checkpoint_dir=checkpoint_dir,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["enrolled"] == 3 and report["images"] == 5
    assert {(r["image"].rsplit("/", 1)[1], r["reason"]) for r in report["refused"]} == {
        ("blank.png", "NoFaceError"),
        ("copy.jpg", "duplicate"),
    }
    assert "blank.png" in enrolled.stdout

    found = gallery_cli(
        "identify", str(photos_dir / f"{PERSON[3]}.jpg"), url=url, checkpoint_dir=checkpoint_dir
    )
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["faces"][0]["subject"] == "person" and answer["far"] == 1e-4

    shown = json.loads(gallery_cli("show", "person", url=url, checkpoint_dir=checkpoint_dir).stdout)
    assert shown["face_count"] == 2
    export = tmp_path / "g.jsonl"
    exported = gallery_cli("export", str(export), url=url, checkpoint_dir=checkpoint_dir)
    assert exported.returncode == 0, exported.stderr
    pg = fresh_database(postgres)
    imported = gallery_cli("import", str(export), url=pg, checkpoint_dir=checkpoint_dir)
    assert "imported 2 subjects and 3 faces" in imported.stdout, imported.stderr
    listed = gallery_cli("list", url=pg, checkpoint_dir=checkpoint_dir).stdout.splitlines()
    assert listed == ["other\t1 faces", "person\t2 faces"]
    deleted = gallery_cli("delete", "person", url=pg, checkpoint_dir=checkpoint_dir)
    assert deleted.returncode == 0
    missing = gallery_cli("show", "person", url=pg, checkpoint_dir=checkpoint_dir)
    assert missing.returncode == 1 and "no subject 'person'" in missing.stderr
