"""What a search varies: the parameters of keep ratios, per ``search.granularity``.

* ``group``: one keep ratio per prunable group (``r:<group>``).
* ``stage``: one per stage, the groups of a spatial resolution sharing it (``r:s<k>``).
* ``profile``: a low-dimensional, depth-aware family (RegNet-style) that few trials can cover.
  The keep ratio of the residual streams is a monotone function of depth ``t`` in [0, 1]
  (the group's position in forward order): ``r(t) = start + (end - start) * t ** shape``, and
  block-inner groups (one producer; a stream has several, summed) keep ``inner * r(t)``.
  Networks without residual streams (VGG) have no ``inner`` parameter.

Every candidate is projected onto the budget afterwards (``budget.project``), so only the
*shape* of the ratios matters: the overall scale is set by the budget.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

import optuna

from prunesearch.engine.graph import ChannelGraph
from prunesearch.vocab import GRANULARITIES, require

__all__ = ["GRANULARITIES", "Parameterization"]

SHAPE_RANGE = (0.5, 2.0)  # exponent of the depth profile (1: linear)
INNER_RANGE = (0.25, 2.0)  # block-inner width relative to the stream at the same depth


class Parameterization:
    """Maps search parameters to keep ratios per group, and back (to seed trials)."""

    def __init__(self, graph: ChannelGraph, granularity: str, min_ratio: float) -> None:
        require("granularity", granularity, GRANULARITIES)
        self.granularity, self.min_ratio = granularity, min_ratio
        self.groups = [g.name for g in graph.groups]
        self.stage_of = {g: f"s{i}" for g, i in graph.stages().items()}
        n = len(self.groups)
        self.depth = {name: i / (n - 1) if n > 1 else 0.0 for i, name in enumerate(self.groups)}
        self.is_stream = {g.name: len(g.producers) > 1 for g in graph.groups}
        self.has_inner = any(self.is_stream.values()) and not all(self.is_stream.values())

    @property
    def names(self) -> list[str]:
        """The search parameters, in a fixed order."""
        if self.granularity == "group":
            return [f"r:{g}" for g in self.groups]
        if self.granularity == "stage":
            return sorted(set(f"r:{s}" for s in self.stage_of.values()))
        return ["p:start", "p:end", "p:shape"] + (["p:inner"] if self.has_inner else [])

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        lo = self.min_ratio
        if self.granularity != "profile":
            return {n: trial.suggest_float(n, lo, 1.0) for n in self.names}
        params = {
            "p:start": trial.suggest_float("p:start", lo, 1.0),
            "p:end": trial.suggest_float("p:end", lo, 1.0),
            "p:shape": trial.suggest_float("p:shape", *SHAPE_RANGE, log=True),
        }
        if self.has_inner:
            params["p:inner"] = trial.suggest_float("p:inner", *INNER_RANGE, log=True)
        return params

    def ratios(self, params: Mapping[str, float]) -> dict[str, float]:
        """Keep ratio per group (clipped to [min_ratio, 1]) of a parameter set."""
        if self.granularity == "group":
            raw = {g: params[f"r:{g}"] for g in self.groups}
        elif self.granularity == "stage":
            raw = {g: params[f"r:{self.stage_of[g]}"] for g in self.groups}
        else:
            start, end, shape = params["p:start"], params["p:end"], params["p:shape"]
            inner = params.get("p:inner", 1.0)
            raw = {}
            for g in self.groups:
                r = start + (end - start) * self.depth[g] ** shape
                raw[g] = r if self.is_stream[g] or not self.has_inner else r * inner
        return {g: min(1.0, max(self.min_ratio, r)) for g, r in raw.items()}

    def params(self, ratios: Mapping[str, float]) -> dict[str, float]:
        """The parameters closest to ``ratios`` (missing groups: 1): exact for ``group``,
        stage means for ``stage``, a least-squares depth line for ``profile``."""
        lo = self.min_ratio
        r = {g: min(1.0, max(lo, float(ratios.get(g, 1.0)))) for g in self.groups}
        if self.granularity == "group":
            return {f"r:{g}": v for g, v in r.items()}
        if self.granularity == "stage":
            by_stage: dict[str, list[float]] = {}
            for g, v in r.items():
                by_stage.setdefault(f"r:{self.stage_of[g]}", []).append(v)
            return {k: statistics.fmean(v) for k, v in sorted(by_stage.items())}
        line_groups = [g for g in self.groups if self.is_stream[g] or not self.has_inner]
        a, b = _fit_line([self.depth[g] for g in line_groups], [r[g] for g in line_groups])
        clip = lambda v, lo_, hi_: min(hi_, max(lo_, v))  # noqa: E731
        params = {"p:start": clip(a, lo, 1.0), "p:end": clip(a + b, lo, 1.0), "p:shape": 1.0}
        if self.has_inner:
            inner = [
                r[g] / max(lo, a + b * self.depth[g]) for g in self.groups if not self.is_stream[g]
            ]
            params["p:inner"] = clip(
                math.exp(statistics.fmean(math.log(v) for v in inner)), *INNER_RANGE
            )
        return params


def _fit_line(t: list[float], r: list[float]) -> tuple[float, float]:
    """Least-squares ``r = a + b * t`` (a flat line through the mean when t is constant)."""
    mt, mr = statistics.fmean(t), statistics.fmean(r)
    stt = sum((x - mt) ** 2 for x in t)
    if stt == 0:
        return mr, 0.0
    b = sum((x - mt) * (y - mr) for x, y in zip(t, r, strict=True)) / stt
    return mr - b * mt, b
