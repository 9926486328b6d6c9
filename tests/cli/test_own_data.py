"""``data.dataset: {folder: DIR}`` and ``{arrays: FILE}`` from the command line."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from ..helpers import run_cli, write_image_folder

SPACE = """name: own
model: {{name: {model}, args: {args}}}
data: {{dataset: {dataset}, image_size: {size}, val_size: 3, batch_size: 8, eval_batch_size: 64}}
train: {{epochs: 1, lr: 0.05, channels_last: false}}
"""


@pytest.fixture(autouse=True)
def _image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_space(tmp_path, dataset="{folder: imgs}", args="{}", size=8, model="resnet20"):
    path = tmp_path / "own.yaml"
    path.write_text(SPACE.format(dataset=dataset, args=args, size=size, model=model))
    return path


def test_train_base_on_a_folder_takes_the_class_count_from_it(tmp_path, _image_cache):
    write_image_folder(tmp_path / "imgs")
    space = write_space(tmp_path)
    result = run_cli("train-base", "--space", space, "--out", tmp_path / "run", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["space"]["model"]["args"] == {"num_classes": 3}
    assert config["space"]["data"]["dataset"] == {"folder": str(tmp_path / "imgs")}
    source = config["data_source"]
    assert source["classes"] == ["ant", "bee", "cat"] and source["path"] == str(tmp_path / "imgs")
    assert "no test folder" in result.stderr  # the run says it carves a test split
    manifest = _image_cache / "images" / source["digest"] / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    # a second run reuses the cache; export from another folder finds the data (absolute)
    again = run_cli("train-base", "--space", space, "--out", tmp_path / "run2")
    assert again.returncode == 0, again.stderr
    assert manifest.stat().st_mtime_ns == stamp and "reusing the image cache" in again.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exported = run_cli(
        "export",
        tmp_path / "run",
        "--format",
        "onnx",
        "--out",
        tmp_path / "m.onnx",
        "--repeats",
        "1",
        cwd=elsewhere,
    )
    assert exported.returncode == 0, exported.stderr
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["preprocessing"]["classes"] == ["ant", "bee", "cat"]
    assert card["preprocessing"]["image_size"] == [8, 8]
    assert "0: ant, 1: bee, 2: cat" in (tmp_path / "MODEL.md").read_text()
    # a changed folder: a new cache, and export refuses the run's data as changed
    Image.new("RGB", (9, 9), (1, 2, 3)).save(tmp_path / "imgs" / "bee" / "new.png")
    refused = run_cli("export", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "m2.onnx")
    assert refused.returncode == 2 and "changed since" in refused.stderr
    assert not (tmp_path / "m2.onnx").exists()
    assert not manifest.exists()


def corrupt(root):
    Image.new("RGB", (32, 32)).save(root / "ant" / "whole.jpg")
    data = (root / "ant" / "whole.jpg").read_bytes()
    (root / "ant" / "cut.jpg").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "space_args", "message"),
    [
        (corrupt, {}, r"cannot decode image .*cut\.jpg"),
        (lambda r: (r / "empty").mkdir(), {}, r"class folder .*empty holds no images"),
        (lambda r: os.symlink(r / "gone.png", r / "bee" / "gone.png"), {}, r"cannot read .*gone"),
        (lambda r: None, {"args": "{num_classes: 5}"}, r"num_classes is 5 but the data has 3"),
        (lambda r: None, {"size": 4, "model": "vgg11"}, r"does not take .* images \(3x4x4\)"),
    ],
)
def test_bad_folders_give_one_error_line(tmp_path, make, space_args, message):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    make(root)
    result = run_cli(
        "train-base", "--space", write_space(tmp_path, **space_args), "--out", tmp_path / "run"
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert re.search(message, errors[0]), errors[0]
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(("classes", "message"), [(["one"], "1 class folder"), ([], "0 class")])
def test_folders_without_two_classes(tmp_path, classes, message):
    (tmp_path / "imgs").mkdir()
    for name in classes:
        (tmp_path / "imgs" / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / name / "a.png")
    result = run_cli("train-base", "--space", write_space(tmp_path), "--out", tmp_path / "run")
    assert result.returncode == 2 and message in result.stderr


def test_arrays_label_out_of_range(tmp_path):
    x = np.zeros((10, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(10) % 4)
    space = write_space(tmp_path, dataset="{arrays: d.npz}", args="{num_classes: 3}")
    result = run_cli("train-base", "--space", space, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "error: " in result.stderr and "label 3 out of range" in result.stderr


def test_family_with_a_budget_on_a_folder_trains_members_of_its_class_count(tmp_path):
    """family with the user's own space file, after a search (--budget) or on a finished find
    run's folder: the space is resolved against the data (its class count), not read raw (a
    regression, found twice walking the README)."""
    write_image_folder(tmp_path / "imgs")
    space = write_space(tmp_path)
    args = ["family", "--space", space, "--budget", "60%FLOPs", "--trials", "1"]
    res = run_cli(*args, "--objective", "inherit", "--out", tmp_path / "run", "--no-export")
    assert res.returncode == 0, res.stderr
    family = json.loads((tmp_path / "run" / "family-finetune-s0" / "family.json").read_text())
    (member,) = family["members"]
    metrics = json.loads((tmp_path / "run" / "family-finetune-s0" / "members" / member["member"]
                          / "metrics.json").read_text())  # fmt: skip
    assert metrics["model_args"]["num_classes"] == 3
    # the finished find run given by folder, with the same --space file: resolved the same way
    again = run_cli("family", tmp_path / "run", "--space", space, "--seed", "1", "--no-export")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "run" / "family-finetune-s1" / "family.json").is_file()
