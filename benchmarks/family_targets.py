"""The family targets of issue 26: recipes against Scratch-E/Scratch-B, paired seeds.

``run`` trains (resumably: every step is a prunesearch command that reuses what is finished)
one base, one find run at the family's budgets, then ``prunesearch family`` for every recipe and
seed, spread over ``--lanes`` processes of one torch thread each; the controls (``--baselines``)
train with the first recipe listed. ``table`` reads the family folders and prints the tables of
BENCHMARKS.md: accuracy mean ± std per member and recipe, each cheap recipe's paired difference
against Scratch-E and Scratch-B (95% t interval), the cost as a multiple of the base's training,
and per budget the searched widths against the controls under the same recipe (headroom).

    python benchmarks/family_targets.py run --runs RUNS --seeds 0,1,2 --lanes 2 \
        --recipes finetune,chain,distill,scratch-e,scratch-b --baselines uniform,global
    python benchmarks/family_targets.py table --runs RUNS --json rows.json > table.md

A family folder ``family-<label>-s<seed>`` is one row of the table under ``<label>``: the
recipe, or a variant trained with ``--out`` into such a folder (``finetune-shared``: the
finetune recipe with ``train.family_compute`` set in a copy of the space).

Nothing is chosen on the test set: the "chosen" recipe of the table is the cheap recipe with
the best mean validation accuracy over members and seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prunesearch.experiments.stats import headroom, paired_difference

CHEAP = ("finetune", "finetune-shared", "chain", "distill")


def _cmd(args: list[str], log: Path, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    with log.open("a") as f:
        f.write(f"\n$ prunesearch {' '.join(args)}\n")
        f.flush()
        rc = subprocess.call(
            [sys.executable, "-m", "prunesearch", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )
        f.write(f"# rc {rc}, {time.time() - t0:.1f} s\n")
    if rc:
        raise SystemExit(f"failed ({rc}): prunesearch {' '.join(args)}; see {log}")


def run(a: argparse.Namespace) -> None:
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "log.txt"
    common = ["--space", a.space] + (["--limit-train", str(a.limit_train)] if a.limit_train else [])
    if not (runs / "base" / "metrics.json").is_file():
        _cmd(["train-base", *common, "--out", str(runs / "base")], log, 2)
    if not (runs / "find" / "family.json").is_file():
        find = ["find", *common, "--base", str(runs / "base"), "--budget", a.budgets]
        _cmd([*find, "--objective", a.objective, "--out", str(runs / "find")], log, 2)
    jobs = []
    for seed in a.seeds.split(","):
        for i, recipe in enumerate(a.recipes.split(",")):
            extra = ["--baselines", a.baselines] if a.baselines and i == 0 else []
            jobs.append(
                ["family", str(runs / "find"), *common, "--recipe", recipe, "--seed", seed]
                + extra
                + (["--no-export"] if a.no_export else [])
            )

    def lane(job: list[str]) -> None:
        recipe, seed = job[job.index("--recipe") + 1], job[job.index("--seed") + 1]
        _cmd(job, runs / f"log-{recipe}-s{seed}.txt", 1)

    with ThreadPoolExecutor(a.lanes) as pool:
        for _ in pool.map(lane, jobs):
            pass


def _families(find: Path) -> dict[tuple[str, int], dict]:
    """The trained families by (label, seed); the label is the folder's name between
    ``family-`` and ``-s<seed>`` (the recipe, or a variant such as ``finetune-shared``)."""
    out = {}
    for f in sorted(find.glob("family-*-s*/family.json")):
        rep = json.loads(f.read_text())
        label = f.parent.name[len("family-") :].rsplit("-s", 1)[0]
        out[(label, int(rep["seed"]))] = rep
    return out


def _acc(fams, recipe, seeds, member, key="test_accuracy", control=None):
    vals = []
    for s in seeds:
        rep = fams[(recipe, s)]
        rows = rep["members"] if control is None else rep.get("controls") or []
        row = next(
            r
            for r in rows
            if (r["member"] if control is None else r["of"]) == member
            and (control is None or r["control"] == control)
        )
        vals.append(100 * row[key])
    return vals


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def _seeds(fams, *recipes) -> list[int]:
    """The seeds every one of ``recipes`` was trained with (the pairs of a comparison)."""
    return sorted(set.intersection(*({s for q, s in fams if q == r} for r in recipes)))


def _diff(a: list[float], b: list[float]) -> str:
    if len(a) < 2:
        return f"{a[0] - b[0]:+.2f} (1 seed)" if a else ""
    d = paired_difference(a, b)
    return f"{d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}] (n={len(a)})"


def _recipe_rows(fams, recipes, members) -> None:
    print("| recipe | seeds | " + " | ".join(members) + " | family x base | x Scratch-B |")
    print("| --- | --- |" + " ---: |" * (len(members) + 2))
    for r in recipes:
        seeds = _seeds(fams, r)
        accs = [_ms(_acc(fams, r, seeds, m)) for m in members]
        tot = fams[(r, seeds[0])]["total"]
        print(
            f"| {r} | {','.join(map(str, seeds))} | " + " | ".join(accs)
            + f" | {tot['x_base']:.3f} | {tot['x_scratch_b']:.3f} |"
        )  # fmt: skip


def _controls(fams, ctl: str, members) -> None:
    seeds = _seeds(fams, ctl)
    names = list(dict.fromkeys(c["control"] for c in fams[(ctl, seeds[0])]["controls"]))
    print(f"\nSearched widths against the controls, all by {ctl}, seeds {seeds} (test):\n")
    heads = ["searched", *names, *(f"searched - {n}" for n in names), "headroom sd / noise sd"]
    print("| budget | " + " | ".join(heads) + " |")
    print("| --- |" + " ---: |" * len(heads))
    for m in members:
        s = _acc(fams, ctl, seeds, m)
        cs = [_acc(fams, ctl, seeds, m, control=n) for n in names]
        h = ""
        if len(seeds) >= 2:
            hr = headroom([s, *cs])
            h = f"{hr.arch_sd.value:.2f} [{hr.arch_sd.low:.2f}, {hr.arch_sd.high:.2f}] / "
            h += f"{hr.seed_sd:.2f}"
        cells = [_ms(s), *(_ms(c) for c in cs), *(_diff(s, c) for c in cs), h]
        print(f"| {m} | " + " | ".join(cells) + " |")


def _dump(fams, path: Path) -> None:
    """The families' rows, per recipe and seed, as JSON (what the tables are computed from)."""
    keep = ("member", "budget", "flops", "params", "test_accuracy", "val_accuracy", "control")
    out = {}
    for (label, seed), rep in sorted(fams.items()):
        rows = rep["members"] + (rep.get("controls") or [])
        out.setdefault(label, {})[seed] = {
            "space": rep["space"],
            "recipe_settings": rep["recipe_settings"],
            "rows": [{k: r.get(k) for k in keep} | {"cost": r["cost"]} for r in rows],
            "total": rep["total"],
            "base": rep["base"],
        }
    path.write_text(json.dumps(out, indent=1))


