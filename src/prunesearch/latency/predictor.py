"""A latency model the search can evaluate in microseconds, like ``graph.flops``.

NetAdapt's approach, with a calibration on whole networks:

* every convolution and linear layer of the traced model is timed **alone**, on this device, in
  this memory format, at this batch size and thread count, over a grid of its input and output
  channel counts (both sides of every 8-channel block edge up to 64 channels, ``8k`` and
  ``8k + 1``, then every 16 and 32 channels: oneDNN's blocked layouts make time a step function
  of the channel count in channels-last); layers of the same kind, kernel, stride and input
  size share one table;
* between grid points time is interpolated (bilinearly in input and output channels);
* everything else (BatchNorm, activations, residual sums, pooling) is summed as tensor elements;
* ``latency = a + b * sum(layer tables) + c * elements``: three numbers fitted by least squares
  on whole pruned networks measured at random widths (the base and the narrowest included), so
  that what the parts do not see (per-op dispatch, the order of ops, caches) is absorbed.

The tables and the fit are measured once per machine and cached on disk, keyed by the device,
its thread count, the memory format, the batch, torch's version and the model's layers
(:func:`latency_model`); a changed key builds a new one. Predictions are integer nanoseconds
(per batch), so that budgets, projection and constraints treat latency as they treat FLOPs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_json, read_json

if TYPE_CHECKING:
    from torch import nn

    from prunesearch.engine.graph import ChannelGraph, OpChannels
    from prunesearch.latency.measure import Timing
    from prunesearch.latency.reference import SpeedReference
    from prunesearch.progress import Reporter

__all__ = [
    "LatencyKey",
    "LatencyModel",
    "TableBuild",
    "cache_folder",
    "grid_axis",
    "latency_key",
    "latency_model",
    "speed_reference",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4  # 3: scaled to the sustained speed by a warmed reference (speed.py);
#                    4: the median of the scaled passes, not the fastest
CALIBRATION_MODELS = 16
CELL_REPEATS = 20  # timed calls per grid cell (median taken), after a short warm-up
MODEL_REPEATS = 30  # timed calls per calibration network
# every cell and network is timed in PASSES passes over the whole table, each timing scaled to
# the machine's sustained speed by the speed reference, and the median pass kept: this
# machine's speed drops 1.5x for seconds at a time (BENCHMARKS.md), and a reference reading is
# itself noisy, so the fastest of the scaled passes would keep the one whose factor was an outlier
PASSES = 3


def grid_axis(lo: int, hi: int, step: int = 1) -> list[int]:
    """Channel counts timed between ``lo`` and ``hi`` (both included): both sides of every
    8-channel SIMD block edge up to 64 (where a step is a large share of the time), then every
    16 channels to 256 and every 32 beyond; multiples of ``step`` only (a grouped
    convolution's channels come in whole groups)."""
    small = {e for edge in range(8, 65, 8) for e in (edge, edge + 1)}
    points = {lo, hi} | small | {*range(80, 257, 16), *range(288, hi + 1, 32)}
    points = {-(-p // step) * step for p in points}  # up to a whole number of groups
    return sorted(p for p in points if lo <= p <= hi) or [hi]


@dataclass(frozen=True)
class LatencyKey:
    """What a latency model is valid for; part of its cache file's name."""

    device: str  # e.g. "cpu:Intel(R) Xeon(R) ...:AVX512", "cuda:NVIDIA H100"
    threads: int
    memory_format: str  # nchw | channels-last
    batch: int
    torch: str

    def digest(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Layer:
    """A layer whose time is looked up: its table's signature and its channel functions."""

    table: str
    cin: tuple[int, np.ndarray]
    cout: tuple[int, np.ndarray]


def _signature(op: OpChannels) -> tuple[str, dict[str, Any]] | None:
    """(table name, how to build and feed the layer) of a conv or linear op, else None."""
    from torch import nn

    m = op.module
    spatial = op.in_shapes[0][2:] if op.in_shapes else ()
    if isinstance(m, nn.modules.conv._ConvNd) and type(m).forward in {
        c.__dict__.get("forward") for c in type(m).__mro__
    }:
        depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        spec = {
            "kind": "dwconv" if depthwise else "conv",
            "dims": len(m.kernel_size),
            "kernel": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
            "groups": 0 if depthwise else m.groups,
            "bias": m.bias is not None,
            "spatial": list(spatial),
        }
    elif isinstance(m, nn.Linear) and len(op.in_shapes[0]) == 2:
        spec = {"kind": "linear", "bias": m.bias is not None}
    else:
        return None
    return json.dumps(spec, sort_keys=True), spec


def _make_layer(
    spec: dict[str, Any], cin: int, cout: int, batch: int
) -> tuple[nn.Module, tuple[int, ...]]:
    """A fresh layer of ``spec`` with these channel counts, and its input's shape."""
    from torch import nn

    if spec["kind"] == "linear":
        return nn.Linear(cin, cout, bias=spec["bias"]), (batch, cin)
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spec["dims"]]
    if spec["kind"] == "dwconv":
        cout, groups = cin, cin
    else:
        groups = spec["groups"]
    layer = conv(
        cin,
        cout,
        spec["kernel"],
        stride=spec["stride"],
        padding=spec["padding"],
        dilation=spec["dilation"],
        groups=groups,
        bias=spec["bias"],
    )
    return layer, (batch, cin, *spec["spatial"])


class LatencyModel:
    """Predicted forward latency of a graph's model pruned to any widths, at ``key.batch``
    images per pass; built and cached by :func:`latency_model`."""

    def __init__(
        self,
        graph: ChannelGraph,
        key: LatencyKey,
        tables: dict[str, dict],
        fit: dict[str, float],
        build_seconds: float,
    ) -> None:
        self.key, self.tables, self.fit = key, tables, fit
        self.build_seconds = build_seconds
        self._graph = graph
        layers, self._elements = _structure(graph)
        self._lookup = _Lookup(tables, layers, len(graph.groups))

    def parts(self, widths: np.ndarray) -> tuple[float, float]:
        """(sum of the layers' table times in ns, elements of the other ops) at a widths
        vector: the two measured quantities the fit combines."""
        return self._lookup(widths), float(_size(self._elements, widths))

    def predict(self, widths: np.ndarray) -> float:
        """Predicted nanoseconds of one forward pass of a batch, at a widths vector."""
        layers, elements = self.parts(widths)
        f = self.fit
        return f["intercept"] + f["layers"] * layers + f["elements"] * elements

    def __call__(self, widths: Mapping[str, int] | None = None) -> int:
        """Predicted nanoseconds per image at ``widths`` (missing groups: whole): a batch's
        time divided by its size, as budgets and ``show --latency`` state it."""
        return max(1, round(self.predict(self._graph.widths_vector(widths)) / self.key.batch))


def _size(linear: tuple[int, np.ndarray], widths: np.ndarray) -> int:
    return int(linear[0] + linear[1] @ widths)


def _dense(t: dict[str, Any]) -> np.ndarray:
    """A table's bilinear interpolation evaluated at every integer channel count from 0 to
    its grid's largest (clamped outside the grid): [cin, cout] -> ns."""
    cin, cout = np.asarray(t["cin"], dtype=float), np.asarray(t["cout"], dtype=float)
    ns = np.asarray(t["ns"], dtype=float)
    cols = np.arange(int(cout[-1]) + 1, dtype=float)
    rows = np.arange(int(cin[-1]) + 1, dtype=float)
    along_out = np.stack([np.interp(cols, cout, r) for r in ns])  # [grid cin, every cout]
    return np.stack([np.interp(rows, cin, along_out[:, j]) for j in range(len(cols))], axis=1)


class _Lookup:
    """Every looked-up layer's table time at once: the dense tables laid end to end, each
    layer an offset into them, its channel counts ``const + coef @ widths``."""

    def __init__(self, tables: dict[str, dict], layers: list[_Layer], n_groups: int) -> None:
        dense = {name: _dense(t) for name, t in tables.items()}
        offsets, flat, at = {}, [], 0
        for name, d in dense.items():
            offsets[name] = at
            flat.append(d.ravel())
            at += d.size
        self.flat = np.concatenate(flat) if flat else np.zeros(1)
        self.offset = np.asarray([offsets[lay.table] for lay in layers], dtype=np.int64)
        self.stride = np.asarray([dense[lay.table].shape[1] for lay in layers], dtype=np.int64)
        self.in_max = np.asarray([dense[lay.table].shape[0] - 1 for lay in layers])
        self.out_max = self.stride - 1
        self.in_const = np.asarray([lay.cin[0] for lay in layers], dtype=np.int64)
        self.out_const = np.asarray([lay.cout[0] for lay in layers], dtype=np.int64)
        self.in_coef = np.asarray([lay.cin[1] for lay in layers], dtype=np.int64).reshape(
            -1, n_groups
        )
        self.out_coef = np.asarray([lay.cout[1] for lay in layers], dtype=np.int64).reshape(
            -1, n_groups
        )

    def __call__(self, widths: np.ndarray) -> float:
        cin = np.minimum(self.in_const + self.in_coef @ widths, self.in_max)
        cout = np.minimum(self.out_const + self.out_coef @ widths, self.out_max)
        return float(self.flat[self.offset + cin * self.stride + cout].sum())


def _structure(graph: ChannelGraph) -> tuple[list[_Layer], tuple[int, np.ndarray]]:
    """The looked-up layers, and the other ops' output elements as one linear function."""
    layers: list[_Layer] = []
    const, coef = 0, np.zeros(len(graph.groups), dtype=np.int64)
    for op in graph.ops():
        sig = _signature(op)
        if sig is not None and op.inputs:
            layers.append(_Layer(sig[0], op.inputs[0], op.out))
            continue
        per_channel = math.prod(op.shape[2:]) if len(op.shape) > 2 else 1
        const += op.out[0] * per_channel
        coef = coef + op.out[1] * per_channel
    return layers, (const, coef)


def _ranges(
    graph: ChannelGraph, min_widths: np.ndarray
) -> dict[str, tuple[dict[str, Any], tuple[int, int], tuple[int, int], int]]:
    """Per table: its layer spec and the input/output channel ranges its layers can take."""
    base = graph.widths_vector(None)
    out: dict[str, Any] = {}
    for op in graph.ops():
        sig = _signature(op)
        if sig is None or not op.inputs:
            continue
        name, spec = sig
        cin = (_size(op.inputs[0], min_widths), _size(op.inputs[0], base))
        cout = (_size(op.out, min_widths), _size(op.out, base))
        step = spec["groups"] if spec["kind"] == "conv" and spec["groups"] > 1 else 1
        if name in out:
            _, (a, b), (c, d), _ = out[name]
            cin, cout = (min(a, cin[0]), max(b, cin[1])), (min(c, cout[0]), max(d, cout[1]))
        out[name] = (spec, cin, cout, step)
    return out


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu:{cpu}:{torch.backends.cpu.get_cpu_capability()}"


def latency_key(device: str, threads: int, memory_format: str, batch: int) -> LatencyKey:
    import torch

    return LatencyKey(_device_name(device), threads, memory_format, batch, torch.__version__)


def _fingerprint(graph: ChannelGraph) -> str:
    """The model's layers and groups: what the tables and the fit were measured for."""
    ops = [(op.name, type(op.module).__name__, list(op.shape)) for op in graph.ops()]
    groups = [(g.name, g.size) for g in graph.groups]
    return hashlib.sha256(json.dumps([ops, groups]).encode()).hexdigest()[:12]


def _time_layer(
    spec: dict[str, Any], cin: int, cout: int, key: LatencyKey, measure_fn: Callable[..., Any]
) -> float:
    """Median nanoseconds of one forward of a fresh layer (cin -> cout)."""
    from prunesearch.latency.measure import Timing

    layer, shape = _make_layer(spec, cin, cout, key.batch)
    lat = measure_fn(
        layer,
        shape[1:],
        batch=key.batch,
        channels_last=(key.memory_format == "channels-last" and len(shape) == 4),
        timing=Timing(repeats=CELL_REPEATS, warmup=3, max_seconds=0.5),
    )
    return lat.steady_ms * key.batch * 1e6


def _random_widths(graph: ChannelGraph, rng: np.random.Generator, floors: np.ndarray) -> np.ndarray:
    base = graph.widths_vector(None)
    r = rng.uniform(0, 1, len(base))
    return np.maximum(floors, np.round(floors + r * (base - floors))).astype(np.int64)


def _calibrate(
    model: LatencyModel,
    graph: ChannelGraph,
    key: LatencyKey,
    floors: np.ndarray,
    measure_fn: Callable[..., Any],
    n: int,
    seed: int,
    step: Callable[[], None],
) -> dict[str, float]:
    """Fits ``intercept + layers * table sum + elements * elements`` to whole networks."""
    from prunesearch.latency.measure import Timing

    rng = np.random.default_rng(seed)
    base = graph.widths_vector(None)
    vectors = [base, floors] + [_random_widths(graph, rng, floors) for _ in range(n - 2)]
    names = [g.name for g in graph.groups]
    nets = [graph.prune(dict(zip(names, map(int, vec), strict=True))) for vec in vectors]
    y = np.zeros((PASSES, len(nets)))
    for k in range(PASSES):  # each network's median pass: passes lie seconds apart
        for i, net in enumerate(nets):
            lat = measure_fn(
                net,
                tuple(_sample_shape(graph)),
                batch=key.batch,
                channels_last=key.memory_format == "channels-last",
                timing=Timing(repeats=MODEL_REPEATS, warmup=5, max_seconds=2.0),
            )
            y[k, i] = lat.steady_ms * key.batch * 1e6
            step()
    rows = [(1.0, *model.parts(vec)) for vec in vectors]
    return _fit(np.asarray(rows), np.median(y, axis=0))


def _fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares with non-negative slopes (a column whose slope comes out negative is
    dropped and the rest refitted)."""
    cols = [0, 1, 2]
    while True:
        coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
        bad = [c for c, v in zip(cols, coef, strict=True) if c and v < 0]
        if not bad:
            break
        cols.remove(bad[0])
    full = dict.fromkeys((0, 1, 2), 0.0) | dict(zip(cols, map(float, coef), strict=True))
    pred = x @ np.asarray([full[0], full[1], full[2]])
    rel = np.abs(pred - y) / y
    return {
        "intercept": full[0],
        "layers": full[1],
        "elements": full[2],
        "median_rel_error": float(np.median(rel)),
        "max_rel_error": float(rel.max()),
        "networks": len(y),
    }


def _sample_shape(graph: ChannelGraph) -> tuple[int, ...]:
    x = graph.example_input
    if not hasattr(x, "shape"):
        raise PrunesearchError("latency budgets need a model with one input tensor")
    return tuple(x.shape[1:])


def speed_reference(key: LatencyKey, folder: Path | None = None) -> SpeedReference:
    """The speed reference of ``key``'s device, threads and torch, its record kept beside the
    latency tables (``speed.json``)."""
    from prunesearch.latency.reference import SpeedReference

    return SpeedReference(
        f"{key.device}|{key.threads} threads|torch {key.torch}",
        (folder or cache_folder()) / "speed.json",
    )


def _time_tables(
    plan: dict[str, tuple[dict[str, Any], list[int], list[int]]],
    key: LatencyKey,
    measure_fn: Callable[..., Any],
    step: Callable[[], None],
) -> dict[str, dict[str, Any]]:
    """Each layer's table: nanoseconds on its (cin, cout) grid, the median of ``PASSES``
    passes that lie seconds apart."""
    tables = {
        name: {
            "spec": spec,
            "cin": cin_axis,
            "cout": cout_axis,
            "ns": np.zeros((PASSES, len(cin_axis), len(cout_axis))),
        }
        for name, (spec, cin_axis, cout_axis) in plan.items()
    }
    for k in range(PASSES):
        for t in tables.values():
            for i, cin in enumerate(t["cin"]):
                for j, cout in enumerate(t["cout"]):
                    t["ns"][k, i, j] = _time_layer(t["spec"], cin, cout, key, measure_fn)
                    step()
    for t in tables.values():
        t["ns"] = np.median(t["ns"], axis=0).tolist()
    return tables


def cache_folder() -> Path:
    """Where latency tables are kept: ``$PRUNESEARCH_CACHE/latency``, else
    ``~/.cache/prunesearch/latency``."""
    root = os.environ.get("PRUNESEARCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "prunesearch") / "latency"


@dataclass(frozen=True)
class TableBuild:
    """How a latency model is built and kept.

    Attributes:
        cache_dir: where tables live (default :func:`cache_folder`).
        calibration: whole networks measured for the fit.
        seed: of the calibration networks' random widths.
        measure_fn: :func:`prunesearch.latency.measure.measure` (tests pass a fake device).
    """

    cache_dir: str | Path | None = None
    calibration: int = CALIBRATION_MODELS
    seed: int = 0
    measure_fn: Callable[..., Any] | None = None


def latency_model(
    graph: ChannelGraph,
    *,
    batch: int = 1,
    device: str = "cpu",
    threads: int | None = None,
    memory_format: str = "nchw",
    min_ratio: float = 0.1,
    reporter: Reporter | None = None,
    build: TableBuild | None = None,
) -> LatencyModel:
    """The latency model of ``graph``'s model on this machine, from the cache or built.

    Args:
        batch: images per forward pass (budgets like ``4ms`` are per image at batch 1).
        threads: torch's intra-op threads while timing (None: as set now).
        memory_format: ``nchw`` or ``channels-last``.
        min_ratio: the narrowest keep ratio the search may use (the tables cover it).
        build: where the tables are cached and how they are measured.
    """

    from prunesearch.latency.measure import FORMATS, measure
    from prunesearch.latency.measure import threads as thread_count

    if memory_format not in FORMATS:
        raise PrunesearchError(
            f"memory format must be one of {', '.join(FORMATS)}, got {memory_format!r}"
        )
    if batch < 1:
        raise PrunesearchError(f"--latency-batch must be >= 1, got {batch}")
    build = build or TableBuild()
    measure_fn = build.measure_fn or measure
    with thread_count(threads) as n:
        key = latency_key(device, n, memory_format, batch)
        folder = Path(build.cache_dir) if build.cache_dir else cache_folder()
        path = folder / f"{_fingerprint(graph)}-{key.digest()}.json"
        if path.is_file():
            cached = read_json(path, "latency table")
            if cached.get("format") == FORMAT_VERSION and cached.get("key") == key.__dict__:
                logger.info("latency model: reusing %s", path)
                return LatencyModel(
                    graph, key, cached["tables"], cached["fit"], cached["build_seconds"]
                )
        reference = speed_reference(key, folder)

        def timed(*args: Any, timing: Timing, **kwargs: Any) -> Any:  # at the sustained speed
            timing = dataclasses.replace(timing, reference=reference)
            return measure_fn(*args, device=device, timing=timing, **kwargs)

        build = dataclasses.replace(build, measure_fn=timed)
        return _build(graph, key, path, min_ratio, build, reporter)


def _build(
    graph: ChannelGraph,
    key: LatencyKey,
    path: Path,
    min_ratio: float,
    build: TableBuild,
    reporter: Reporter | None,
) -> LatencyModel:
    from prunesearch.engine.budget import min_widths

    measure_fn, calibration = build.measure_fn, build.calibration
    start = time.perf_counter()
    floors_map = min_widths(graph, min_ratio, 1)
    floors = np.asarray([floors_map[g.name] for g in graph.groups], dtype=np.int64)
    plan = {
        name: (
            spec,
            grid_axis(*cin, step),
            grid_axis(*cout, step) if spec["kind"] != "dwconv" else [0],
        )
        for name, (spec, cin, cout, step) in _ranges(graph, floors).items()
    }
    total = PASSES * (sum(len(a) * len(b) for _, a, b in plan.values()) + max(3, calibration))
    done = 0
    if reporter:
        reporter.work_start(
            f"latency table ({key.memory_format}, batch {key.batch}, {key.threads} threads)", total
        )

    def step() -> None:
        nonlocal done
        done += 1
        if reporter:
            reporter.work_step(done)

    tables = _time_tables(plan, key, measure_fn, step)
    model = LatencyModel(
        graph, key, tables, {"intercept": 0.0, "layers": 1.0, "elements": 0.0}, 0.0
    )
    fit = _calibrate(model, graph, key, floors, measure_fn, max(3, calibration), build.seed, step)
    if reporter:
        reporter.close()
    seconds = time.perf_counter() - start
    atomic_write_json(
        path,
        {
            "format": FORMAT_VERSION,
            "key": key.__dict__,
            "tables": tables,
            "fit": fit,
            "build_seconds": seconds,
        },
    )
    logger.info(
        "latency model built in %.1f s (fit on %d networks: median error %.1f%%, "
        "worst %.1f%%) -> %s",
        seconds,
        fit["networks"],
        100 * fit["median_rel_error"],
        100 * fit["max_rel_error"],
        path,
    )
    return LatencyModel(graph, key, tables, fit, seconds)
