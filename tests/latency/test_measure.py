"""Latency measurement: the clock work with a fake clock (exact), the measurement of real tiny
models (what it records, not how fast they are), and ``show --latency``."""

import json
import statistics

import pytest
import torch
from torch import nn

import prunesearch as ps
from prunesearch.errors import PrunesearchError
from prunesearch.latency.measure import (
    Latency,
    Timing,
    latency_table,
    measure,
    spec_latency,
    threads,
    time_calls,
)

from ..helpers import run_cli


class FakeClock:
    """Advances by the next of ``steps`` seconds on every call to the timed function."""

    def __init__(self, steps):
        self.now, self.steps, self.calls = 0.0, list(steps), 0

    def __call__(self):
        return self.now

    def work(self):
        self.calls += 1
        self.now += self.steps.pop(0) if self.steps else 1.0


def test_time_calls_warms_up_then_times_each_call():
    clock = FakeClock([9.0, 9.0, 0.010, 0.030, 0.020])  # two warm-up calls, then three timed
    samples = time_calls(clock.work, warmup=2, repeats=3, max_seconds=None, clock=clock)
    assert samples == pytest.approx([0.010, 0.030, 0.020])
    assert clock.calls == 5


def test_time_calls_stops_past_the_time_cap_once_enough_repeats_are_in():
    clock = FakeClock([2.0] * 10)
    samples = time_calls(
        clock.work, warmup=0, repeats=10, max_seconds=5.0, min_repeats=4, clock=clock
    )
    assert len(samples) == 4  # 6 s after 3 calls, but 4 are required
    clock = FakeClock([2.0] * 10)
    assert (
        len(
            time_calls(
                clock.work, warmup=0, repeats=10, max_seconds=5.0, min_repeats=2, clock=clock
            )
        )
        == 3
    )


def test_time_calls_syncs_before_each_reading():
    events = []
    time_calls(
        lambda: events.append("call"),
        warmup=1,
        repeats=2,
        max_seconds=None,
        sync=lambda: events.append("sync"),
    )
    assert events == ["call", "sync", "call", "sync", "call", "sync"]


def test_latency_median_and_spread_are_per_image():
    lat = Latency(
        batch=4,
        samples=(0.004, 0.008, 0.012, 0.016, 0.400),
        warmup=1,
        threads=1,
        device="cpu",
        memory_format="nchw",
    )
    assert lat.median_ms == pytest.approx(3.0)  # 12 ms for 4 images
    assert lat.iqr_ms == pytest.approx((2.0, 4.0))  # 8 and 16 ms per batch
    d = lat.to_dict()
    assert d["repeats"] == 5 and d["median_ms_per_image"] == pytest.approx(3.0)
    assert d["min_ms_per_image"] == pytest.approx(1.0)


def test_rounds_keep_the_fastest_rounds_median():
    """A machine that runs slow for a while: the steady figure is the fast rounds' median."""
    # 3 rounds, each of 1 warm-up call and 3 timed calls
    clock = FakeClock(
        [1.0, 0.020, 0.020, 0.021, 1.0, 0.010, 0.011, 0.010, 1.0, 0.030, 0.030, 0.031]
    )

    class Tick(nn.Module):  # its forward pass takes the fake clock's next step
        def forward(self, x):
            clock.work()
            return x

        def __deepcopy__(self, memo):  # measure times a copy: the same clock
            return self

    slept = []
    timing = Timing(
        warmup=1,
        repeats=3,
        max_seconds=None,
        clock=clock,
        rounds=3,
        gap_seconds=0.5,
        sleep=slept.append,
    )
    lat = measure(Tick(), (2,), timing=timing)
    assert slept == [0.5, 0.5]
    assert lat.round_medians == pytest.approx((0.020, 0.010, 0.030))
    assert lat.steady_ms == pytest.approx(10.0) and lat.median_ms == pytest.approx(20.0)
    assert len(lat.samples) == 9
    one = Latency(
        batch=1, samples=(0.004, 0.006), warmup=0, threads=1, device="cpu", memory_format="nchw"
    )
    assert one.steady_ms == one.median_ms  # a single round: the plain median
    with pytest.raises(PrunesearchError, match="rounds must be >= 1"):
        measure(nn.Linear(2, 2), (2,), timing=Timing(rounds=0))


class _Reference:
    """A speed reference whose readings are given."""

    def __init__(self, factors):
        self.factors = iter(factors)

    def factor(self):
        return next(self.factors)


