import math

import pytest

from prunesearch.experiments.stats import (
    bootstrap,
    headroom,
    kendall_tau,
    paired_difference,
    spearman_rho,
    t_quantile,
)


def test_rank_correlations_of_known_orders():
    x = [1, 2, 3, 4, 5]
    assert kendall_tau(x, [10, 20, 30, 40, 50]) == 1
    assert kendall_tau(x, [5, 4, 3, 2, 1]) == -1
    assert spearman_rho(x, [1, 4, 9, 16, 25]) == pytest.approx(1)
    # one swapped adjacent pair of 4: 5 concordant, 1 discordant
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_ties_are_accounted_for():
    # tau-b with a tie in y: (C - D) / sqrt((n0 - n1)(n0 - n2)) = 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau([1, 2, 3], [7, 7, 7]))
    assert math.isnan(spearman_rho([1, 2, 3], [7, 7, 7]))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    import random

    rng = random.Random(0)
    small = [rng.random() for _ in range(10)]
    large = [rng.random() for _ in range(200)]
    noisy = lambda xs: [x + rng.gauss(0, 0.3) for x in xs]  # noqa: E731
    a, b = bootstrap(kendall_tau, small, noisy(small)), bootstrap(kendall_tau, large, noisy(large))
    for iv in (a, b):
        assert iv.low <= iv.value <= iv.high
    assert (b.high - b.low) < (a.high - a.low)
    assert b.excludes_zero()


def test_t_quantiles_match_tables():
    for df, q in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)):
        assert t_quantile(df) == pytest.approx(q, abs=1e-3)


def test_paired_difference_interval():
    d = paired_difference([0.80, 0.81, 0.79, 0.82], [0.79, 0.80, 0.79, 0.80])
    diffs = [0.01, 0.01, 0.0, 0.02]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 3)
    assert d.value == pytest.approx(mean)
    assert d.high - d.value == pytest.approx(t_quantile(3) * sd / 2)
    assert d.excludes_zero() is False or d.low > 0
    one = paired_difference([1.0], [0.5])
    assert one.value == 0.5 and one.low == -math.inf and not one.excludes_zero()
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def _table(arch_sd, seed_sd, n=40, k=4, seed_luck=3.0, rng_seed=1):
    """accuracy[arch][seed] = 80 + arch effect + a large shared seed effect + noise."""
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    arch = rng.normal(0, arch_sd, n)[:, None]
    luck = rng.normal(0, seed_luck, k)[None, :]
    return (80 + arch + luck + rng.normal(0, seed_sd, (n, k))).tolist()


def test_headroom_recovers_known_variance_components():
    h = headroom(_table(arch_sd=1.0, seed_sd=0.5))
    # the shared seed luck (sd 3) is removed, not mistaken for noise or for architecture
    assert h.seed_sd == pytest.approx(0.5, rel=0.15)
    assert h.arch_sd.low < 1.0 < h.arch_sd.high and h.arch_sd.value == pytest.approx(1, rel=0.3)
    assert h.arch_sd.low > 0.5
    assert h.reliability == pytest.approx(1 / (1 + 0.25 / 4), abs=0.08)
    # one arch sd apart with seed noise 0.5: (1.96 * sqrt(2) * 0.5 / 1)^2 ~ 1.9 seeds
    assert 1 < h.seeds_to_resolve() < 4


def test_headroom_is_none_when_seeds_explain_the_spread():
    h = headroom(_table(arch_sd=0.0, seed_sd=0.7))
    assert h.arch_sd.value < 0.25 and h.arch_sd.low == 0
    assert h.seeds_to_resolve(0.1) > 100
    with pytest.raises(ValueError):
        headroom([[1.0, 2.0], [1.0, 2.0]])  # fewer than 3 architectures
