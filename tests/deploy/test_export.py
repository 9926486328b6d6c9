"""``prunesearch export``: verified ONNX and torch.export files of trained runs, their model
cards, and bad input refused before anything is written.

Exports are slow to make (1-4 s each here, 2-9 s for a full-size zoo model), so the zoo is
covered by one small instance of each architecture class (ONNX, whose exporter goes through
torch.export first); ``benchmarks/export_zoo.py`` exports and verifies every registered zoo
model at full size in both formats."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prunesearch as ps
from prunesearch.deploy import export
from prunesearch.deploy.export import TOLERANCE, verified_export, verify
from prunesearch.deploy.trained_run import load_run
from prunesearch.errors import PrunesearchError
from prunesearch.models.densenet import DenseNet
from prunesearch.models.mobilenetv2 import InvertedResidual
from prunesearch.models.resnet import PreResNet
from prunesearch.space import load_space
from prunesearch.training.runs import ArchTraining, DataOptions, train_arch

from ..conftest import TINY
from ..helpers import randomize_bn, run_cli

FAST = ("--repeats", "2", "--latency-batch", "4", "--threads", "1")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A train-arch run of resnet20 on the tiny space with its first stage cut to 4 channels
    (below oneDNN's channel block: the guarded case) and the rest to about half."""
    space = load_space(TINY)
    graph = ps.trace(space.create_model(), torch.zeros(1, 3, 16, 16))
    widths = {
        g.name: 4 if g.name.startswith(("conv1", "layer1")) else g.size // 2 for g in graph.groups
    }
    spec = ps.ArchSpec.from_graph(
        graph,
        widths,
        model="resnet20",
        model_args=space.model.args,
        search={
            "objective": "scratch",
            "signal": "l1",
            "trial": 3,
            "score": 0.5,
            "trials": 6,
            "study": "s",
            "granularity": "group",
        },
        budget={"kind": "flops", "target": 10**6, "text": "10%FLOPs"},
    )
    run = tmp_path_factory.mktemp("pruned") / "run"
    train_arch(spec, space, ArchTraining(epochs=1), out=run, data=DataOptions(limit_train=64))
    return run


def test_onnx_export_of_a_pruned_run_is_verified_and_has_a_card(pruned_run, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "deploy" / "net.onnx"
    proc = run_cli("export", pruned_run, "--format", "onnx", "--out", out, *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _files(tmp_path) == ["deploy", "deploy/MODEL.md", "deploy/model.json", "deploy/net.onnx"]
    assert json.loads((tmp_path / "deploy" / "model.json").read_text()) == {
        k: v for k, v in card.items() if k not in ("path", "card", "card_json")
    }
    v = card["verification"]
    assert v["passed"] and v["images"] == 64 and v["batches"] == [1, 63]  # the tiny val split
    assert v["max_abs_logit_diff"] <= TOLERANCE * max(1, v["logit_scale"])
    assert v["top1_agreement"] == 1.0 and "validation split" in v["images_from"]
    metrics = json.loads((pruned_run / "metrics.json").read_text())
    assert card["accuracy"]["test"] == metrics["test_accuracy"]
    assert card["search"]["budget"] == "10%FLOPs" and card["search"]["trial"] == 3
    assert card["architecture"]["groups"][0] == {
        "group": "conv1",
        "base": 16,
        "width": 4,
        "keep_ratio": 0.25,
    }
    assert card["export"]["opset"] == 18 and card["export"]["batch"] == "dynamic"
    assert {r["model"] for r in card["latency"]["rows"]} == {"spec", "base"}
    md = (tmp_path / "deploy" / "MODEL.md").read_text()
    assert "Passed" in md and "| conv1 | 16 | 4 | 25% |" in md and "10%FLOPs" in md
    # the file runs on its own, at a batch size it was not verified with
    model = load_run(pruned_run).model
    assert model.conv1.out_channels == 4
    x = torch.randn(5, 3, 16, 16)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_pt2_export_with_a_fixed_batch(pruned_run, tmp_path):
    proc = run_cli(
        "export",
        pruned_run,
        "--format",
        "pt2",
        "--batch",
        "16",
        "--out",
        f"{tmp_path}/",
        *FAST,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout.strip().splitlines()[-1])
    assert card["path"] == str(tmp_path / "model.pt2")
    assert card["verification"]["batches"] == [16] and card["verification"]["images"] == 64
    assert card["export"]["batch"] == 16 and card["verification"]["passed"]
    program = torch.export.load(tmp_path / "model.pt2")
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), load_run(pruned_run).model(x))


