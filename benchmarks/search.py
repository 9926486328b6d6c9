"""Search cost and search gain of ``prunesearch find``.

``speed``: candidates scored per minute (project random keep ratios onto 50% FLOPs, prune,
recalibrate BN on the space's K batches, score on the validation split), on the default space
(resnet20, real Fashion-MNIST, 5,000 validation images) and on resnet56 at 32x32 (synthetic
CIFAR-sized data, same K and validation size). Scoring speed does not depend on what the weights
learned, so untrained models are used.

``gain``: on the default space, trains (or reuses) the base, times ``find --budget 50%FLOPs``
against one base epoch (and its trials' median duration), then runs the family
``25%,50%,75%FLOPs`` and reports, per budget, the proxy accuracy of the best trial against the
uniform, slimming-threshold and L1 baselines at equal FLOPs (all measured on the held-out
validation split, never the test set).

    python benchmarks/search.py speed [--candidates 30]
    python benchmarks/search.py gain [--trials 40]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import prunesearch as ps
from prunesearch.data.datasets import load_dataset, split_validation
from prunesearch.engine.budget import project
from prunesearch.find.objectives import InheritScorer

RESULTS = Path("benchmarks/results")


def _rate(
    model_name: str, in_channels: int, size: int, train, val, candidates: int, seed: int = 0
) -> dict:
    graph = ps.trace(
        ps.create_model(model_name, num_classes=10, in_channels=in_channels),
        torch.zeros(1, in_channels, size, size),
    )
    scorer = InheritScorer(
        graph,
        train,
        val,
        importance="l1",
        calib_batches=20,
        batch_size=128,
        eval_batch_size=500,
        device=torch.device("cpu"),
    )
    target = graph.flops() // 2
    rng = random.Random(seed)

    def one() -> float:
        ratios = {g.name: rng.uniform(0.1, 1.0) for g in graph.groups}
        widths = project(graph, ratios, "flops", target, min_ratio=0.1, round_to=1)
        t = time.perf_counter()
        scorer.score(widths)
        return time.perf_counter() - t

    one()  # warm-up
    times = [one() for _ in range(candidates)]
    med = statistics.median(times)
    return {
        "model": model_name,
        "input": [in_channels, size, size],
        "val_images": len(val),
        "calib_batches": 20,
        "candidates": candidates,
        "median_s": round(med, 3),
        "candidates_per_min": round(60 / statistics.mean(times), 1),
    }


def speed(args) -> dict:
    fm_train, fm_val = split_validation(load_dataset("fashion-mnist", "train"), 5000)
    syn_train = load_dataset(
        "synthetic", "train", image_size=32, in_channels=3, num_classes=10, train_size=5000 + 2560
    )
    syn_train, syn_val = split_validation(syn_train, 5000)
    rows = [
        _rate("resnet20", 1, 28, fm_train, fm_val, args.candidates),
        _rate("resnet56", 3, 32, syn_train, syn_val, args.candidates),
    ]
    return {"speed": rows, "threads": torch.get_num_threads()}


def _cli(*argv: str) -> tuple[dict, float]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "prunesearch", *argv, "--json"], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - t


def _trial_seconds(db: Path) -> list[float]:
    import optuna

    storage = f"sqlite:///{db}"
    name = optuna.get_all_study_summaries(storage)[0].study_name
    trials = optuna.load_study(study_name=name, storage=storage).trials
    return [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ]


def gain(args) -> dict:
    base_dir = Path("outputs/resnet20-fmnist/base")
    if not (base_dir / "model.safetensors").is_file():
        _cli("train-base", "--resume")
    base = json.loads((base_dir / "metrics.json").read_text())
    epoch_s = statistics.median(h["seconds"] for h in base["history"])
    out50 = Path("outputs/bench/find-50")
    single, single_s = _cli(
        "find", "--budget", "50%FLOPs", "--trials", str(args.trials), "--out", str(out50)
    )
    durations = _trial_seconds(out50 / "study.db")
    family, family_s = _cli(
        "find",
        "--budget",
        "25%,50%,75%FLOPs",
        "--trials",
        str(args.trials),
        "--out",
        "outputs/bench/family",
    )
    rows = [
        {"budget": m["budget"], "flops": m["flops"], "best": m["score"], "trial": m["trial"]}
        | {k: v["score"] for k, v in m["baselines"].items()}
        for m in family["members"]
    ]
    return {
        "base_test_accuracy": base["test_accuracy"],
        "base_epoch_s": epoch_s,
        "find_50pct_s": round(single_s, 1),
        "find_50pct_in_base_epochs": round(single_s / epoch_s, 2),
        "find_trial_median_s": round(statistics.median(durations), 2),
        "find_candidates_per_min": round(60 * len(durations) / sum(durations), 1),
        "trials": args.trials,
        "family_s": round(family_s, 1),
        "family": rows,
        "single": {
            "score": single["members"][0]["score"],
            "baselines": single["members"][0]["baselines"],
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--candidates", type=int, default=30)
    g = sub.add_parser("gain")
    g.add_argument("--trials", type=int, default=40)
    args = p.parse_args()
    result = speed(args) if args.what == "speed" else gain(args)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"search_{args.what}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
