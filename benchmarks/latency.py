"""FLOPs against measured latency: how far fvcore's count is from time on this machine.

The resnet20-fmnist specs of ``compare_specs.py`` (the base; the compare run's searched, uniform
and Torch-Pruning architectures at 50% FLOPs; the uniform allocation rounded to multiples of 8;
per-stage widths 8/24/48 and 9/25/49), each timed with :func:`prunesearch.latency.measure.measure`
(PyTorch eager inference, float32, ``torch.inference_mode``) at batch 1 and at a throughput
batch, in NCHW and channels-last. Every (spec, format, batch) cell is measured in ``--rounds``
interleaved rounds of ``--repeats`` timed calls (after 10 warm-up calls each), so that a drift
in the machine's load hits every spec alike; the cell's samples are pooled.

Reported per cell: median ms per image, its interquartile range, and the time relative to the
base's against the FLOPs relative to the base's; per setting, Spearman's rank correlation of
FLOPs and time over the specs. Measure alone on the machine (``uptime`` is recorded).

    python benchmarks/latency.py [--threads N] [--batch 256] [--rounds 3] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

import prunesearch as ps
from compare_specs import resnet20_specs  # benchmarks/ is the script's path
from prunesearch.experiments.stats import spearman_rho
from prunesearch.latency.measure import FORMATS, Latency, Timing, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="default: torch's")
    ap.add_argument("--batch", type=int, default=256, help="the throughput batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/latency.json")
    args = ap.parse_args()

    specs = resnet20_specs()
    models = {name: ps.build(spec).eval() for name, spec in specs.items()}
    samples: dict[tuple[str, str, int], list[float]] = {}
    threads = warmup = 0
    for r in range(args.rounds):
        for fmt in FORMATS:
            for batch in (1, args.batch):
                for name, model in models.items():
                    lat = measure(
                        model,
                        specs[name].input_shape,
                        batch=batch,
                        n_threads=args.threads,
                        channels_last=fmt == "channels-last",
                        timing=Timing(repeats=args.repeats, max_seconds=None),
                    )
                    samples.setdefault((name, fmt, batch), []).extend(lat.samples)
                    threads, warmup = lat.threads, lat.warmup
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    base_flops = specs["base"].flops
    rows = []
    for (name, fmt, batch), s in samples.items():
        lat = Latency(batch, tuple(s), warmup, threads, "cpu", fmt)
        rows.append(
            {
                "spec": name,
                "memory_format": fmt,
                "batch": batch,
                "flops": specs[name].flops,
                "params": specs[name].params,
                "flops_vs_base": round(specs[name].flops / base_flops, 4),
            }
            | lat.to_dict()
        )
    for row in rows:
        base = next(
            r
            for r in rows
            if r["spec"] == "base"
            and (r["memory_format"], r["batch"]) == (row["memory_format"], row["batch"])
        )
        row["time_vs_base"] = round(row["median_ms_per_image"] / base["median_ms_per_image"], 3)
    correlation = {}
    for fmt in FORMATS:
        for batch in (1, args.batch):
            cell = [r for r in rows if (r["memory_format"], r["batch"]) == (fmt, batch)]
            correlation[f"{fmt} batch {batch}"] = round(
                spearman_rho([r["flops"] for r in cell], [r["median_ms_per_image"] for r in cell]),
                3,
            )
    out = {
        "threads": threads,
        "batch": args.batch,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor(),
        "load_average": os.getloadavg(),
        "spearman_flops_vs_time": correlation,
        "widths": {k: v.widths for k, v in specs.items()},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(out))


def markdown(out: dict) -> str:
    """The BENCHMARKS.md table: one row per spec, median ms per image [IQR] per setting."""
    settings = [(f, b) for f in FORMATS for b in (1, out["batch"])]
    head = ["spec", "FLOPs vs base", *(f"{f} b{b} ms/img (vs base)" for f, b in settings)]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name in out["widths"]:
        cells = []
        for f, b in settings:
            r = next(
                r
                for r in out["rows"]
                if (r["spec"], r["memory_format"], r["batch"]) == (name, f, b)
            )
            q1, q3 = r["iqr_ms_per_image"]
            cells.append(
                f"{r['median_ms_per_image']:.3f} [{q1:.3f}-{q3:.3f}] ({r['time_vs_base']:.2f})"
            )
        flops = next(r["flops_vs_base"] for r in out["rows"] if r["spec"] == name)
        lines.append(f"| {name} | {flops:.1%} | " + " | ".join(cells) + " |")
    corr = ", ".join(f"{k} {v:+.2f}" for k, v in out["spearman_flops_vs_time"].items())
    load = ", ".join(f"{x:.2f}" for x in out["load_average"])
    return "\n".join(
        [
            *lines,
            "",
            f"Spearman rho of FLOPs and time over the specs: {corr}",
            f"threads {out['threads']}, load average (1, 5, 15 min) {load}",
        ]
    )


if __name__ == "__main__":
    main()
