"""``prunesearch fidelity``: does a search objective rank architectures the way training them
from scratch does?

1. Architectures at the budget: the baselines (uniform, slimming, global), then a quasi-random
   spread (a Halton sequence, alternating per-group keep ratios and depth profiles, each
   projected onto the budget) wide enough that from-scratch accuracies differ.
2. Each architecture is scored by every objective (cached in ``scores.json``).
3. Each architecture is trained from scratch for every seed (Scratch-B by default): cells in
   the cell store, shared with ``compare``.
4. Per objective, against the mean from-scratch test accuracy: Kendall tau and Spearman rho
   with bootstrap 95% intervals, the regret of the objective's top pick (best mean accuracy
   minus that of the architecture the objective ranks first), top-5 precision; and the noise
   ceiling: tau between seed 0's and seed 1's accuracies of the same architectures, the best
   any objective could reach; and the headroom: how much the architectures' true accuracies
   differ (their standard deviation) against one run's seed noise, i.e. whether there is
   anything for a search to find that this many seeds can show (``stats.headroom``).

The test set measures the objectives; nothing inside a search ever sees it (objectives score
on the validation split), and its images are independent of those the objectives score on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunesearch.engine.budget import Budget, parse_budgets, project
from prunesearch.errors import PrunesearchError
from prunesearch.experiments.run_store import ArchCell, Experiment, Setting, start_experiment
from prunesearch.experiments.stats import bootstrap, headroom, kendall_tau, spearman_rho
from prunesearch.fileio import atomic_write_json, atomic_write_text, file_digest, read_json
from prunesearch.find.baselines import baseline_widths, budget_targets
from prunesearch.find.candidates import Candidates, objective_settings, resolve_signal
from prunesearch.find.granularity import Parameterization
from prunesearch.latency.budgets import resolve_threads
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.spec import ArchSpec
from prunesearch.training.loop import RunOptions, resolve_device
from prunesearch.training.runs import DataOptions, resolve_space, write_config
from prunesearch.vocab import EPOCH_BUDGETS, OBJECTIVES, require

__all__ = [
    "FidelityOptions",
    "fidelity",
    "fidelity_markdown",
    "halton",
    "rank_summary",
    "sample_architectures",
]

logger = logging.getLogger(__name__)

MIN_ARCHS = 3
TOP_K = 5


@dataclass(frozen=True)
class FidelityOptions:
    budget: str
    archs: int = 30
    seeds: int = 2
    objectives: tuple[str, ...] = OBJECTIVES
    base: str | None = None
    signal: str | None = None
    schedule: str = "scratch-b"
    max_epoch_factor: float | None = None
    cells: str | None = None
    base_epochs: int | None = None  # the epochs a base trained elsewhere was trained for


def check_options(options: FidelityOptions) -> Budget:
    budgets = parse_budgets(options.budget)
    if len(budgets) != 1:
        raise PrunesearchError(f"--budget {options.budget}: fidelity takes one budget")
    if options.archs < MIN_ARCHS:
        raise PrunesearchError(
            f"--archs must be >= {MIN_ARCHS} (a ranking needs them), got {options.archs}"
        )
    if options.seeds < 1:
        raise PrunesearchError(f"--seeds must be >= 1, got {options.seeds}")
    if not options.objectives:
        raise PrunesearchError("--objective: name at least one objective")
    for o in options.objectives:
        require("objective", o, OBJECTIVES)
    require("schedule", options.schedule, EPOCH_BUDGETS)
    return budgets[0]


_PRIMES = (
    2,
    3,
    5,
    7,
    11,
    13,
    17,
    19,
    23,
    29,
    31,
    37,
    41,
    43,
    47,
    53,
    59,
    61,
    67,
    71,
    73,
    79,
    83,
    89,
    97,
    101,
    103,
    107,
    109,
    113,
    127,
    131,
    137,
    139,
    149,
    151,
    157,
    163,
    167,
    173,
)


def halton(index: int, dims: int) -> list[float]:
    """Point ``index`` (from 1) of the Halton sequence in [0, 1)^dims (dims <= 40; beyond,
    bases repeat with an offset)."""
    point = []
    for d in range(dims):
        base, f, x, i = _PRIMES[d % len(_PRIMES)], 1.0, 0.0, index + d // len(_PRIMES) * 7
        while i > 0:
            f /= base
            x += f * (i % base)
            i //= base
        point.append(x)
    return point


def sample_architectures(
    candidates: Candidates, budget: Budget, target: int, n: int
) -> list[dict[str, Any]]:
    """``n`` distinct architectures at the budget: the baselines first, then the spread."""
    graph, s = candidates.graph, candidates.space.search
    archs: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(name: str, origin: str, widths: dict[str, int]) -> None:
        key = json.dumps(widths, sort_keys=True)
        if key not in seen and len(archs) < n:
            seen.add(key)
            archs.append({"name": name, "origin": origin, "widths": widths})

    for name, (widths, _) in baseline_widths(candidates, budget, target).items():
        add(name, "baseline", widths)
    by_group = Parameterization(graph, "group", s.min_ratio)
    profile = Parameterization(graph, "profile", s.min_ratio)
    lo = s.min_ratio
    for i in range(1, 50 * n):
        if len(archs) >= n:
            break
        if i % 2:  # per-group keep ratios, uniform in [min_ratio, 1]
            u = halton((i + 1) // 2, len(by_group.names))
            ratios = by_group.ratios(
                {k: lo + (1 - lo) * v for k, v in zip(by_group.names, u, strict=True)}
            )
            origin = "spread:group"
        else:  # depth profiles: start, end, shape, inner
            u = halton(i // 2, 4)
            params = {
                "p:start": lo + (1 - lo) * u[0],
                "p:end": lo + (1 - lo) * u[1],
                "p:shape": 0.5 * 4 ** u[2],
                "p:inner": 0.25 * 8 ** u[3],
            }
            ratios = profile.ratios(params)
            origin = "spread:profile"
        widths = project(
            graph, ratios, budget.kind, target, min_ratio=s.min_ratio, round_to=s.round_to
        )
        add(f"a{len(archs):02d}", origin, widths)
    return archs


def _score_all(
    exp: Experiment,
    signal: str,
    archs: list[dict[str, Any]],
    objectives: tuple[str, ...],
    inherit: Candidates,
) -> None:
    """Fills ``arch["scores"][objective]``; scores.json caches them across runs. ``inherit``:
    the search already built for sampling (reused for that objective)."""
    space, data, opts = exp.setting.space, exp.setting.data, exp.setting.opts
    base_path, cache_path = exp.base_path, exp.run_dir / "scores.json"
    cache = read_json(cache_path, "objective scores") if cache_path.is_file() else {}
    for objective in objectives:
        settings = objective_settings(space, objective, rungs=inherit.rungs)  # fitted to data
        tag = hashlib.sha256(
            json.dumps([settings, signal, file_digest(base_path)], sort_keys=True).encode()
        ).hexdigest()[:12]
        table = cache.setdefault(f"{objective}-{tag}", {"settings": settings, "scores": {}})
        candidates = inherit if objective == "inherit" else None
        for i, a in enumerate(archs, 1):
            key = json.dumps(a["widths"], sort_keys=True)
            if key not in table["scores"]:
                candidates = candidates or Candidates(
                    space, base_path, signal, data, opts, objective
                )
                logger.info("fidelity: %s score %d/%d (%s)", objective, i, len(archs), a["name"])
                table["scores"][key] = candidates.score(a["widths"], signal)
                atomic_write_json(cache_path, cache)
            a.setdefault("scores", {})[objective] = table["scores"][key]


def fidelity(
    space: Space,
    options: FidelityOptions,
    *,
    out: str | Path | None = None,
    epochs: int | None = None,
    data: DataOptions = DataOptions(),  # noqa: B008
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Samples, scores and trains the architectures; writes fidelity.json and fidelity.md."""
    budget = check_options(options)
    space = resolve_space(space, data, reporter)  # the user's own data: its classes and size
    device = resolve_device(opts.device).type
    if budget.kind == "latency":
        space = resolve_threads(space)
    target = budget_targets(space, [budget], device=device, reporter=reporter)[0]
    exp = start_experiment(
        Setting(space, data, opts, epochs, reporter),
        f"fidelity-{budget.slug}",
        out=out,
        cells=options.cells,
        n_seeds=options.seeds,
        base=options.base,
        base_epochs=options.base_epochs,
    )
    run_dir, base_path = exp.run_dir, exp.base_path
    signal = resolve_signal(space, options.signal, exp.base_meta)
    candidates = Candidates(space, base_path, signal, data, opts, "inherit")
    candidates.use_budgets([budget], device, reporter)
    archs = sample_architectures(candidates, budget, target, options.archs)
    if len(archs) < MIN_ARCHS:
        raise PrunesearchError(
            f"budget {budget.text}: only {len(archs)} distinct "
            "architectures fit it; a ranking needs at least "
            f"{MIN_ARCHS}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    fid = dataclasses.asdict(options)
    write_config(run_dir, space, opts, data, fidelity=fid, base=str(base_path), signal=signal)
    _score_all(exp, signal, archs, options.objectives, candidates)
    specs = _save_specs(candidates, space, budget, target, archs, run_dir / "archs")
    _train_archs(exp, options, archs, specs)
    result = {
        "space": space.name,
        "budget": budget.text,
        "target": target,
        "seeds": exp.seeds,
        "schedule": options.schedule,
        "base_epochs": exp.base_epochs,
        "signal": signal,
        "base": str(base_path),
        "cells": str(exp.store.root),
        "run_dir": str(run_dir),
        "archs": archs,
    } | rank_summary(archs, options.objectives)
    atomic_write_json(run_dir / "fidelity.json", result)
    atomic_write_text(run_dir / "fidelity.md", fidelity_markdown(result))
    return result


def _save_specs(
    candidates: Candidates,
    space: Space,
    budget: Budget,
    target: int,
    archs: list[dict[str, Any]],
    folder: Path,
) -> dict[str, ArchSpec]:
    """Each architecture as a spec in ``folder`` (its FLOPs and params into ``archs``)."""
    budget_info = {"kind": budget.kind, "target": target, "text": budget.text}
    specs = {}
    for a in archs:
        spec = ArchSpec.from_graph(
            candidates.graph,
            a["widths"],
            model=space.model.name,
            model_args=space.model.args,
            budget=budget_info,
            search={"fidelity": a["name"], "origin": a["origin"]},
        )
        spec.save(folder / f"{a['name']}.json")
        spec.allow_import = True
        specs[a["name"]] = spec
        a["flops"], a["params"] = spec.flops, spec.params
    return specs


def _train_archs(
    exp: Experiment,
    options: FidelityOptions,
    archs: list[dict[str, Any]],
    specs: dict[str, ArchSpec],
) -> None:
    """Trains every (architecture, seed) cell from scratch, a cell another process is
    training last; their test accuracies and mean into ``archs``."""
    store, seeds, s = exp.store, exp.seeds, exp.setting

    def cell_of(name: str, seed: int) -> ArchCell:
        return ArchCell(
            specs[name],
            options.schedule,
            seed,
            epochs=exp.base_epochs,
            max_epoch_factor=options.max_epoch_factor,
            name=name,
        )

    def cell(name: str, seed: int) -> dict[str, Any]:
        return store.arch(
            cell_of(name, seed), s.space, data=s.data, opts=s.opts, reporter=s.reporter
        )

    def where(name: str, seed: int) -> Path:
        return store.arch_folder(cell_of(name, seed), s.space, s.data)

    pending = [(a["name"], seed) for a in archs for seed in seeds]
    total, deferred, metrics = len(pending), set(), {}
    while pending:
        name, seed = key = pending.pop(0)
        if key not in deferred and store.busy(where(name, seed)):
            deferred.add(key)  # another process (on the same store) is training it: later
            pending.append(key)
            continue
        logger.info("fidelity cell %d/%d: %s, seed %d", len(metrics) + 1, total, name, seed)
        metrics[key] = cell(name, seed)
    for a in archs:
        runs = [metrics[(a["name"], seed)] for seed in seeds]
        a["cells"] = [m["cell"] for m in runs]
        a["test_accuracy"] = [m["test_accuracy"] for m in runs]
        a["mean"] = statistics.fmean(a["test_accuracy"])


def _top(values: list[float], k: int) -> set[int]:
    return set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])


