import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import prunesearch as ps
from prunesearch.cli import app

from .helpers import run_cli

runner = CliRunner()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    graph = ps.trace(ps.create_model("vgg11"), torch.zeros(1, 3, 32, 32))
    widths = {g.name: g.size // 2 for g in graph.groups}
    path = tmp_path_factory.mktemp("spec") / "vgg11-half.json"
    ps.ArchSpec.from_graph(graph, widths, model="vgg11").save(path)
    return path


def test_show_table_and_json(spec_file):
    result = runner.invoke(app, ["show", str(spec_file), "--json"])
    assert result.exit_code == 0, result.output
    assert "features.0" in result.output and "50%" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    spec = ps.ArchSpec.load(spec_file)
    assert summary["flops"] == spec.flops and summary["params"] == spec.params
    assert summary["groups"][0] == {"group": "features.0", "base": 64, "width": 32,
                                    "keep_ratio": 0.5}
    assert summary["base_params"] == ps.count_params(ps.create_model("vgg11"))


def test_models_lists_the_zoo():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert "resnet56" in json.loads(result.output.strip().splitlines()[-1])["models"]


@pytest.mark.parametrize("args, message", [
    (["show", "does-not-exist.json"], "error: spec file not found"),
    (["show"], "error: Missing argument"),
    (["show", "x.json", "--bogus"], "error: No such option"),
    (["frobnicate"], "error: No such command"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(message)
    assert "Traceback" not in proc.stderr + proc.stdout


def test_invalid_spec_is_one_line_exit_2(spec_file, tmp_path):
    data = json.loads(spec_file.read_text())
    data["widths"]["features.0"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = run_cli("show", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: spec {bad}: $.widths['features.0']: must be >= 1, got 0"


SPACES = __import__("pathlib").Path(__file__).parent / "spaces"


def test_train_base_and_arch_from_the_cli(tmp_path):
    tiny = str(SPACES / "tiny.yaml")
    result = runner.invoke(app, ["train-base", "--space", tiny, "--out", str(tmp_path / "b"),
                                 "--epochs", "1", "--limit-train", "64", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["kind"] == "base"
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["space"]["name"] == "tiny" and config["options"]["seed"] == 0
    assert config["data"]["limit_train"] == 64 and "torch" in config["versions"]

    graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
    spec = ps.ArchSpec.from_graph(graph, {g.name: 3 for g in graph.groups}, model="resnet20",
                                  model_args={"num_classes": 4, "in_channels": 3},
                                  search={"space": tiny, "signal": "slimming"})
    spec.save(tmp_path / "s.json")
    result = runner.invoke(app, ["train-arch", str(tmp_path / "s.json"), "--init", "inherit",
                                 "--base", str(tmp_path / "b" / "model.safetensors"),
                                 "--out", str(tmp_path / "ft"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["kind"] == "finetune" and summary["epochs"] == 1  # the space's finetune
    result = runner.invoke(app, ["train-arch", str(tmp_path / "s.json"), "--schedule",
                                 "scratch-b", "--max-epoch-factor", "2",
                                 "--out", str(tmp_path / "sb"), "--json", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["epochs"] == 2


@pytest.mark.parametrize("args, message", [
    (["train-base", "--space", "nope"], "error: unknown space 'nope'"),
    (["train-base", "--space", str(SPACES / "tiny.yaml"), "--epochs", "0"],
     "error: --epochs must be >= 1"),
    (["train-base", "--data-dir", "/nonexistent", "--out", "/tmp/x-ps-none"],
     "error: fashion-mnist not found in /nonexistent: expected files"),
    (["train-base", "--space", str(SPACES / "tiny.yaml"), "--device", "tpu"],
     "error: --device must be auto, cpu or cuda"),
])
def test_training_bad_input(args, message, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(message) and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_train_arch_bad_schedule(spec_file, tmp_path):
    proc = run_cli("train-arch", str(spec_file), "--schedule", "scratch-c", "--space",
                   "vgg16-cifar10", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown schedule 'scratch-c'; choose scratch-e, scratch-b"
    assert not (tmp_path / "r").exists()


def test_torchrun_two_cpu_processes(tmp_path):
    import os

    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "prunesearch", "train-base", "--space", str(SPACES / "tiny.yaml"), "--out",
         str(out), "--epochs", "1", "--limit-train", "128", "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    jsons = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(jsons) == 1  # only rank 0 reports
    assert json.loads(jsons[0])["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == \
        ["checkpoint.pt", "config.json", "metrics.json", "model.safetensors"]
