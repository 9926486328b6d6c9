"""Budgets: parse ``50%FLOPs`` / ``2.2Mparams`` / ``4ms`` / ``25%,50%,75%FLOPs``, and project keep
ratios onto a budget.

Projection: the widths of keep ratios ``r`` scaled by ``s``, ``w_g = round_to_multiple(clip(r_g
* s, min_ratio, 1) * size_g)``, grow monotonically with ``s``; bisection finds the largest ``s``
whose cost fits the target, then a greedy pass adds channels (``round_to`` at a time, or whole
conv/norm groups where a group has a step) to the groups furthest below their scaled ratio while
the cost still fits. The analytic cost model makes
each step about 10 us, so a projection costs a few milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunesearch.errors import PrunesearchError, shown
from prunesearch.vocab import BUDGET_KINDS, require

if TYPE_CHECKING:  # torch is imported where used: parse_budgets runs before the CLI loads it
    import torch

    from prunesearch.engine.graph import ChannelGraph, ChannelGroup

__all__ = [
    "Budget",
    "allocate",
    "amount",
    "cost",
    "global_ratios",
    "parse_budgets",
    "project",
    "threshold_ratios",
]

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_TIME_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "µs": 10**3}  # to nanoseconds
_SUFFIX = dict(zip(BUDGET_KINDS, ("FLOPs", "params", "latency"), strict=True))
_ITEM = re.compile(
    r"^\s*(?P<num>[+-]?\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*(?P<pct>%)?"
    r"\s*(?:(?P<time>ms|us|µs|s)|(?P<unit>[kmgt])?\s*(?P<kind>flops|params|latency)?)"
    r"\s*$",
    re.IGNORECASE,
)
ON_BUDGET = 0.99  # a candidate's cost lies in [ON_BUDGET * target, target]
EXAMPLES = "50%FLOPs, 30%params, 20MFLOPs, 1.5GFLOPs, 2.2Mparams, 4ms, 50%latency"


@dataclass(frozen=True)
class Budget:
    """A cost limit: ``kind`` (flops, params or latency), ``value`` (a fraction of the base
    model when ``relative``, else an absolute count; latency in nanoseconds per image), and
    the ``text`` it was parsed from."""

    kind: str
    value: float
    relative: bool
    text: str

    def target(self, base_cost: int) -> int:
        """The limit in the kind's unit, given the base model's cost of that kind."""
        return math.floor(self.value * base_cost) if self.relative else int(self.value)

    @property
    def slug(self) -> str:
        """A file-name-safe form, e.g. ``50pct-flops``, ``20M-flops`` or ``4ms-latency``."""
        if self.relative:
            num = f"{self.value * 100:g}pct"
        elif self.kind == "latency":
            num = next(
                f"{self.value / s:g}{u}"
                for u, s in (("s", 1e9), ("ms", 1e6), ("us", 1e3), ("ns", 1))
                if self.value >= s or u == "ns"
            )
        else:
            num = next(
                f"{self.value / s:g}{u.upper()}"
                for u, s in sorted(_UNITS.items(), key=lambda kv: -kv[1])
                if self.value >= s or not u
            )
        return f"{num}-{self.kind}"


def _kind_of(m: re.Match) -> str | None:
    if m["time"]:
        return "latency"
    return m["kind"].lower() if m["kind"] else None


def parse_budgets(text: str) -> list[Budget]:
    """Parses one budget or a comma-separated family; the last item's unit applies to all.

    Raises:
        PrunesearchError: naming the offending item and the accepted forms.
    """
    if not isinstance(text, str) or not text.strip():
        raise PrunesearchError(f"budget is empty; e.g. {EXAMPLES}, 25%,50%,75%FLOPs")
    items = text.split(",")
    parsed = []
    for item in items:
        m = _ITEM.match(item)
        if not m:
            raise PrunesearchError(
                f"budget {shown(item.strip())} not understood; use e.g. {EXAMPLES}"
            )
        parsed.append(m)
    kinds = {_kind_of(m) for m in parsed} - {None}
    if not kinds:
        raise PrunesearchError(
            f"budget {shown(text)} names no unit: end it with FLOPs, params, latency or a time (ms)"
        )
    if len(kinds) > 1:
        raise PrunesearchError(
            f"budget {shown(text)} mixes {' and '.join(_SUFFIX[k] for k in sorted(kinds))}"
        )
    kind = require("budget kind", kinds.pop(), BUDGET_KINDS)
    last_time = next((m["time"] for m in reversed(parsed) if m["time"]), None)
    budgets = [_budget(item, m, kind, last_time) for item, m in zip(items, parsed, strict=True)]
    slugs = [b.slug for b in budgets]
    twice = next((s for s in slugs if slugs.count(s) > 1), None)
    if twice is not None:  # one study and one spec file per slug: they must differ
        raise PrunesearchError(
            f"budget {text!r} lists the same budget twice (or two too close "
            f"to tell apart: both would be {twice})"
        )
    return budgets


def _budget(item: str, m: re.Match, kind: str, last_time: str | None) -> Budget:
    """One item of a budget family, ``kind`` and (for latency) the family's time unit given."""
    value = float(m["num"])
    item = item.strip()
    if not _kind_of(m):  # "25%" in "25%,50%FLOPs", "2" in "2,4ms"
        item += last_time if (kind == "latency" and not m["pct"]) else _SUFFIX[kind]
    if m["pct"]:
        if m["unit"] or m["time"]:
            raise PrunesearchError(
                f"budget {shown(item)}: a percentage takes no K/M/G or "
                f"time unit: write 50%{_SUFFIX[kind]}"
            )
        if not 0 < value <= 100:
            raise PrunesearchError(f"budget {shown(item)}: a percentage must be in (0, 100]")
        return Budget(kind, value / 100, True, item)
    if kind == "latency":
        if not m["time"] and not last_time:
            raise PrunesearchError(
                f"budget {shown(item)}: a latency is a percentage (50%latency) or a time (4ms)"
            )
        value *= _TIME_UNITS[(m["time"] or last_time).lower()]
        if value < 1:
            raise PrunesearchError(f"budget {shown(item)}: a latency must be positive")
    else:
        value *= _UNITS[(m["unit"] or "").lower()]
        if value < 1:
            raise PrunesearchError(f"budget {shown(item)}: must be positive")
    if not math.isfinite(value) or value >= 1e18:  # no model comes near
        raise PrunesearchError(f"budget {shown(item)}: too large to be a model's cost")
    return Budget(kind, value, False, item)


