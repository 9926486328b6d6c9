"""The resnet20-fmnist specs the speed benchmarks time, made with the library.

The compare run's searched, uniform and Torch-Pruning architectures at 50% FLOPs (their widths
as ``guard_cost.py`` recorded them in ``results/guard_cost.json``: the run folders are not in
the repository), the base, resnet20 at fixed per-stage widths (multiples of 8, and the same plus
one), and the uniform allocation rounded to multiples of 8.

    from compare_specs import resnet20_specs   # benchmarks/ is the script's path
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import prunesearch as ps
from prunesearch.engine.budget import project

RESULTS = Path(__file__).parent / "results"
MODEL, ARGS, SHAPE = "resnet20", {"in_channels": 1, "num_classes": 10}, (1, 28, 28)
RECORDED = {
    "searched": "outputs/compare-default/find/spec-50pct-flops.json",
    "uniform": "outputs/compare-default/find/baselines/spec-50pct-flops-uniform.json",
    "torch-pruning": "outputs/compare-default/extra/torch-pruning.json",
}


def graph() -> ps.ChannelGraph:
    return ps.trace(ps.create_model(MODEL, **ARGS), torch.zeros(1, *SHAPE))


def resnet20_specs() -> dict[str, ps.ArchSpec]:
    """name -> spec, the base first."""
    g = graph()

    def spec(widths: dict[str, int]) -> ps.ArchSpec:
        return ps.ArchSpec.from_graph(g, widths, model=MODEL, model_args=ARGS)

    recorded = json.loads((RESULTS / "guard_cost.json").read_text())["specs"]
    out = {"base": spec({})}
    for name, key in RECORDED.items():
        out[f"{name} (compare)"] = spec(recorded[key]["widths"])
    half = g.flops() // 2
    out["uniform, multiples of 8"] = spec(project(g, {}, "flops", half, round_to=8))
    stages = g.stages()
    for per_stage in ((8, 24, 48), (9, 25, 49)):
        out["stages " + "/".join(map(str, per_stage))] = spec(
            {name: per_stage[stages[name]] for name in g.base_widths}
        )
    return out