def table(a: argparse.Namespace) -> None:
    fams = _families(Path(a.runs) / "find")
    if a.json:
        _dump(fams, Path(a.json))
    order = (*CHEAP, "scratch-e", "scratch-b")
    recipes = sorted(dict.fromkeys(r for r, _ in fams), key=order.index)
    first = next(iter(fams.values()))
    members, base = [m["member"] for m in first["members"]], first["base"]
    print(
        f"{first['space']}, base {base['epochs']} epochs, test {100 * base['test_accuracy']:.2f};"
        " test accuracy %, mean ± std over the seeds listed (the same seeds for every recipe "
        "where listed: paired)\n"
    )
    _recipe_rows(fams, recipes, members)
    cheap = [r for r in recipes if r in CHEAP]
    val = {}
    for r in cheap:
        vals = _acc_all(fams, r, members, "val_accuracy")
        val[r] = statistics.mean(vals)
    print(
        "\nValidation accuracy (mean over members and the recipe's seeds): "
        + ", ".join(f"{r} {v:.2f}" for r, v in val.items())
    )
    refs = [r for r in ("scratch-e", "scratch-b") if r in recipes]
    print("\nPaired differences, cheap recipe minus reference (test points, 95% t interval):\n")
    print("| recipe | member | " + " | ".join(f"vs {r}" for r in refs) + " |")
    print("| --- | --- |" + " ---: |" * len(refs))
    for r in cheap:
        for m in members:
            cells = []
            for ref in refs:
                seeds = _seeds(fams, r, ref)
                cells.append(_diff(_acc(fams, r, seeds, m), _acc(fams, ref, seeds, m)))
            print(f"| {r} | {m} | " + " | ".join(cells) + " |")
    ctl = next((r for r, s in fams if fams[(r, s)].get("controls")), None)
    if ctl:
        _controls(fams, ctl, members)
    print("\nPer seed, test %:")
    for r in recipes:
        seeds = _seeds(fams, r)
        per = [f"{m} " + " ".join(f"{v:.2f}" for v in _acc(fams, r, seeds, m)) for m in members]
        print(f"- {r} (seeds {seeds}): " + "; ".join(per))


def _acc_all(fams, r, members, key) -> list[float]:
    seeds = _seeds(fams, r)
    return [v for m in members for v in _acc(fams, r, seeds, m, key)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", required=True)
    r.add_argument("--space", default="resnet20-fmnist")
    r.add_argument("--budgets", default="25%,50%,75%FLOPs")
    r.add_argument("--objective", default="inherit")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--recipes", default="finetune,chain,distill,scratch-e,scratch-b")
    r.add_argument("--baselines", default="uniform,global")
    r.add_argument("--limit-train", type=int, default=0)
    r.add_argument("--lanes", type=int, default=2)
    r.add_argument("--no-export", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--runs", required=True)
    t.add_argument("--json", help="also write the per-seed rows to this JSON file")
    a = ap.parse_args()
    run(a) if a.what == "run" else table(a)


if __name__ == "__main__":
    main()
