"""Torch-Pruning's global BN-scale pruning architecture, as a prunesearch spec.

Prunes a trained base with Torch-Pruning's ``BNScalePruner`` (``BNScaleImportance``,
``global_pruning=True``: network slimming with Torch-Pruning's own dependency graph and group
importance), bisecting its ``pruning_ratio`` to the largest network within the FLOP budget, and
reads the widths of the pruned model back as a spec (``ChannelGraph.widths_of`` checks every
tensor shape). The spec is then trained from scratch as one more row of ``compare``:

    pip install -e ".[bench]"      # torch-pruning, a benchmark-only extra
    python benchmarks/torch_pruning_spec.py outputs/compare-default/base/s0/model.safetensors \\
        --budget 50%FLOPs --out outputs/compare-default/extra/torch-pruning.json
    prunesearch compare --budget 50%FLOPs --seeds 3 --limit-train 10000 \\
        --out outputs/compare-default \\
        --extra torch-pruning=outputs/compare-default/extra/torch-pruning.json

FLOPs are counted by prunesearch (fvcore MACs, exact), not by Torch-Pruning's own counter, so
the row is at the same budget as the others by the same count.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
import torch_pruning as tp
from torch import nn

import prunesearch as ps
from prunesearch.engine.budget import cost, parse_budgets
from prunesearch.training.loop import load_weights


def torch_pruning_widths(
    graph: ps.ChannelGraph, model: nn.Module, example: torch.Tensor, ratio: float
) -> dict[str, int]:
    """Widths of ``model`` after Torch-Pruning's global BN-scale pruning at ``ratio``."""
    pruned = copy.deepcopy(model).eval()
    last = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1:]  # keep the classes
    pruner = tp.pruner.BNScalePruner(
        pruned,
        example,
        importance=tp.importance.BNScaleImportance(),
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=last,
    )
    pruner.step()
    return graph.widths_of(pruned)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="base weights (model.safetensors written by prunesearch)")
    ap.add_argument("--budget", default="50%FLOPs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=24, help="bisection steps on pruning_ratio")
    args = ap.parse_args()

    state, meta = load_weights(args.base)
    model = ps.create_model(meta["model"], **meta["model_args"])
    model.load_state_dict(state)
    example = torch.zeros(1, *meta["input_shape"])
    graph = ps.trace(model, example)
    (budget,) = parse_budgets(args.budget)
    target = budget.target(cost(graph, budget.kind))

    lo, hi = 0.0, 1.0  # cost(lo) > target >= cost(hi) once hi is feasible
    best = None
    for _ in range(args.steps):
        mid = (lo + hi) / 2
        widths = torch_pruning_widths(graph, model, example, mid)
        if cost(graph, budget.kind, widths) <= target:
            hi, best = mid, (mid, widths)
        else:
            lo = mid
    if best is None:
        raise SystemExit(f"no pruning ratio reaches {args.budget}")
    ratio, widths = best
    spec = ps.ArchSpec.from_graph(
        graph,
        widths,
        model=meta["model"],
        model_args=meta["model_args"],
        budget={"kind": budget.kind, "target": target, "text": budget.text},
        search={
            "method": "torch-pruning BNScalePruner global",
            "pruning_ratio": round(ratio, 6),
            "torch_pruning": tp.__version__,
            "base": args.base,
        },
    )
    spec.save(args.out)
    print(
        json.dumps(
            {
                "out": args.out,
                "pruning_ratio": round(ratio, 6),
                "flops": spec.flops,
                "flops_ratio": round(spec.flops_ratio, 4),
                "params": spec.params,
                "widths": spec.widths,
            }
        )
    )


if __name__ == "__main__":
    main()
