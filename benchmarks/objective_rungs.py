"""Fidelity of cheaper scratch-objective settings, on architectures already trained from scratch.

Reads a ``prunesearch fidelity --json`` result (its architectures' widths and mean from-scratch
test accuracies), scores every architecture with the scratch objective at the given rungs (one
trunk, a cool-down per rung, as in a search), and reports per rung Kendall tau / Spearman rho
against the stored from-scratch means with bootstrap 95% intervals, the regret of the rung's top
pick, and the seconds per architecture. The stored score of the result's own scratch setting is
reported beside them. No cell is retrained; the base is only traced (scratch scores do not use
its weights).

    python benchmarks/objective_rungs.py benchmarks/results/fidelity-resnet20-fmnist-50pct.json \
        --base RUNS/base-10k-s0 --limit-train 10000 --images 2000 --reduction 3 --rungs 2 \
        --out RUNS/objective-rungs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from prunesearch.experiments.stats import bootstrap, kendall_tau, spearman_rho
from prunesearch.find.candidates import Candidates
from prunesearch.space import load_space
from prunesearch.training.loop import RunOptions
from prunesearch.training.runs import DataOptions


class _Recorder:
    """Stands in for an Optuna trial: records every rung's score, never stops the run."""

    def __init__(self) -> None:
        self.reports: dict[int, float] = {}

    def report(self, value: float, step: int) -> None:
        self.reports[step] = value

    def should_prune(self) -> bool:
        return False


def _stats(scores: list[float], truth: list[float]) -> dict:
    tau, rho = bootstrap(kendall_tau, scores, truth), bootstrap(spearman_rho, scores, truth)
    top = max(range(len(scores)), key=scores.__getitem__)
    return {
        "kendall_tau": dataclasses.asdict(tau),
        "spearman_rho": dataclasses.asdict(rho),
        "regret_points": round(100 * (max(truth) - truth[top]), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fidelity_json")
    ap.add_argument("--base", required=True)
    ap.add_argument("--space", default=None)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--reduction", type=int, default=3)
    ap.add_argument("--rungs", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    result = json.loads(Path(a.fidelity_json).read_text())
    space = load_space(a.space or result["space"])
    space = dataclasses.replace(
        space,
        search=dataclasses.replace(
            space.search,
            scratch_images=a.images,
            scratch_reduction=a.reduction,
            scratch_rungs=a.rungs,
        ),
    )
    base = Path(a.base)
    base = base / "model.safetensors" if base.is_dir() else base
    search = Candidates(
        space,
        base,
        space.search.signal,
        DataOptions(limit_train=a.limit_train),
        RunOptions(),
        "scratch",
    )
    out = Path(a.out)
    done = json.loads(out.read_text())["archs"] if out.is_file() else {}
    for arch in result["archs"]:
        if arch["name"] in done:
            continue
        rec, t0 = _Recorder(), time.perf_counter()
        search.scorer.score(arch["widths"], trial=rec)
        done[arch["name"]] = {
            "rungs": {str(k): v for k, v in rec.reports.items()},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        out.write_text(json.dumps({"archs": done}, indent=1))
        print(arch["name"], done[arch["name"]], flush=True)
    truth = [arch["mean"] for arch in result["archs"]]
    summary = {}
    for step in search.rungs.sizes:
        scores = [done[arch["name"]]["rungs"][str(step)] for arch in result["archs"]]
        summary[f"scratch@{step}"] = _stats(scores, truth)
    for name in result["objectives"]:
        scores = [arch["scores"][name] for arch in result["archs"]]
        summary[f"stored {name}"] = _stats(scores, truth)
    seconds = [v["seconds"] for v in done.values()]
    summary["seconds_per_arch"] = round(sum(seconds) / len(seconds), 1)
    out.write_text(
        json.dumps(
            {
                "archs": done,
                "summary": summary,
                "settings": {
                    "images": a.images,
                    "reduction": a.reduction,
                    "rungs": a.rungs,
                    "limit_train": a.limit_train,
                },
            },
            indent=1,
        )
    )
    for k, v in summary.items():
        print(k, v)


if __name__ == "__main__":
    main()