def _round_width(x: float, size: int, quantum: int, floor: int) -> int:
    w = math.floor(x / quantum + 1e-9) * quantum
    return max(floor, min(size, w))


def quantum(group: ChannelGroup, round_to: int) -> int:
    """The width increment of a group: ``round_to``, and whole conv/norm groups where the
    group has a step (its size is always a multiple of its step, so it stays reachable)."""
    return math.lcm(round_to, group.step)


def amount(value: int, kind: str) -> str:
    """A cost in words: ``1,234,567 flops``, or ``1.235 ms per image`` (latency, from ns)."""
    return f"{value / 1e6:.3f} ms per image" if kind == "latency" else f"{value:,} {kind}"


def cost(graph: ChannelGraph, kind: str, widths: Mapping[str, int] | None = None) -> int:
    """What a budget of ``kind`` limits, for the graph pruned to ``widths``: FLOPs, parameters,
    or another cost model attached to the graph (``graph.cost_models["latency"]``: predicted
    nanoseconds per image).

    Raises:
        PrunesearchError: no cost model of that kind is attached.
    """
    if kind == "flops":
        return graph.flops(widths)
    if kind == "params":
        return graph.params(widths)
    model = graph.cost_models.get(kind)
    if model is None:
        raise PrunesearchError(
            f"a {kind} budget needs a {kind} model of this graph "
            "(prunesearch builds one for find; see latency_model)"
        )
    return model(widths)


def min_widths(graph: ChannelGraph, min_ratio: float, round_to: int) -> dict[str, int]:
    """The narrowest widths allowed: ``min_ratio`` of each group, rounded up to ``round_to``
    (and to whole conv/norm groups)."""
    out = {}
    for g in graph.groups:
        q = quantum(g, round_to)
        w = math.ceil(min_ratio * g.size / q - 1e-9) * q
        out[g.name] = max(g.step, min(g.size, w))
    return out


