import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import prunesearch as ps
from prunesearch.cli import app

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


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "prunesearch", *args],
                          capture_output=True, text=True, timeout=120)


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
