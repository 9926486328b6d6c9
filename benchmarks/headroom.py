"""Headroom: how much do architectures at one budget differ, against seed noise?

Reads stored ``prunesearch compare --json`` and ``prunesearch fidelity --json`` results and
estimates, from their paired seed tables (points of test accuracy), the standard deviation of
the architectures' true accuracies and one run's seed noise
(``prunesearch.experiments.stats.headroom``:
two-way method of moments, bootstrap 95% interval over architectures). Compare rows that are
the same cells as another row (``same_as``) count once; only Scratch-B rows are used.

    python benchmarks/headroom.py benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from prunesearch.experiments.stats import headroom


def seed_table(result: dict) -> list[list[float]] | None:
    """accuracy[arch][seed] in points of a fidelity or compare result; None for other files."""
    if "objectives" in result and "archs" in result:  # fidelity
        rows = [a["test_accuracy"] for a in result["archs"]]
    elif "paired" in result:  # compare
        rows = [
            r["test_accuracy"]
            for r in result["rows"]
            if r["training"] == "scratch-b" and not r.get("same_as")
        ]
    else:
        return None
    return [[100 * v for v in acc] for acc in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    print(
        "| result | architectures x seeds | architecture sd [95%] | seed sd | "
        "share of a mean's spread | seeds to resolve one arch sd |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for path in args.results:
        result = json.loads(path.read_text())
        acc = seed_table(result)
        if acc is None or len(acc) < 3 or len(acc[0]) < 2:
            continue
        h = headroom(acc)
        n = "-" if math.isinf(h.seeds_to_resolve()) else f"{math.ceil(h.seeds_to_resolve())}"
        print(
            f"| {path.stem} | {len(acc)} x {len(acc[0])} | {h.arch_sd.value:.2f} "
            f"[{h.arch_sd.low:.2f}, {h.arch_sd.high:.2f}] | {h.seed_sd:.2f} | "
            f"{100 * h.reliability:.0f}% | {n} |"
        )


if __name__ == "__main__":
    main()
