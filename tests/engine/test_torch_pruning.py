"""benchmarks/torch_pruning_spec.py: Torch-Pruning's architecture read back as a spec (the
benchmark-only ``bench`` extra; skipped where torch-pruning is not installed)."""

import json
from pathlib import Path

import pytest
import torch

import prunesearch as ps
from prunesearch.training.loop import save_weights

from ..helpers import run_script

tp = pytest.importorskip("torch_pruning")

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "torch_pruning_spec.py"


def _base(tmp_path):
    torch.manual_seed(0)
    model = ps.create_model("resnet20", num_classes=4, in_channels=3)
    for m in model.modules():  # spread BN scales as a trained, sparsified base has them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.01, 1.0)
    path = save_weights(
        model,
        tmp_path / "model.safetensors",
        {
            "model": "resnet20",
            "model_args": {"num_classes": 4, "in_channels": 3},
            "input_shape": [3, 16, 16],
            "kind": "base",
        },
    )
    return model, path


def test_script_writes_a_spec_within_the_budget(tmp_path):
    model, path = _base(tmp_path)
    out = tmp_path / "tp.json"
    proc = run_script(SCRIPT, path, "--budget", "50%FLOPs", "--out", out, "--steps", "10")
    assert proc.returncode == 0, proc.stderr
    spec = ps.ArchSpec.load(out)
    graph = ps.trace(model, torch.zeros(1, 3, 16, 16))
    assert spec.flops <= graph.flops() // 2
    assert spec.flops > 0.45 * graph.flops()  # bisection reached the budget, not far below
    assert spec.widths != spec.base_widths
    assert spec.search["method"].startswith("torch-pruning")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 < summary["pruning_ratio"] < 1
    # the spec builds the network Torch-Pruning made: same tensor shapes, same FLOPs
    built = ps.build(spec)
    assert ps.count_flops(built, torch.zeros(1, 3, 16, 16)) == spec.flops
