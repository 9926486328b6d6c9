"""How well the latency model predicts measured latency (issue 16).

For each model: build (or read from a fresh cache) its latency model in each memory format,
then time ``--candidates`` random pruned networks (per-group keep ratios uniform in
[min_ratio, 1]) as a latency budget times an exported spec
(:func:`prunesearch.latency.measure.measure`, 3 rounds scaled to the machine's sustained speed
by :mod:`prunesearch.latency.reference`, their median),
the median of ``--passes`` passes through all of them, and compare with the prediction:
median and worst relative error, the build time, and the prediction's own cost. Run it alone
on the machine: timings of a loaded machine say nothing.

    python benchmarks/latency_model.py --models resnet20 mobilenetv2 --candidates 50 \
        --threads 2 --out benchmarks/results/latency-model.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import prunesearch as ps
from prunesearch.latency.measure import Timing, measure
from prunesearch.latency.predictor import TableBuild, latency_model, speed_reference


def evaluate(name: str, fmt: str, args: argparse.Namespace, cache: Path) -> dict:
    model = ps.create_model(name, in_channels=1, num_classes=10)
    x = torch.zeros(1, 1, 28, 28)
    graph = ps.trace(model, x)
    start = time.perf_counter()
    lm = latency_model(
        graph,
        batch=args.batch,
        threads=args.threads,
        memory_format=fmt,
        min_ratio=args.min_ratio,
        build=TableBuild(cache),
    )
    build = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    candidates = [
        {g.name: max(1, round(g.size * rng.uniform(args.min_ratio, 1))) for g in graph.groups}
        for _ in range(args.candidates)
    ]
    nets = [model] + [graph.prune(w) for w in candidates]
    # the truth: each network timed as a latency budget times an exported spec (3 rounds scaled
    # by the speed reference, their median), the median of --passes passes through all of them
    # as latency budgets time an exported spec: against the same speed record as the build
    # (the record kept beside the tables; another folder's record scales by another base)
    reference = speed_reference(lm.key, cache)
    truth = [[] for _ in nets]
    for _ in range(args.passes):
        for i, net in enumerate(nets):
            truth[i].append(
                measure(
                    net,
                    (1, 28, 28),
                    batch=args.batch,
                    n_threads=args.threads,
                    channels_last=fmt == "channels-last",
                    timing=Timing(rounds=3, reference=reference),
                ).steady_ms
            )
    rows = []
    for widths, passes in zip(candidates, truth[1:], strict=True):
        measured, predicted = statistics.median(passes), lm(widths) / 1e6
        rows.append(
            {
                "measured_ms": measured,
                "passes_ms": passes,
                "predicted_ms": predicted,
                "flops": graph.flops(widths),
                "rel_error": (predicted - measured) / measured,
            }
        )
    errors = [abs(r["rel_error"]) for r in rows]
    t0 = time.perf_counter()
    for _ in range(1000):
        lm(widths)
    per_call_us = (time.perf_counter() - t0) * 1e3
    return {
        "model": name,
        "memory_format": fmt,
        "batch": args.batch,
        "threads": lm.key.threads,
        "build_seconds": round(build, 1),
        "fit": lm.fit,
        "median_abs_error": statistics.median(errors),
        "worst_abs_error": max(errors),
        "prediction_us": round(per_call_us, 1),
        "base_measured_ms": statistics.median(truth[0]),
        "base_predicted_ms": lm() / 1e6,
        "candidates": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenetv2"])
    ap.add_argument("--formats", nargs="+", default=["nchw", "channels-last"])
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--min-ratio", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as cache:  # built from scratch: the build time counts
        for name in args.models:
            for fmt in args.formats:
                r = evaluate(name, fmt, args, Path(cache))
                results.append(r)
                print(
                    f"{name} {fmt}: base {r['base_measured_ms']:.3f} ms, median error "
                    f"{100 * r['median_abs_error']:.1f}%, worst "
                    f"{100 * r['worst_abs_error']:.1f}%, build {r['build_seconds']:.0f} s, "
                    f"prediction {r['prediction_us']:.0f} us",
                    flush=True,
                )
    summary = {"load_average_end": os.getloadavg(), "torch": torch.__version__, "results": results}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
