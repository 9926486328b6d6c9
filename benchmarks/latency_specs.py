"""Specs timed as a latency budget times them, alone on the machine (issue 16).

Each ``NAME=SPEC.json`` is timed in ``--passes`` interleaved passes, in each memory format:
the steady latency (:func:`prunesearch.latency.measure.measure` with the latency budgets' rounds and
gap, scaled to the machine's sustained speed by :mod:`prunesearch.latency.reference`: what a spec's
``budget.latency.measured_ms`` records) and the plain median of one window (``show
--latency``'s method). Reports the median over passes and the spread (max/min - 1).

    OMP_NUM_THREADS=1 python benchmarks/latency_specs.py --threads 1 \\
        flops50=RUNS/find-flops50/spec-50pct-flops.json --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from prunesearch.latency.budgets import timing
from prunesearch.latency.measure import FORMATS, measure
from prunesearch.space import load_space
from prunesearch.spec import ArchSpec, build


def time_specs(specs: dict[str, ArchSpec], threads: int, passes: int) -> dict[str, dict]:
    out = {
        name: {
            "flops": s.flops,
            "params": s.params,
            "steady": {f: [] for f in FORMATS},
            "plain": {f: [] for f in FORMATS},
        }
        for name, s in specs.items()
    }
    space = load_space(None).replace("search", latency_threads=threads, latency_batch=1)
    for _ in range(passes):
        for name, spec in specs.items():
            for fmt in FORMATS:  # as a latency budget times a spec, then as show --latency
                steady = measure(build(spec), tuple(spec.input_shape), **timing(space, "cpu", fmt))
                plain = measure(
                    build(spec),
                    tuple(spec.input_shape),
                    n_threads=threads,
                    channels_last=fmt == "channels-last",
                )
                out[name]["steady"][fmt].append(steady.steady_ms)
                out[name]["plain"][fmt].append(plain.median_ms)
    for o in out.values():
        o["median"] = {
            kind: {f: statistics.median(v) for f, v in o[kind].items()}
            for kind in ("steady", "plain")
        }
        o["spread"] = {
            kind: {f: max(v) / min(v) - 1 for f, v in o[kind].items()}
            for kind in ("steady", "plain")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs", nargs="+", metavar="NAME=SPEC")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    specs = {}
    for item in args.specs:
        name, _, path = item.partition("=")
        specs[name] = ArchSpec.load(path)
    out = time_specs(specs, args.threads, args.passes)
    print(
        "| architecture | FLOPs | steady NCHW | steady channels-last | plain NCHW | "
        "plain channels-last | steady spread |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, o in out.items():
        m, sp = o["median"], o["spread"]["steady"]
        print(
            f"| {name} | {o['flops'] / 1e6:.2f}M | {m['steady']['nchw']:.3f} | "
            f"{m['steady']['channels-last']:.3f} | {m['plain']['nchw']:.3f} | "
            f"{m['plain']['channels-last']:.3f} | {max(sp.values()):.0%} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "passes": args.passes,
                    "torch": torch.__version__,
                    "specs": out,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