def test_a_base_run_exports_without_a_search_or_a_second_model(tiny_base_dir, tmp_path):
    proc = run_cli(
        "export", tiny_base_dir, "--format", "pt2", "--out", tmp_path / "b.pt2", *FAST, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout.strip().splitlines()[-1])
    assert card["search"] is None and card["run"]["kind"] == "base"
    assert card["architecture"]["flops_ratio"] == 1.0
    assert {r["model"] for r in card["latency"]["rows"]} == {"spec"}
    assert not (tiny_base_dir / "export-pt2").exists()  # --out was honoured


def _small(name):
    """A small instance of each zoo architecture class, and its input size: the shallowest
    depth of the depth-parametrised classes, VGG-11 pruned to a quarter of its channels (an
    export's cost grows with its weights), MobileNetV2's inverted-residual blocks in each of
    their three forms (identity and projection residuals, strided) between a stem and a head
    (the whole net has 17 of them)."""
    if name == "vgg11":
        graph = ps.trace(ps.create_model(name, num_classes=4), torch.zeros(1, 3, 32, 32))
        return graph.prune({g.name: max(1, g.size // 4) for g in graph.groups}), 32
    if name == "mobilenetv2":
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU6(),
            InvertedResidual(8, 8, 6, 1),
            InvertedResidual(8, 12, 6, 1),
            InvertedResidual(12, 16, 6, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 4),
        ), 8
    return {"preresnet": PreResNet(11, 4), "densenet": DenseNet(7, 4, 4)}[name], 8


# ResNet: the pruned resnet20 run above, in both formats
@pytest.mark.parametrize("name", ["preresnet", "densenet", "vgg11", "mobilenetv2"])
def test_each_zoo_architecture_exports_to_onnx_verified(name):
    model, size = _small(name)
    randomize_bn(model)
    images = torch.randn(9, 3, size, size)
    blob, out = verified_export(model.eval(), [3, size, size], images, "onnx", None)
    assert out["verification"]["passed"] and out["verification"]["batches"] == [1, 8]
    assert len(blob) == out["bytes"] and out["input"]["shape"] == ["batch", 3, size, size]


class Drifting(nn.Module):
    """Eager runs drift from the traced graph: a Python counter the export freezes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1)) * (1 + self.calls)


def test_a_failed_verification_is_an_error():
    with pytest.raises(
        PrunesearchError,
        match=r"verification of the pt2 export failed, "
        r"nothing written: max \|logit diff\|",
    ):
        verified_export(Drifting(), [3, 2, 2], torch.randn(4, 3, 2, 2), "pt2", None)


def test_a_run_whose_export_fails_verification_writes_nothing(pruned_run, monkeypatch):
    real = export._runner

    def off_by_a_little(blob, fmt):  # the export's logits shifted by 1e-3: over tolerance
        run, name = real(blob, fmt)
        return (lambda x: run(x) + 1e-3), name

    monkeypatch.setattr(export, "_runner", off_by_a_little)
    before = _files(pruned_run)
    proc = run_cli("export", pruned_run, "--format", "pt2", *FAST)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "error: verification of the pt2 export failed, nothing "
        "written: max |logit diff| 0.001 (tolerance 0.0001)"
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _files(pruned_run) == before


def test_verify_counts_near_ties_apart():
    ref = torch.tensor([[1.0, 1.0 + 1e-6, 0.0], [3.0, 0.0, 0.0]])
    model = nn.Identity()

    def flip_ties(x):  # the export's logits: the near-tie's top two swapped (batch 1 each)
        return x[:, [1, 0, 2]] if abs(x[0, 1] - x[0, 0]) < 1e-5 else x

    swapped = verify(model, flip_ties, ref, None)
    assert swapped["passed"] and swapped["top1_disagreements"] == 1 and swapped["near_ties"] == 1
    wrong = verify(model, lambda x: x.flip(1), ref, None)
    assert not wrong["passed"] and wrong["unexplained_disagreements"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{empty}", "--format", "onnx"], "has no model.safetensors"),
        (["export", "{missing}", "--format", "pt2"], "run folder not found"),
        (["export", "{run}", "--format", "tflite"], "unknown format 'tflite'; choose onnx, pt2"),
        (["export", "{run}", "--format", "pt2", "--batch", "0"], "--batch must be an integer in"),
        (
            ["export", "{run}", "--format", "pt2", "--batch", "10**9"],
            "--batch must be an integer in",
        ),
        (
            ["export", "{run}", "--format", "pt2", "--latency-batch", "99999999"],
            "--latency-batch must be in 1..1024, got 99999999",
        ),
        (["export", "{run}", "--format", "pt2", "--threads", "0"], "--threads must be >= 1, got 0"),
        (["export", "{run}", "--format", "pt2", "--out", "{tmp}/m.onnx"], "a pt2 export is a .pt2"),
        (
            ["export", "{run}", "--format", "pt2", "--verify-images", "0"],
            "--verify-images must be >= 1, got 0",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(pruned_run, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    before_run, before_tmp = _files(pruned_run), _files(tmp_path)
    names = {
        "empty": tmp_path / "empty",
        "missing": tmp_path / "missing",
        "run": pruned_run,
        "tmp": tmp_path,
    }
    proc = run_cli(*[a.format(**names) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _files(pruned_run) == before_run and _files(tmp_path) == before_tmp


def test_damaged_run_files_are_one_error_naming_them(pruned_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pruned_run, run)
    (run / "metrics.json").write_text("{}")
    before = _files(tmp_path)
    proc = run_cli("export", run, "--format", "pt2")
    assert proc.returncode == 2
    assert (
        proc.stderr == f"error: {run}/metrics.json has no test_accuracy: not the metrics of "
        "a finished training run\n"
    )
    (run / "metrics.json").write_bytes((pruned_run / "metrics.json").read_bytes())
    (run / "model.safetensors").write_bytes(b"\x00" * 20)
    proc = run_cli("export", run, "--format", "pt2")
    assert proc.returncode == 2 and "not a readable safetensors file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == before


def test_missing_extra_names_it_and_writes_nothing(pruned_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    before = _files(pruned_run)
    proc = run_cli("export", pruned_run, "--format", "onnx")
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: --format onnx needs the export extra (missing: onnxruntime): "
        "pip install 'prunesearch[export]'\n"
    )
    assert _files(pruned_run) == before


def test_no_latency_into_a_folder_that_does_not_exist_yet(pruned_run, tmp_path):
    out = tmp_path / "new" / "deploy"  # no suffix: a folder, created
    proc = run_cli("export", pruned_run, "--format", "pt2", "--out", out, "--no-latency", "--json")
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout.strip().splitlines()[-1])
    assert card["path"] == str(out / "model.pt2") and card["latency"] is None
    assert _files(out) == ["MODEL.md", "model.json", "model.pt2"]
    assert "Not measured" in (out / "MODEL.md").read_text()
    assert "latency: not measured" in proc.stdout


def test_latency_is_measured_at_one_thread_unless_told(pruned_run, tmp_path):
    options = export.ExportOptions("pt2", out=f"{tmp_path}/a/", repeats=2, latency_batch=4)
    card = export.export_run(pruned_run, options)
    assert card["latency"]["threads"] == export.LATENCY_THREADS == 1
    assert "1 thread(s)" in (tmp_path / "a" / "MODEL.md").read_text()
