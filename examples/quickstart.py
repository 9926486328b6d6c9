"""Trace a zoo model, halve its FLOPs with uniform widths, check against fvcore, save a spec.

python examples/quickstart.py [--model resnet56] [--out outputs/quickstart]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import prunesearch as ps


def uniform_widths(graph: ps.ChannelGraph, target_flops: int) -> dict[str, int]:
    """The largest uniform keep ratio (bisection) whose widths fit ``target_flops``."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        widths = {g.name: max(1, round(g.size * mid)) for g in graph.groups}
        lo, hi = (mid, hi) if graph.flops(widths) <= target_flops else (lo, mid)
    return {g.name: max(1, round(g.size * lo)) for g in graph.groups}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--out", default="outputs/quickstart")
    args = parser.parse_args()

    x = torch.zeros(1, 3, 32, 32)
    graph = ps.trace(ps.create_model(args.model), x)
    print(
        f"{args.model}: {len(graph.groups)} channel groups, {graph.flops():,} FLOPs, "
        f"{graph.params():,} params"
    )
    widths = uniform_widths(graph, graph.flops() // 2)
    pruned = graph.prune(widths, importance="l1")
    assert graph.flops(widths) == ps.count_flops(pruned, x)  # analytic == fvcore, exactly
    spec = ps.ArchSpec.from_graph(graph, widths, model=args.model)
    path = spec.save(Path(args.out) / f"{args.model}-uniform-50.json")
    print(
        f"pruned: {spec.flops:,} FLOPs ({spec.flops / spec.base_flops:.1%}), "
        f"{spec.params:,} params -> {path}"
    )
    print(f"next: prunesearch show {path}")


if __name__ == "__main__":
    main()
