"""Distributed search: 1, 2 and 4 `prunesearch find` workers sharing one PostgreSQL study.

Each setting starts N worker processes at once on the default space (its trained base must
exist: run `prunesearch train-base` or `prunesearch find` first), all with the same
`--storage`/`--study`, and measures trials per minute from the first trial's start to the last
trial's end as recorded in the study (process start-up excluded, reported apart). Each worker
gets `OMP_NUM_THREADS = cores // N` (at least 1), so the machine is never oversubscribed.

    python benchmarks/distributed.py [--url postgresql://...] [--trials 24] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

RESULTS = Path("benchmarks/results")


def run(url: str, workers: int, trials: int, base: str) -> dict:
    study = f"bench-{workers}w-{int(time.time())}"
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prunesearch",
                "find",
                "--budget",
                "50%FLOPs",
                "--base",
                base,
                "--storage",
                url,
                "--study",
                study,
                "--trials",
                str(trials),
                "--out",
                f"outputs/bench/pg-{study}/w{k}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(err)
    wall = time.perf_counter() - t
    s = optuna.load_study(study_name=f"{study}:50pct-flops", storage=url)
    done = [
        tr
        for tr in s.trials
        if tr.state == optuna.trial.TrialState.COMPLETE and "export_token" not in tr.user_attrs
    ]
    span = (
        max(tr.datetime_complete for tr in done) - min(tr.datetime_start for tr in done)
    ).total_seconds()
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "trials": len(done),
        "pids": len({tr.user_attrs["pid"] for tr in done}),
        "search_seconds": round(span, 1),
        "wall_seconds": round(wall, 1),
        "trials_per_min": round(60 * len(done) / span, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--url",
        default=os.environ.get(
            "PRUNESEARCH_BENCH_POSTGRES",
            "postgresql://prunesearch:prunesearch@127.0.0.1:5432/prunesearch_bench",
        ),
    )
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--base", default="outputs/resnet20-fmnist/base/model.safetensors")
    args = p.parse_args()
    rows = [run(args.url, int(n), args.trials, args.base) for n in args.workers.split(",")]
    for r in rows:
        r["speedup_vs_1"] = round(r["trials_per_min"] / rows[0]["trials_per_min"], 2)
    result = {
        "space": "resnet20-fmnist (default)",
        "budget": "50%FLOPs",
        "cores": os.cpu_count(),
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
