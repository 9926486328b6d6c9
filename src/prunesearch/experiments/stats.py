"""Statistics for accuracy claims: rank correlations with bootstrap intervals, paired differences.

Accuracy differences between architectures are tenths of a point and seed noise is about as
large, so every claim here is paired (the same seeds for every row) and carries a 95% interval.
Pure Python and numpy: no scipy at run time.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Headroom",
    "Interval",
    "bootstrap",
    "headroom",
    "kendall_tau",
    "paired_difference",
    "spearman_rho",
    "t_quantile",
]


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval (``low``..``high``); ``n`` observations."""

    value: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence are accounted for); nan if undefined.

    Over all pairs at once with numpy: the bootstrap calls it thousands of times."""
    n = len(x)
    if n != len(y):
        raise ValueError("x and y differ in length")
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    upper = np.triu_indices(n, 1)
    dx = np.sign(a[:, None] - a[None, :])[upper]
    dy = np.sign(b[:, None] - b[None, :])[upper]
    both = dx * dy
    concordant, discordant = int((both > 0).sum()), int((both < 0).sum())
    ties_x, ties_y = int(((dx == 0) & (dy != 0)).sum()), int(((dy == 0) & (dx != 0)).sum())
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the ranks; nan if a sequence is constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def bootstrap(
    stat: Callable[[Sequence[float], Sequence[float]], float],
    x: Sequence[float],
    y: Sequence[float],
    *,
    reps: int = 2000,
    seed: int = 0,
) -> Interval:
    """``stat(x, y)`` with a percentile bootstrap 95% interval over resampled pairs."""
    value = stat(x, y)
    rng = random.Random(seed)
    n = len(x)
    samples = []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        s = stat([x[i] for i in idx], [y[i] for i in idx])
        if not math.isnan(s):
            samples.append(s)
    if not samples:
        return Interval(value, math.nan, math.nan, n)
    samples.sort()
    low = samples[int(0.025 * (len(samples) - 1))]
    high = samples[math.ceil(0.975 * (len(samples) - 1))]
    return Interval(value, low, high, n)


def t_quantile(df: int, p: float = 0.975) -> float:
    """Student-t quantile (by bisection on the regularised incomplete beta function)."""
    if df < 1:
        raise ValueError("df must be >= 1")

    def cdf(t: float) -> float:
        x = df / (df + t * t)
        tail = 0.5 * _betainc(df / 2, 0.5, x)
        return 1 - tail if t > 0 else tail

    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by Lentz's continued fraction."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    )
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-14:
            break
    return math.exp(log_front) * f / a


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Mean of ``a[i] - b[i]`` (the same seed i) with a 95% t interval; a single pair has an
    infinite interval."""
    if len(a) != len(b) or not a:
        raise ValueError("paired samples must be non-empty and of equal length")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Interval(mean, -math.inf, math.inf, 1)
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Interval(mean, mean - half, mean + half, len(diffs))


@dataclass(frozen=True)
class Headroom:
    """How much architectures differ against how much seeds do (points of accuracy).

    From the two-way layout accuracy[arch, seed] = mean + arch effect + seed effect + noise
    (seeds paired across architectures, so a seed's common luck is removed):
    ``arch_sd``: the standard deviation of the architectures' true accuracies, with a bootstrap
    95% interval over architectures (0 when seeds explain all the spread); ``seed_sd``: one
    run's noise around its architecture's accuracy; ``reliability``: the share of the variance
    of a ``seeds``-seed mean that is architecture, not noise (the best rank correlation any
    objective can reach against that mean is about its square root).
    """

    arch_sd: Interval
    seed_sd: float
    seeds: int

    @property
    def reliability(self) -> float:
        a = self.arch_sd.value**2
        total = a + self.seed_sd**2 / self.seeds
        return a / total if total else math.nan

    def seeds_to_resolve(self, gap: float | None = None) -> float:
        """Paired seeds needed for a 95% interval of half-width ``gap`` (default: one
        ``arch_sd``) on the difference between two architectures."""
        gap = self.arch_sd.value if gap is None else gap
        return math.inf if gap <= 0 else (1.96 * math.sqrt(2) * self.seed_sd / gap) ** 2

    def to_dict(self) -> dict[str, object]:
        return {
            "arch_sd": self.arch_sd.to_dict(),
            "seed_sd": self.seed_sd,
            "seeds": self.seeds,
            "reliability": self.reliability,
            "seeds_to_resolve": self.seeds_to_resolve(),
        }


def _components(acc: np.ndarray) -> tuple[float, float]:
    """(between-architecture variance, residual variance) of an [arch, seed] table by the
    two-way ANOVA method of moments; the first clipped at 0."""
    n, k = acc.shape
    resid = acc - acc.mean(1, keepdims=True) - acc.mean(0, keepdims=True) + acc.mean()
    ms_resid = float((resid**2).sum()) / ((n - 1) * (k - 1))
    ms_arch = k * float(acc.mean(1).var(ddof=1))
    return max(0.0, (ms_arch - ms_resid) / k), ms_resid


def headroom(accuracy: Sequence[Sequence[float]], *, reps: int = 2000, seed: int = 0) -> Headroom:
    """Variance components of an [architecture][seed] accuracy table (at least 3
    architectures and 2 seeds, every row with the same seeds); see ``Headroom``."""
    acc = np.asarray(accuracy, dtype=float)
    if acc.ndim != 2 or acc.shape[0] < 3 or acc.shape[1] < 2:
        raise ValueError("headroom needs at least 3 architectures x 2 seeds")
    arch_var, resid_var = _components(acc)
    rng = np.random.default_rng(seed)
    samples = np.sort(
        [math.sqrt(_components(acc[rng.integers(0, len(acc), len(acc))])[0]) for _ in range(reps)]
    )
    low, high = samples[int(0.025 * (reps - 1))], samples[math.ceil(0.975 * (reps - 1))]
    return Headroom(
        Interval(math.sqrt(arch_var), float(low), float(high), len(acc)),
        math.sqrt(resid_var),
        acc.shape[1],
    )
