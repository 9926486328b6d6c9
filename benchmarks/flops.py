"""Analytic FLOP counting vs fvcore, and trace/prune cost, on the model zoo.

For each zoo model (CIFAR-10 version, 32x32, batch 1): 100 random width settings; the median
time of ``graph.flops(widths)`` against ``ps.count_flops(pruned model)`` (fvcore), and how many
agreed exactly (parameter counts checked the same way). Then the median time of ``ps.trace`` and
``graph.prune`` for resnet56 and densenet40.

    python benchmarks/flops.py [--settings 100] [--models resnet56,densenet40] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

import prunesearch as ps


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def bench_model(name: str, settings: int, seed: int) -> dict:
    x = torch.zeros(1, 3, 32, 32)
    graph = ps.trace(ps.create_model(name), x)
    rng = random.Random(seed)
    analytic_t, fvcore_t, exact_flops, exact_params = [], [], 0, 0
    for _ in range(settings):
        widths = {g.name: rng.randint(1, g.size) for g in graph.groups}
        # the analytic count is timed over 50 back-to-back calls (one call is ~10 us, below the
        # timer's useful resolution); fvcore once per setting
        t = time.perf_counter()
        for _ in range(50):
            flops = graph.flops(widths)
        analytic_t.append((time.perf_counter() - t) / 50)
        pruned = graph.prune(widths)
        ref, t_f = timed(ps.count_flops, pruned, x)
        fvcore_t.append(t_f)
        exact_flops += flops == ref
        exact_params += graph.params(widths) == ps.count_params(pruned)
    a, f = statistics.median(analytic_t), statistics.median(fvcore_t)
    return {
        "model": name,
        "groups": len(graph.groups),
        "settings": settings,
        "analytic_median_us": round(a * 1e6, 1),
        "fvcore_median_ms": round(f * 1e3, 2),
        "speedup": round(f / a),
        "exact_flops": exact_flops,
        "exact_params": exact_params,
    }


def bench_trace_prune(name: str, repeats: int, seed: int) -> dict:
    x = torch.zeros(1, 3, 32, 32)
    model = ps.create_model(name)
    trace_t = [timed(ps.trace, model, x)[1] for _ in range(repeats)]
    graph = ps.trace(model, x)
    rng = random.Random(seed)
    prune_t = []
    for _ in range(repeats * 4):
        widths = {g.name: rng.randint(1, g.size) for g in graph.groups}
        prune_t.append(timed(graph.prune, widths)[1])
    return {
        "model": name,
        "trace_median_ms": round(statistics.median(trace_t) * 1e3, 1),
        "prune_median_ms": round(statistics.median(prune_t) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=100)
    parser.add_argument(
        "--models", default=",".join(m for m in ps.list_models() if not m.startswith("tiny"))
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "flops.json"))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for name in args.models.split(","):
        rows.append(bench_model(name, args.settings, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    tp = [bench_trace_prune(n, args.repeats, args.seed) for n in ("resnet56", "densenet40")]
    for row in tp:
        print(json.dumps(row), flush=True)
    result = {
        "benchmark": "flops",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "prunesearch": ps.__version__,
        "counting": rows,
        "trace_prune": tp,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