def rank_summary(archs: list[dict[str, Any]], objectives: tuple[str, ...]) -> dict[str, Any]:
    """Per-objective ranking statistics against the mean from-scratch accuracy, and the seed
    noise ceiling (see the module docstring)."""
    truth = [a["mean"] for a in archs]
    k = min(TOP_K, len(archs))
    best = max(truth)
    per: dict[str, Any] = {}
    for o in objectives:
        x = [a["scores"][o] for a in archs]
        pick = max(range(len(x)), key=lambda i: (x[i], -i))
        per[o] = {
            "kendall_tau": bootstrap(kendall_tau, x, truth).to_dict(),
            "spearman_rho": bootstrap(spearman_rho, x, truth).to_dict(),
            "top_pick": archs[pick]["name"],
            "regret": best - truth[pick],
            f"top{k}_precision": len(_top(x, k) & _top(truth, k)) / k,
        }
    out: dict[str, Any] = {
        "objectives": per,
        "top_k": k,
        "best_arch": archs[max(range(len(truth)), key=lambda i: truth[i])]["name"],
        "accuracy_spread": best - min(truth),
    }
    if all(len(a["test_accuracy"]) >= 2 for a in archs):
        s0 = [a["test_accuracy"][0] for a in archs]
        s1 = [a["test_accuracy"][1] for a in archs]
        out["noise_ceiling"] = {
            "kendall_tau": bootstrap(kendall_tau, s0, s1).to_dict(),
            "spearman_rho": bootstrap(spearman_rho, s0, s1).to_dict(),
        }
        # in points of accuracy, as every figure a user compares it with
        out["headroom"] = headroom([[100 * v for v in a["test_accuracy"]] for a in archs]).to_dict()
    return out


