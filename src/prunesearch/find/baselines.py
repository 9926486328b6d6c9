"""The baselines a search must beat, and the trials it starts from.

Per budget: uniform widths (and L1, the same widths with L1's channels), network slimming's
single global threshold on BN |gamma|, and ``global`` (each group's signal divided by its mean,
one global threshold: Torch-Pruning's global pruning), each projected onto the budget and scored
by the search's objective; then the first trials: the signal's allocation, the global one,
uniform ratios and perturbations of the global allocation.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

import torch

from prunesearch.engine.budget import Budget, amount, cost, global_ratios, project, threshold_ratios
from prunesearch.engine.graph import ChannelGraph, trace
from prunesearch.engine.importance import comparable_scores
from prunesearch.errors import PrunesearchError
from prunesearch.find.candidates import Candidates, input_shape
from prunesearch.latency.budgets import attach_latency, base_latency
from prunesearch.progress import Reporter
from prunesearch.space import Space

__all__ = ["baseline_widths", "budget_targets", "score_baselines", "seed_trials"]

logger = logging.getLogger(__name__)

# an absolute latency budget this far above the base's quick measurement is refused at once;
# closer, the same network can measure either side of it (BENCHMARKS.md: 7-12% between passes)
CLEARLY_ABOVE = 1.15


def budget_targets(
    space: Space,
    budgets: list[Budget],
    *,
    device: str = "cpu",
    reporter: Reporter | None = None,
    graph: ChannelGraph | None = None,
) -> list[int]:
    """Each budget's target, checked to lie below the base model and within reach of the
    space's minimum keep ratio (an untrained model has the same costs). A latency budget
    builds the space's latency models first (or reads them from the cache). ``graph``: the
    model already traced (default: the space's model, untrained)."""
    s = space.search
    if graph is None:
        graph = trace(space.create_model(), torch.zeros(1, *input_shape(space)))
    if any(b.kind == "latency" for b in budgets):
        absolute = [b for b in budgets if b.kind == "latency" and not b.relative]
        if absolute:  # a budget clearly above the base is refused before tables are built
            measured = base_latency(graph, space, device=device)
            for b in absolute:  # within the timing's noise, the prediction decides (below)
                if b.value >= CLEARLY_ABOVE * measured:
                    raise PrunesearchError(
                        f"budget {b.text}: {amount(int(b.value), b.kind)} is not below the "
                        f"base model's {amount(measured, b.kind)} (measured); nothing to prune"
                    )
        attach_latency(graph, space, device=device, reporter=reporter)
    targets = []
    for b in budgets:
        base_cost = cost(graph, b.kind)
        target = b.target(base_cost)
        if target >= base_cost:
            raise PrunesearchError(
                f"budget {b.text}: {amount(target, b.kind)} is not below "
                f"the base model's {amount(base_cost, b.kind)}"
                f"{' (predicted)' if b.kind == 'latency' else ''}; nothing "
                "to prune"
            )
        project(graph, {}, b.kind, target, min_ratio=s.min_ratio, round_to=s.round_to)
        targets.append(target)
    return targets


def baseline_widths(
    candidates: Candidates, budget: Budget, target: int
) -> dict[str, tuple[dict[str, int], str]]:
    """The baselines' widths at the budget, with the signal that picks their channels:
    ``uniform`` and ``l1`` (the same widths), ``slimming`` (one global threshold on BN |gamma|,
    when the model has BN), ``global`` (mean-normalised signal, one global threshold)."""
    graph, s = candidates.graph, candidates.space.search

    def on_budget(ratios: dict[str, float]) -> dict[str, int]:
        return project(
            graph, ratios, budget.kind, target, min_ratio=s.min_ratio, round_to=s.round_to
        )

    uniform = on_budget({})
    out = {"uniform": (uniform, candidates.signal), "l1": (uniform, "l1")}
    slim_scores = comparable_scores(graph.model, graph.groups, "slimming")
    if slim_scores:
        out["slimming"] = (
            on_budget(threshold_ratios(graph, slim_scores, budget.kind, target, s.min_ratio)),
            "slimming",
        )
    scores = comparable_scores(graph.model, graph.groups, candidates.signal) or comparable_scores(
        graph.model, graph.groups, "l1"
    )
    out["global"] = (
        on_budget(global_ratios(graph, scores, budget.kind, target, s.min_ratio)),
        candidates.signal,
    )
    return out


def score_baselines(
    candidates: Candidates,
    budget: Budget,
    target: int,
    cache: dict[str, Any],
    settings: dict[str, Any],
    reporter: Reporter | None = None,
) -> dict[str, dict[str, Any]]:
    """Each baseline scored by the search's objective, a log line each; ``cache``
    (baselines.json, by budget) keeps scores whose widths and objective settings are
    unchanged."""
    cached = cache.get(budget.slug, {})
    baselines = {}
    todo = baseline_widths(candidates, budget, target)
    if reporter is not None:
        reporter.work_start(f"baselines at {budget.text}", len(todo))
    for i, (name, (widths, importance)) in enumerate(todo.items(), 1):
        entry = cached.get(name)
        how = "cached"
        if (
            entry is None
            or entry.get("widths") != widths
            or entry.get("settings") != settings
            or entry.get("signal") != importance
        ):
            started = time.perf_counter()
            entry = {
                "widths": widths,
                "signal": importance,
                "settings": settings,
                "score": candidates.score(widths, importance),
                "flops": candidates.graph.flops(widths),
                "params": candidates.graph.params(widths),
            }
            how = f"{time.perf_counter() - started:.1f} s"
        logger.info("baseline %s at %s: score %.4f (%s)", name, budget.text, entry["score"], how)
        baselines[name] = entry
        if reporter is not None:
            reporter.work_step(i)
    cache[budget.slug] = baselines
    return baselines


def _perturbations(
    ratios: dict[str, float], n: int, seed: int, lo: float
) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {k: min(1.0, max(lo, v * math.exp(rng.gauss(0, 0.3)))) for k, v in ratios.items()}
        for _ in range(n)
    ]


def seed_trials(
    candidates: Candidates, budget: Budget, target: int, trials: int, seed: int
) -> list[tuple[str, dict[str, float]]]:
    """The first trials, each with what it starts from: the signal's threshold allocation, the
    global allocation, uniform ratios, then perturbations of the global allocation."""
    graph, s = candidates.graph, candidates.space.search
    comparable = comparable_scores(graph.model, graph.groups, candidates.signal)
    allocation = threshold_ratios(graph, comparable, budget.kind, target, s.min_ratio)
    scores = comparable or comparable_scores(graph.model, graph.groups, "l1")
    global_alloc = global_ratios(graph, scores, budget.kind, target, s.min_ratio)
    ratios = [
        (f"{candidates.signal} threshold", allocation),
        ("global", global_alloc),
        ("uniform", {g.name: 1.0 for g in graph.groups}),
    ]
    ratios += [
        (f"global, perturbed ({k + 1})", r)
        for k, r in enumerate(
            _perturbations(global_alloc, min(8, max(0, trials // 4)), seed, s.min_ratio)
        )
    ]
    out: list[tuple[str, dict[str, float]]] = []
    for name, r in ratios:
        params = candidates.param.params(r)
        if all(params != p for _, p in out):
            out.append((name, params))
    return out
