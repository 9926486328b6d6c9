"""CLI start-up of two source trees, interleaved in one run (the machine's speed moves: only
the ratio within a run means something): ``python -m prunesearch`` with each tree's ``src`` first
on ``PYTHONPATH``, from an empty folder, median of REPEAT after one unmeasured round.

    git worktree add /tmp/before 8e410bf
    python benchmarks/startup_ab.py 9 /tmp/before/src src
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE, AFTER = (str(Path(p).resolve()) for p in sys.argv[2:4])
TREES = {"before": BEFORE, "after": AFTER}
CASES = {
    "--help": (["--help"], 0),
    "find --help": (["find", "--help"], 0),
    "find --budget 50%bananas": (["find", "--budget", "50%bananas"], 2),
    "show missing.json": (["show", "missing.json"], 2),
    "import prunesearch": (None, 0),
}
REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 9
out = {t: {c: [] for c in CASES} for t in TREES}
with tempfile.TemporaryDirectory() as cwd:
    for r in range(REPEAT + 1):
        for case, (args, expect) in CASES.items():
            for tree, src in TREES.items():
                env = dict(os.environ, PYTHONPATH=src)
                argv = (
                    [sys.executable, "-c", "import prunesearch"]
                    if args is None
                    else [sys.executable, "-m", "prunesearch", *args]
                )
                t0 = time.perf_counter()
                rc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True).returncode
                dt = time.perf_counter() - t0
                assert rc == expect, (tree, case, rc)
                if r:
                    out[tree][case].append(dt)
res = {c: {t: statistics.median(out[t][c]) for t in TREES} for c in CASES}
for c, v in res.items():
    b, a = v["before"], v["after"]
    print(f"| {c} | {b:.3f} | {a:.3f} | {a / b:.2f} |")
Path(__file__).with_name("results").mkdir(exist_ok=True)
(Path(__file__).with_name("results") / "startup_ab.json").write_text(json.dumps(res, indent=1))