@pytest.mark.parametrize("rounds, reference", [(1, False), (3, False), (3, True)])
def test_the_record_names_the_statistic_the_code_keeps(rounds, reference):
    """What a measurement's record says it kept is what ``steady_ms`` computed: the protocol
    names its statistic, and the statistic is looked up by that name (a latency-budget spec
    once said "the fastest round kept" while the code kept the median of the scaled rounds)."""
    clock = FakeClock([0.010, 0.030, 0.020] * 3)

    class Tick(nn.Module):
        def forward(self, x):
            clock.work()
            return x

        def __deepcopy__(self, memo):
            return self

    ref = _Reference([1.0, 1.0, 2.0, 2.0, 0.5, 0.5]) if reference else None
    timing = Timing(
        warmup=0, repeats=3, max_seconds=None, rounds=rounds, clock=clock, sleep=lambda s: None,
        reference=ref,
    )  # fmt: skip
    lat = measure(Tick(), (2,), timing=timing)
    record = timing.to_dict()
    assert record["statistic"] == lat.statistic and record["statistic"] in record["method"]
    medians = [statistics.median(lat.samples[3 * r : 3 * r + 3]) for r in range(rounds)]
    if reference:  # factors: the mean of the readings around each round
        expected = statistics.median(m / f for m, f in zip(medians, (1.0, 2.0, 0.5), strict=True))
        assert "median" in record["statistic"] and "speed reference" in record["statistic"]
    elif rounds > 1:
        expected = min(medians)
        assert record["statistic"].startswith("fastest")
    else:
        expected = medians[0]
        assert record["statistic"] == "median"
    assert lat.steady_ms == pytest.approx(1e3 * expected)


def test_scaled_rounds_keep_their_median_not_an_outlier():
    """Rounds scaled by a speed reference: the median of the scaled rounds, so that one noisy
    reference reading (2.6x among 1.5s) does not make the model look 40% faster."""
    lat = Latency(
        batch=1,
        samples=(0.0015,) * 5,
        warmup=0,
        threads=1,
        device="cpu",
        memory_format="nchw",
        round_medians=(0.00229, 0.00157, 0.00151, 0.00235, 0.00154),
        speed_factors=(1.53, 1.62, 2.56, 1.57, 1.47),
        statistic=Timing(reference=_Reference([])).statistic,
    )
    assert lat.steady_ms == pytest.approx(1.0476, abs=1e-3)  # 1.54 / 1.47, the middle ratio
    fastest = min(m / f for m, f in zip(lat.round_medians, lat.speed_factors, strict=True))
    assert 1e3 * fastest == pytest.approx(0.590, abs=1e-3)  # what the fastest ratio would say


def test_measure_times_a_copy_in_the_format_and_threads_asked_for():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = torch.get_num_threads()
    lat = measure(
        model,
        (3, 8, 8),
        batch=3,
        n_threads=1,
        channels_last=True,
        timing=Timing(warmup=1, repeats=4),
    )
    assert (lat.batch, lat.threads, lat.memory_format, lat.device) == (3, 1, "channels-last", "cpu")
    assert len(lat.samples) == 4 and min(lat.samples) > 0
    assert torch.get_num_threads() == n  # restored
    assert model.training  # the caller's model is left as it was (BN statistics too)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[0].weight.is_contiguous()


def test_bad_latency_settings_are_errors():
    with pytest.raises(PrunesearchError, match="threads"), threads(0):
        pass
    with pytest.raises(PrunesearchError, match="repeats"):
        time_calls(lambda: None, repeats=0)
    for batch in (0, 10**9):
        with pytest.raises(PrunesearchError, match=r"batch must be in 1\.\.1024"):
            measure(nn.Linear(2, 2), (2,), batch=batch)


@pytest.fixture(scope="module")
def half_spec():
    graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 8, 8))
    return ps.ArchSpec.from_graph(
        graph,
        {g.name: max(1, g.size // 2) for g in graph.groups},
        model="resnet20",
        model_args={"num_classes": 4},
    )


def test_spec_latency_measures_spec_and_base_per_format_and_batch(half_spec):
    result = spec_latency(
        half_spec, batches=(1, 4), n_threads=1, timing=Timing(warmup=1, repeats=2)
    )
    keys = sorted((r["model"], r["memory_format"], r["batch"]) for r in result["rows"])
    assert keys == sorted(
        (m, f, b) for m in ("spec", "base") for f in ("nchw", "channels-last") for b in (1, 4)
    )
    assert result["threads"] == 1 and result["device"] == "cpu"
    for fmt in ("nchw", "channels-last"):
        for b in (1, 4):
            row = {
                r["model"]: r
                for r in result["rows"]
                if r["memory_format"] == fmt and r["batch"] == b
            }
            assert result["speedup"][fmt][str(b)] == pytest.approx(
                row["base"]["median_ms_per_image"] / row["spec"]["median_ms_per_image"], rel=2e-3
            )
    assert len(latency_table(result)) == 4
    alone = spec_latency(
        half_spec,
        batches=(2,),
        formats=("nchw",),
        timing=Timing(warmup=0, repeats=1),
        with_base=False,
    )
    assert [r["model"] for r in alone["rows"]] == ["spec"] and alone["speedup"] == {}


def test_show_latency_from_the_cli(half_spec, tmp_path):
    path = half_spec.save(tmp_path / "half.json")
    proc = run_cli(
        "show",
        path,
        "--latency",
        "--latency-batch",
        "2",
        "--threads",
        "1",
        "--repeats",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "latency on cpu, 1 thread(s)" in proc.stdout and "base / spec time" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["latency"]["batches"] == [1, 2] and len(summary["latency"]["rows"]) == 8
    assert summary["flops"] == half_spec.flops
    bad = run_cli("show", path, "--latency", "--threads", "0")
    assert bad.returncode == 2 and bad.stderr == "error: --threads must be >= 1, got 0\n"
