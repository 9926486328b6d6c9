"""Specs trained from scratch for equal epochs (Scratch-E), paired seeds (issue 16).

``compare`` trains its rows with Scratch-B, the base's training compute in FLOPs: a spec that a
latency budget lets have more FLOPs gets fewer epochs. This trains every ``NAME=SPEC.json``
for the same epochs (``--epochs``, the base's), seeds ``0..--seeds-1``, in a cell store shared
with ``compare`` (never the same cell twice), and prints mean ± std and the first spec minus
each other one, seed by seed, with a 95% t interval.

    OMP_NUM_THREADS=1 python benchmarks/scratch_e.py latency=A.json flops50=B.json \\
        --epochs 2 --seeds 5 --limit-train 10000 --cells RUNS/cells --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from prunesearch.experiments.run_store import ArchCell, CellStore
from prunesearch.experiments.stats import paired_difference
from prunesearch.space import load_space
from prunesearch.spec import ArchSpec
from prunesearch.training.loop import RunOptions
from prunesearch.training.runs import DataOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs", nargs="+", metavar="NAME=SPEC")
    ap.add_argument("--space", default=None)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--cells", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    space = load_space(args.space)
    store, data = CellStore(args.cells), DataOptions(limit_train=args.limit_train)
    specs = {n: ArchSpec.load(p) for n, _, p in (s.partition("=") for s in args.specs)}
    acc: dict[str, list[float]] = {n: [] for n in specs}
    for seed in range(args.seeds):  # seed by seed: a run cut short leaves paired seeds
        for name, spec in specs.items():
            cell = ArchCell(spec, "scratch-e", seed, epochs=args.epochs, name=name)
            m = store.arch(cell, space, data=data, opts=RunOptions())
            acc[name].append(100 * m["test_accuracy"])
            print(f"{name} seed {seed}: {acc[name][-1]:.2f}", flush=True)
    first = next(iter(specs))
    print(f"\n| spec | FLOPs | Scratch-E ({args.epochs} epochs) | {first} minus spec, 95% |")
    print("| --- | ---: | ---: | ---: |")
    diffs = {}
    for name, spec in specs.items():
        mean, sd = statistics.fmean(acc[name]), statistics.stdev(acc[name])
        cell = ""
        if name != first:
            d = paired_difference(acc[first], acc[name])
            diffs[name] = d.to_dict()
            cell = f"{d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
        print(f"| {name} | {spec.flops / 1e6:.2f}M | {mean:.2f} ± {sd:.2f} | {cell} |")
    if args.out:
        args.out.write_text(
            json.dumps({"epochs": args.epochs, "accuracy": acc, "paired": diffs}, indent=1)
        )


if __name__ == "__main__":
    main()