def ci_text(d: dict[str, float]) -> str:
    if any(math.isnan(d[k]) for k in ("value", "low", "high")):
        return "n/a"
    return f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def headroom_text(h: dict[str, Any]) -> str:
    """One sentence on how much the architectures differ against the seed noise."""
    a = h["arch_sd"]
    return (
        f"Headroom: the architectures' true accuracies differ with a standard deviation of "
        f"{a['value']:.2f} points [95%: {a['low']:.2f}, {a['high']:.2f}], one run's seed "
        f"noise is {h['seed_sd']:.2f} points; {100 * h['reliability']:.0f}% of the spread "
        f"of a {h['seeds']}-seed mean is architecture. Telling two architectures one such "
        f"standard deviation apart takes about {math.ceil(h['seeds_to_resolve'])} paired "
        "seeds."
        if a["value"] > 0
        else f"Headroom: none measurable; the spread of the architectures' accuracies is what "
        f"seed noise ({h['seed_sd']:.2f} points per run) alone would give [95% upper bound "
        f"on their standard deviation: {a['high']:.2f} points]."
    )


def fidelity_markdown(result: dict[str, Any]) -> str:
    """The fidelity figures as markdown (what BENCHMARKS.md quotes)."""
    k = result["top_k"]
    lines = [
        f"{result['space']} at {result['budget']}: {len(result['archs'])} architectures, "
        f"{result['schedule']} with seeds {result['seeds']} (base {result['base_epochs']} "
        f"epochs); from-scratch test accuracy spread {100 * result['accuracy_spread']:.2f} "
        f"points, best {result['best_arch']}.",
        "",
        f"| objective | Kendall τ [95%] | Spearman ρ [95%] | regret (points) | "
        f"top-{k} precision | top pick |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for o, r in result["objectives"].items():
        lines.append(
            f"| {o} | {ci_text(r['kendall_tau'])} | {ci_text(r['spearman_rho'])} | "
            f"{100 * r['regret']:.2f} | {r[f'top{k}_precision']:.2f} | "
            f"{r['top_pick']} |"
        )
    ceiling = result.get("noise_ceiling")
    if ceiling:
        lines.append(
            f"| noise ceiling (seed {result['seeds'][0]} vs {result['seeds'][1]}) | "
            f"{ci_text(ceiling['kendall_tau'])} | "
            f"{ci_text(ceiling['spearman_rho'])} | | | |"
        )
    if result.get("headroom"):
        lines += ["", headroom_text(result["headroom"])]
    lines += [
        "",
        "| architecture | origin | FLOPs | "
        + " | ".join(result["objectives"])
        + " | test accuracy (mean) |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in result["objectives"]) + " | ---: |",
    ]
    for a in sorted(result["archs"], key=lambda a: -a["mean"]):
        lines.append(
            f"| {a['name']} | {a['origin']} | {a['flops'] / 1e6:.2f}M | "
            + " | ".join(f"{a['scores'][o]:.4f}" for o in result["objectives"])
            + f" | {100 * a['mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"
