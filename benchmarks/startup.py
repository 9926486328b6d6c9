"""CLI start-up time: wall seconds of real ``prunesearch`` subprocesses that need no model.

``--help``, ``find --help``, a malformed budget (``find --budget 50%bananas``) and a missing
spec file (``show missing.json``), plus a bare ``import prunesearch``; each run ``--repeat``
times (median reported) from an empty temporary folder, after one unmeasured warm-up run (the
page cache), with the exit code checked (0 for help, 2 for bad input). ``--label`` names the
measurement in the results file (e.g. ``before``/``after`` a change); other labels are kept.

    python benchmarks/startup.py [--label after] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
CASES = {  # name: (arguments, expected exit code)
    "--help": (["--help"], 0),
    "find --help": (["find", "--help"], 0),
    "find --budget 50%bananas": (["find", "--budget", "50%bananas"], 2),
    "show missing.json": (["show", "missing.json"], 2),
}


def cli() -> list[str]:
    """The installed console script (what users run), else ``python -m prunesearch``."""
    script = shutil.which("prunesearch")
    return [script] if script else [sys.executable, "-m", "prunesearch"]


def wall(argv: list[str], expect: int, cwd: str, repeat: int) -> list[float]:
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != expect:
            raise SystemExit(
                f"{' '.join(argv)}: exit code {proc.returncode}, expected {expect}"
                f"\n{proc.stderr[-2000:]}"
            )
        if i:  # the first run warms the page cache
            times.append(round(dt, 3))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default="current")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = cli()
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as empty:
        for name, (argv, expect) in CASES.items():
            runs[f"prunesearch {name}"] = wall(base + argv, expect, empty, args.repeat)
        runs["python -c 'import prunesearch'"] = wall(
            [sys.executable, "-c", "import prunesearch"], 0, empty, args.repeat
        )
    medians = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    for k, v in medians.items():
        print(f"{v:6.3f} s  {k}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[args.label] = {
        "command": " ".join(base),
        "repeat": args.repeat,
        "median_s": medians,
        "runs_s": runs,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
