import math

import pytest

from prunesearch.stats import bootstrap, kendall_tau, paired_difference, spearman_rho, t_quantile


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