def project(
    graph: ChannelGraph,
    ratios: Mapping[str, float],
    kind: str,
    target: int,
    *,
    min_ratio: float = 0.1,
    round_to: int = 1,
) -> dict[str, int]:
    """Widths shaped like ``ratios`` (keep ratio per group) whose cost is at most ``target`` and
    as close to it as the ``round_to`` granularity allows.

    Raises:
        PrunesearchError: even the narrowest widths (``min_ratio``) exceed the target.
    """
    floors = min_widths(graph, min_ratio, round_to)
    if cost(graph, kind, floors) > target:
        raise PrunesearchError(
            f"budget unreachable: the narrowest widths the space allows (min_ratio {min_ratio}) "
            f"cost {amount(cost(graph, kind, floors), kind)}, above the target "
            f"{amount(target, kind)}"
        )
    groups = graph.groups
    r = {g.name: max(min_ratio, min(1.0, float(ratios.get(g.name, 1.0)))) for g in groups}

    def widths_at(s: float) -> dict[str, int]:
        return {
            g.name: _round_width(
                min(1.0, max(min_ratio, r[g.name] * s)) * g.size,
                g.size,
                quantum(g, round_to),
                floors[g.name],
            )
            for g in groups
        }

    lo, hi = 0.0, max(1.0 / v for v in r.values())
    if cost(graph, kind, widths_at(hi)) <= target:
        return widths_at(hi)
    for _ in range(50):
        mid = (lo + hi) / 2
        if cost(graph, kind, widths_at(mid)) <= target:
            lo = mid
        else:
            hi = mid
    widths = widths_at(lo)
    # greedy fill: add round_to channels to the groups furthest below their scaled ratio
    desired = {g.name: min(1.0, max(min_ratio, r[g.name] * hi)) * g.size for g in groups}
    blocked: set[str] = set()
    while True:
        open_groups = [g for g in groups if g.name not in blocked and widths[g.name] < g.size]
        if not open_groups:
            return widths
        g = max(open_groups, key=lambda g: (desired[g.name] - widths[g.name]) / g.size)
        trial = dict(widths)
        trial[g.name] = min(g.size, widths[g.name] + quantum(g, round_to))
        if cost(graph, kind, trial) <= target:
            widths = trial
        else:
            blocked.add(g.name)


def threshold_ratios(
    graph: ChannelGraph, scores: dict[str, torch.Tensor], kind: str, target: int, min_ratio: float
) -> dict[str, float]:
    """Network slimming's single global threshold on comparable scores, set at the budget:
    keep ratios of the channels above the highest threshold whose widths fit ``target``."""
    import torch

    values = torch.cat(list(scores.values())).sort().values
    mean_ratio = 1.0

    def ratios_at(t: float) -> dict[str, float]:
        r = {name: max(min_ratio, (s >= t).double().mean().item()) for name, s in scores.items()}
        fill = sum(r.values()) / len(r) if r else mean_ratio
        return {g.name: r.get(g.name, fill) for g in graph.groups}  # groups without BN: mean

    def cost_of(r: dict[str, float]) -> int:
        return cost(graph, kind, {g.name: g.nearest(r[g.name] * g.size) for g in graph.groups})

    lo, hi = 0, len(values) - 1  # a low index keeps more channels
    while lo < hi:
        mid = (lo + hi) // 2
        if cost_of(ratios_at(values[mid].item())) <= target:
            hi = mid
        else:
            lo = mid + 1
    return ratios_at(values[lo].item())


def global_ratios(
    graph: ChannelGraph, scores: dict[str, torch.Tensor], kind: str, target: int, min_ratio: float
) -> dict[str, float]:
    """The ``global`` baseline: each group's scores divided by the group's mean, then one
    global threshold set at the budget (Torch-Pruning's global pruning with mean
    normalisation). A channel survives when it matters more than its group's average by a
    margin shared by all groups, so no group is starved because its scale is small."""
    normalized = {name: s / s.mean().clamp_min(1e-12) for name, s in scores.items()}
    return threshold_ratios(graph, normalized, kind, target, min_ratio)


def allocate(
    graph: ChannelGraph,
    budget: str,
    signal: str = "l1",
    *,
    min_ratio: float = 0.1,
    round_to: int = 1,
) -> dict[str, int]:
    """Widths that fit ``budget`` (e.g. ``"50%FLOPs"``), allocated by a signal: one global
    threshold on the signal's comparable scores (network slimming's rule), projected onto the
    budget. A quick architecture without a search; ``prunesearch find`` searches around it.
    """
    from prunesearch.engine.importance import comparable_scores

    budgets = parse_budgets(budget)
    if len(budgets) != 1:
        raise PrunesearchError(f"budget {budget!r}: one budget, not a family")
    b = budgets[0]
    target = b.target(cost(graph, b.kind))
    scores = comparable_scores(graph.model, graph.groups, signal)
    ratios = threshold_ratios(graph, scores, b.kind, target, min_ratio) if scores else {}
    return project(graph, ratios, b.kind, target, min_ratio=min_ratio, round_to=round_to)
