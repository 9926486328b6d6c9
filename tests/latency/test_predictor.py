"""The latency model: tables, interpolation, the whole-network fit and the cache, on a fake
device whose time is a known function of the work (a real clock would make these tests
flaky; the real measurement is exercised in benchmarks/latency_model.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import prunesearch as ps
from prunesearch.latency.measure import Latency
from prunesearch.latency.predictor import TableBuild, grid_axis, latency_model

from ..helpers import random_widths


def _macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions and linear layers in one forward pass, plus one per
    element a BatchNorm writes (counted with hooks: fast enough for every grid cell)."""
    total = 0

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Linear):
            total += out.shape[0] * m.in_features * m.out_features
        elif isinstance(m, nn.modules.conv._ConvNd):
            total += out.numel() * math.prod(m.kernel_size) * m.in_channels // m.groups
        else:
            total += out.numel()

    kinds = (nn.Linear, nn.modules.conv._ConvNd, nn.BatchNorm2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


class FakeDevice:
    """Seconds = per-call overhead + MACs at a fixed speed (+ a surcharge on whole networks,
    which the fit must absorb); counts its calls."""

    def __init__(
        self,
        overhead: float = 20e-6,
        per_mac: float = 1e-12,
        network_surcharge: float = 1.3,
        network_constant: float = 50e-6,
    ) -> None:
        self.overhead, self.per_mac, self.surcharge = overhead, per_mac, network_surcharge
        self.constant = network_constant
        self.calls = 0

    def seconds(self, model: nn.Module, shape: tuple[int, ...]) -> float:
        whole = not isinstance(model, nn.Linear | nn.modules.conv._ConvNd)
        t = self.overhead + self.per_mac * _macs(model, shape)
        return t * self.surcharge + self.constant if whole else t

    def __call__(
        self,
        model,
        input_shape,
        *,
        batch=1,
        device="cpu",
        n_threads=None,
        channels_last=False,
        timing=None,
    ):
        self.calls += 1
        t = self.seconds(model, (batch, *input_shape))
        return Latency(
            batch=batch,
            samples=(t, t),
            warmup=timing.warmup if timing else 0,
            threads=1,
            device="cpu",
            memory_format="channels-last" if channels_last else "nchw",
        )


@pytest.fixture(scope="module")
def graph():
    return ps.trace(
        ps.create_model("resnet20", num_classes=4, in_channels=3), torch.zeros(1, 3, 16, 16)
    )


def test_grid_axis_holds_both_sides_of_each_block_edge():
    assert grid_axis(1, 64) == [1, 8, 9, 16, 17, 24, 25, 32, 33, 40, 41, 48, 49, 56, 57, 64]
    assert grid_axis(6, 20) == [6, 8, 9, 16, 17, 20]
    assert grid_axis(4, 64, step=4)[:4] == [4, 8, 12, 16]  # whole conv groups only
    wide = grid_axis(52, 512)
    assert wide[0] == 52 and wide[-1] == 512 and {96, 256, 288, 480} <= set(wide)


def test_prediction_matches_the_device_at_random_widths(graph, tmp_path):
    fake = FakeDevice()
    model = latency_model(graph, build=TableBuild(tmp_path, 8, measure_fn=fake))
    errors = []
    for seed in range(8):
        widths = random_widths(graph, seed)
        truth = fake.seconds(graph.prune(widths), (1, 3, 16, 16)) * 1e9
        errors.append(abs(model(widths) - truth) / truth)
    # bilinear tables reproduce a time bilinear in the channel counts exactly; what the fit
    # leaves is the elementwise ops, which the fake charges for BatchNorm only
    assert float(np.median(errors)) < 0.02 and max(errors) < 0.05
    assert model.fit["layers"] == pytest.approx(1.3, rel=0.05)  # the network surcharge
    assert model() > model({g.name: max(1, g.size // 4) for g in graph.groups})


def test_per_image_time_at_a_larger_batch(graph, tmp_path):
    fake = FakeDevice()
    one = latency_model(graph, build=TableBuild(tmp_path, 4, measure_fn=fake))
    eight = latency_model(graph, batch=8, build=TableBuild(tmp_path, 4, measure_fn=fake))
    assert eight.key.batch == 8 and eight.key != one.key
    # the overheads are shared by a batch's images: per image, the batch of 8 is cheaper
    assert eight() < one()


def test_the_cache_is_reused_and_rebuilt_when_its_key_changes(graph, tmp_path):
    fake = FakeDevice()
    first = latency_model(graph, build=TableBuild(tmp_path, 4, measure_fn=fake))
    built = fake.calls
    assert built > 0 and len(list(tmp_path.glob("*.json"))) == 1
    again = latency_model(graph, build=TableBuild(tmp_path, 4, measure_fn=fake))
    assert fake.calls == built and again() == first()  # read, not measured
    cached = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert cached["key"]["threads"] == torch.get_num_threads()
    assert cached["key"]["torch"] == torch.__version__
    other = latency_model(
        graph, build=TableBuild(tmp_path, 4, measure_fn=fake), memory_format="channels-last"
    )
    assert fake.calls > built and other.key.memory_format == "channels-last"
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_bad_settings_are_errors(graph, tmp_path):
    with pytest.raises(ps.PrunesearchError, match="memory format must be one of"):
        latency_model(graph, build=TableBuild(tmp_path), memory_format="nhwc")
    with pytest.raises(ps.PrunesearchError, match="--latency-batch must be >= 1"):
        latency_model(graph, build=TableBuild(tmp_path), batch=0)
