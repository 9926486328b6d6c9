"""Engine coverage on real torchvision and timm models, against Torch-Pruning.

Per model (random init, 10 classes, a 1x3x64x64 input): our prunable groups, the share of
conv output channels that are prunable, whether every group was exact (the model pruned at
random widths reproduces the original with the dropped channels dead; pruned LayerNorms
against the original whose LayerNorms see the kept channels alone) with the largest relative
error seen, whether ``graph.flops``/``graph.params`` equal fvcore's count and the pruned
model's parameters, and Torch-Pruning's group count (``DependencyGraph.get_all_groups``,
the classifier ignored) and whether its pruned model (``MagnitudePruner``, 50%) runs.

Needs torchvision, timm and torch-pruning beside the CPU build of torch. The torchvision wheel
on this machine's index is a CUDA build whose compiled ops do not load against CPU torch; its
model definitions are pure Python, so its two op-registration modules are stubbed before the
import (this script only: no model here uses the compiled ops)::

    pip install "torch==2.13.0+cpu" torchvision timm   # torch pinned: pip keeps the CPU build
    PYTHONPATH=src python benchmarks/zoo_coverage.py [--models a,b] [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's equivalence check, applied to real models

from tests.helpers import (  # noqa: E402
    kill_removed_channels,
    layer_norms_over_kept,
    random_widths,
    randomize_bn,
    relative_error,
    standardised_over_kept,
)

import prunesearch as ps  # noqa: E402

MODELS = [
    "tv:resnet18",
    "tv:resnet50",
    "tv:mobilenet_v2",
    "tv:mobilenet_v3_large",
    "tv:densenet121",
    "tv:vgg16_bn",
    "tv:efficientnet_b0",
    "tv:convnext_tiny",
    "tv:regnet_y_400mf",
    "tv:resnext50_32x4d",
    "tv:shufflenet_v2_x0_5",
    "timm:efficientnet_lite0",
    "timm:repvgg_a0",
    "timm:cspresnet50",
    "timm:convnext_atto",
    "timm:ghostnet_100",
    "timm:mixnet_s",
    "timm:hrnet_w18_small",
    "timm:nf_resnet26",
    "timm:resnetv2_50x1_bit",
]


def stub_torchvision_ops() -> None:
    """torchvision (imported by timm too) without its compiled ops' registrations."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))  # they need the compiled ops


def build(spec: str) -> nn.Module:
    lib, name = spec.split(":")
    stub_torchvision_ops()
    torch.manual_seed(0)
    if lib == "tv":
        import torchvision.models

        return getattr(torchvision.models, name)(num_classes=10).eval()
    import timm

    return timm.create_model(name, num_classes=10, pretrained=False).eval()


def classifier(model: nn.Module) -> nn.Module:
    """The last Linear layer: the classifier, whose outputs no tool prunes."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def conv_share(model: nn.Module, graph: ps.ChannelGraph) -> float:
    """Prunable conv output channels over all: each group's channels at each place it holds
    in a conv's output (a split conv's output holds a prunable part and a whole one)."""
    convs = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    prunable = sum(g.size for g in graph.groups for p, _ in g.rows if p in convs)
    return prunable / sum(convs.values())


def ours(model: nn.Module, x: torch.Tensor, seeds: int) -> dict:
    t = time.perf_counter()
    graph = ps.trace(model, x)
    modules = dict(model.named_modules())
    row = {
        "groups": len(graph.groups),
        "conv_share": round(conv_share(model, graph), 4),
        "trace_s": round(time.perf_counter() - t, 2),
        "fixed_ops": len(graph.fixed_ops),
        "stepped_groups": sum(g.step > 1 for g in graph.groups),
        "layer_norm_groups": sum(
            any(isinstance(modules.get(f), nn.LayerNorm) for f in g.followers) for g in graph.groups
        ),
    }
    errors, flops_ok, params_ok = [], 0, 0
    for seed in range(seeds):
        widths = random_widths(graph, seed)
        pruned = graph.prune(widths)
        flops_ok += graph.flops(widths) == ps.count_flops(pruned, x)
        params_ok += graph.params(widths) == ps.count_params(pruned)
        errors.append(equivalence_error(model, x, seed))
    row |= {
        "max_rel_error": max(errors),
        "exact_flops": f"{flops_ok}/{seeds}",
        "exact_params": f"{params_ok}/{seeds}",
    }
    return row


def equivalence_error(model: nn.Module, x: torch.Tensor, seed: int) -> float:
    """The test suite's check: dead channels removed, outputs unchanged."""
    model = copy.deepcopy(model)
    randomize_bn(model, seed)
    graph = ps.trace(model, x)
    widths = random_widths(graph, seed)
    importance = kill_removed_channels(graph, widths)
    pruned = graph.prune(widths, importance).eval()
    xs = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(seed))
    with (
        torch.no_grad(),
        layer_norms_over_kept(graph, widths, importance),
        standardised_over_kept(graph, widths, importance),
    ):
        ref = model(xs)
    with torch.no_grad():
        out = pruned(xs)
    return relative_error(out, ref)


def failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:80]}"


def torch_pruning(model: nn.Module, x: torch.Tensor) -> dict:
    import torch_pruning as tp

    model = copy.deepcopy(model)
    row: dict = {}
    try:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
        row["tp_groups"] = len(
            list(
                dg.get_all_groups(
                    ignored_layers=[classifier(model)], root_module_types=[nn.Conv2d, nn.Linear]
                )
            )
        )
    except Exception as exc:
        return {"tp_groups": None, "tp_pruned": f"its dependency graph fails: {failure(exc)}"}
    try:
        pruner = tp.pruner.MagnitudePruner(
            model,
            x,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=0.5,
            ignored_layers=[classifier(model)],
        )
        pruner.step()
        with torch.no_grad():
            out = model(x)
        row["tp_pruned"] = "runs" if out.shape == (1, 10) else f"output {list(out.shape)}"
    except Exception as exc:
        row["tp_pruned"] = f"crashes: {failure(exc)}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zoo-coverage.json"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rows = []
    for spec in args.models.split(","):
        model = build(spec)
        row = {"model": spec} | ours(model, x, args.seeds) | torch_pruning(model, x)
        rows.append(row)
        print(json.dumps(row), flush=True)
    import torch_pruning as tp

    result = {
        "benchmark": "zoo-coverage",
        "input": [1, 3, 64, 64],
        "num_classes": 10,
        "seeds": args.seeds,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "prunesearch": ps.__version__,
        "torch_pruning": tp.__version__,
        "models": rows,
    }
    for lib in ("torchvision", "timm"):
        if lib in sys.modules:
            result[lib] = sys.modules[lib].__version__
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
