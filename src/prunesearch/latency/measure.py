"""Measured latency: how long a model's forward pass takes on this device, as an engineer times it.

:func:`time_calls` is the clock work (warm-up calls, then timed repeats, each closed by a device
synchronisation on CUDA, stopped early past a time cap once enough repeats are in);
:func:`measure` times a model's inference on a batch of one size in one memory format with a
stated thread count and returns a :class:`Latency` (every repeat kept, median and spread
derived); :func:`spec_latency` measures a spec and its base model side by side, at batch 1 and at
a throughput batch, in both memory formats: what ``prunesearch show --latency`` and an export's
model card report.

The model runs in eval mode under ``torch.inference_mode``, in float32, with the batch made once
before timing (input creation is not timed). Channels-last here is the plain
``model.to(memory_format=torch.channels_last)`` a deployment would use: the oneDNN guard of
:mod:`prunesearch.device` concerns training (backward) only.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from prunesearch.device import resolve_device
from prunesearch.errors import PrunesearchError
from prunesearch.vocab import MEMORY_FORMATS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from prunesearch.latency.reference import SpeedReference
    from prunesearch.spec import ArchSpec

__all__ = [
    "FORMATS",
    "MAX_BATCH",
    "STATISTICS",
    "Latency",
    "Timing",
    "latency_table",
    "measure",
    "spec_latency",
    "threads",
    "time_calls",
]

FORMATS = MEMORY_FORMATS
WARMUP = 10
REPEATS = 30
MAX_SECONDS = 10.0  # per measurement; repeats stop early past it (at least MIN_REPEATS)
MIN_REPEATS = 5
THROUGHPUT_BATCH = 64
MAX_BATCH = 1024  # a batch is made in memory: an absurd --latency-batch is refused, not tried


def _median_of_scaled_rounds(medians: Sequence[float], factors: Sequence[float]) -> float:
    return statistics.median(m / f for m, f in zip(medians, factors, strict=True))


def _fastest_round(medians: Sequence[float], factors: Sequence[float]) -> float:
    return min(medians)


def _median(medians: Sequence[float], factors: Sequence[float]) -> float:
    return medians[0]


# what a measurement's steady time keeps of its rounds' medians (seconds per batch): the record
# of a measurement names its statistic by these keys, so record and computation cannot diverge
STATISTICS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "median of the rounds' medians, each divided by the speed reference's factor": (
        _median_of_scaled_rounds
    ),
    "fastest round's median": _fastest_round,
    "median": _median,
}


@dataclass(frozen=True)
class Timing:
    """How a latency is measured: the one protocol that :func:`measure` takes and that every
    record of a measurement (latency tables, specs, model cards) carries via :meth:`to_dict`.

    Attributes:
        warmup: untimed calls first (later rounds: at most 3).
        repeats: timed calls per round.
        max_seconds: a round stops once its timed calls took this long and at least
            ``MIN_REPEATS`` are in (None: always ``repeats``).
        rounds: timing windows, ``gap_seconds`` apart (idle).
        reference: a :class:`prunesearch.latency.reference.SpeedReference` read around each
            round, which scales it to the machine's sustained speed.
        clock, sleep: the time source and the idle wait (fakes in tests).
    """

    warmup: int = WARMUP
    repeats: int = REPEATS
    max_seconds: float | None = MAX_SECONDS
    rounds: int = 1
    gap_seconds: float = 0.0
    reference: SpeedReference | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False, compare=False)
    sleep: Callable[[float], Any] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise PrunesearchError(
                f"latency: repeats must be >= 1 and warm-up >= 0, got {self.repeats} and "
                f"{self.warmup}"
            )
        if self.rounds < 1:
            raise PrunesearchError(f"latency: rounds must be >= 1, got {self.rounds}")

    @property
    def statistic(self) -> str:
        """What the steady time keeps of the rounds (a key of :data:`STATISTICS`)."""
        if self.reference is not None:
            return "median of the rounds' medians, each divided by the speed reference's factor"
        return "fastest round's median" if self.rounds > 1 else "median"

    def to_dict(self) -> dict[str, Any]:
        """The protocol as a record: its settings, the statistic, and the method in words."""
        scaled = " scaled to the machine's sustained speed," if self.reference else ""
        return {
            "warmup": self.warmup,
            "repeats": self.repeats,
            "max_seconds": self.max_seconds,
            "rounds": self.rounds,
            "gap_seconds": self.gap_seconds,
            "speed_reference": self.reference is not None,
            "statistic": self.statistic,
            "method": f"per image: {self.rounds} round(s) of up to {self.repeats} timed forward "
            f"passes after {self.warmup} warm-up calls, {self.gap_seconds} s apart,{scaled} "
            f"the {self.statistic} kept (prunesearch.latency.measure.measure)",
        }


@dataclass(frozen=True)
class Latency:
    """One latency measurement: the seconds of every timed forward pass of a ``batch``-image
    batch (``samples``), and how they were taken."""

    batch: int
    samples: tuple[float, ...]
    warmup: int
    threads: int
    device: str
    memory_format: str
    round_medians: tuple[float, ...] = ()  # seconds per batch, one per round (``rounds``)
    speed_factors: tuple[float, ...] = ()  # per round: how much slower the machine ran
    statistic: str = "median"  # what steady_ms keeps of the rounds: a key of STATISTICS

    def _per_image_ms(self, q: float) -> float:
        s = sorted(self.samples)
        # linear interpolation between order statistics (numpy's default quantile)
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return 1e3 * (s[lo] + (s[hi] - s[lo]) * (pos - lo)) / self.batch

    @property
    def median_ms(self) -> float:
        """Median milliseconds per image (the batch's time divided by its size)."""
        return 1e3 * statistics.median(self.samples) / self.batch

    @property
    def steady_ms(self) -> float:
        """Milliseconds per image at the machine's sustained speed (a virtual machine here runs
        1.5x slower for seconds at a time, BENCHMARKS.md), by the measurement's ``statistic``
        (:data:`STATISTICS`): with a speed reference, each round's median divided by how much
        slower a reference workload ran around it, the median of those; without one, the
        fastest round's median; with one round, the median.

        The median, not the fastest, of the scaled rounds: a reference reading is itself noisy
        (one 2.6x factor among 1.5s on a loaded machine), and the fastest of five ratios picks
        exactly such an outlier (a spec predicted at 0.93 ms read 0.59 ms)."""
        medians = self.round_medians or (statistics.median(self.samples),)
        return 1e3 * STATISTICS[self.statistic](medians, self.speed_factors) / self.batch

    @property
    def iqr_ms(self) -> tuple[float, float]:
        """The 25th and 75th percentiles of milliseconds per image: the spread over repeats."""
        return self._per_image_ms(0.25), self._per_image_ms(0.75)

    def to_dict(self) -> dict[str, Any]:
        q1, q3 = self.iqr_ms
        return asdict(self) | {
            "samples": list(self.samples),
            "repeats": len(self.samples),
            "median_ms_per_image": round(self.median_ms, 5),
            "iqr_ms_per_image": [round(q1, 5), round(q3, 5)],
            "min_ms_per_image": round(1e3 * min(self.samples) / self.batch, 5),
        }


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    max_seconds: float | None = MAX_SECONDS,
    min_repeats: int = MIN_REPEATS,
    sync: Callable[[], Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    Args:
        sync: called before each clock reading (``torch.cuda.synchronize`` on CUDA, where
            kernels run asynchronously).
        max_seconds: stop once the timed calls have taken this long and at least
            ``min_repeats`` are in (None: always ``repeats``).
        clock: the time source (a fake clock in tests).
    """
    if repeats < 1 or warmup < 0:
        raise PrunesearchError(
            f"latency: repeats must be >= 1 and warm-up >= 0, got {repeats} and {warmup}"
        )
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        samples.append(clock() - start)
        spent += samples[-1]
        if max_seconds is not None and spent > max_seconds and len(samples) >= min_repeats:
            break
    return samples


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """torch's intra-op thread count set to ``n`` for the block (None: left as it is); yields
    the count in effect."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise PrunesearchError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def measure(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: int = 1,
    device: str | torch.device = "cpu",
    n_threads: int | None = None,
    channels_last: bool = False,
    timing: Timing | None = None,
) -> Latency:
    """Times ``model``'s inference on a ``batch`` x ``input_shape`` batch by ``timing``'s
    protocol (default :class:`Timing`: one round of 30 repeats after 10 warm-up calls).

    The model is copied (the caller's stays where it is, in its mode), put in eval mode on
    ``device`` in the memory format asked for, and run under ``torch.inference_mode``.
    """
    import torch

    timing = timing or Timing()
    if not 1 <= batch <= MAX_BATCH:
        raise PrunesearchError(f"latency: batch must be in 1..{MAX_BATCH}, got {batch}")
    dev = resolve_device(device) if isinstance(device, str) else device
    memory = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).eval().to(device=dev, memory_format=memory)
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    x = x.to(dev).contiguous(memory_format=memory)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    with threads(n_threads) as n, torch.inference_mode():
        per_round, factors = _rounds(lambda: net(x), timing, sync)
    return Latency(
        batch=batch,
        samples=tuple(t for s in per_round for t in s),
        warmup=timing.warmup,
        threads=n,
        device=str(dev),
        memory_format=FORMATS[channels_last],
        round_medians=tuple(statistics.median(s) for s in per_round)
        if timing.rounds > 1 or timing.reference
        else (),
        speed_factors=tuple(factors),
        statistic=timing.statistic,
    )


def _rounds(
    fn: Callable[[], Any], timing: Timing, sync: Callable[[], Any] | None
) -> tuple[list[list[float]], list[float]]:
    """Each round's samples, and each round's speed factor (with a reference)."""
    reference = timing.reference
    per_round, factors = [], []
    for r in range(timing.rounds):
        if r:
            timing.sleep(timing.gap_seconds)
        before = reference.factor() if reference else 1.0
        per_round.append(
            time_calls(
                fn,
                warmup=timing.warmup if r == 0 else min(timing.warmup, 3),
                repeats=timing.repeats,
                max_seconds=timing.max_seconds,
                sync=sync,
                clock=timing.clock,
            )
        )
        if reference:
            factors.append((before + reference.factor()) / 2)
    return per_round, factors


def spec_latency(
    spec: ArchSpec,
    *,
    batches: Sequence[int] = (1, THROUGHPUT_BATCH),
    formats: Sequence[str] = FORMATS,
    device: str = "cpu",
    n_threads: int | None = None,
    timing: Timing | None = None,
    model: nn.Module | None = None,
    with_base: bool = True,
) -> dict[str, Any]:
    """A spec's latency and its base model's, per memory format and batch size, as data.

    ``model``: the spec's network when the caller has it (trained weights: the same time as
    fresh ones); else it is built from the spec. Measurements of the two models alternate
    (spec, base, spec, base...) so that a drift of the machine's load hits both.
    ``with_base=False``: the spec alone (when it is the base).

    Returns:
        ``{"device", "threads", "torch", "warmup", "repeats", "batches", "rows": [{"model":
        "spec"|"base", "memory_format", "batch", ...Latency.to_dict()}], "speedup": {format:
        {batch: base median / spec median}}}``.
    """
    import torch

    from prunesearch.spec import ArchSpec, build

    timing = timing or Timing()
    if not batches or not formats or not 1 <= min(batches) <= max(batches) <= MAX_BATCH:
        raise PrunesearchError(
            f"latency: batch sizes must be in 1..{MAX_BATCH}, got {list(batches)}"
        )
    for f in formats:
        if f not in FORMATS:
            raise PrunesearchError(
                f"latency: memory format must be one of {', '.join(FORMATS)}, got {f!r}"
            )
    models = {"spec": model if model is not None else build(spec)}
    if with_base:
        base = ArchSpec.from_graph(spec.graph(), {}, model=spec.model, model_args=spec.model_args)
        base.allow_import = spec.allow_import  # the same code, imported under the same permit
        models["base"] = build(base)
    dev = resolve_device(device)
    rows = []
    for fmt in formats:
        for batch in batches:
            for name, net in models.items():
                lat = measure(
                    net,
                    spec.input_shape,
                    batch=batch,
                    device=dev,
                    n_threads=n_threads,
                    channels_last=fmt == "channels-last",
                    timing=timing,
                )
                rows.append({"model": name} | lat.to_dict())
    speedup: dict[str, dict[str, float]] = {}
    for fmt in formats if with_base else ():
        for batch in batches:
            pick = {
                r["model"]: r["median_ms_per_image"]
                for r in rows
                if r["memory_format"] == fmt and r["batch"] == batch
            }
            speedup.setdefault(fmt, {})[str(batch)] = round(pick["base"] / pick["spec"], 3)
    return {
        "device": str(dev),
        "threads": rows[0]["threads"],
        "torch": torch.__version__,
        "warmup": timing.warmup,
        "repeats": timing.repeats,
        "timing": timing.to_dict(),
        "batches": list(batches),
        "formats": list(formats),
        "flops": spec.flops,
        "base_flops": spec.base_flops,
        "rows": rows,
        "speedup": speedup,
    }


def _ms(row: dict[str, Any]) -> str:
    q1, q3 = row["iqr_ms_per_image"]
    return f"{row['median_ms_per_image']:.3f} ({q1:.3f}-{q3:.3f})"


def latency_table(latency: dict[str, Any]) -> list[list[str]]:
    """Rows (model, memory format, then per batch: median ms/image (IQR)) of a
    :func:`spec_latency` result, for tables in Markdown and the CLI."""
    rows = []
    for fmt in latency["formats"]:
        for name in ("spec", "base"):
            cells = {
                r["batch"]: _ms(r)
                for r in latency["rows"]
                if r["model"] == name and r["memory_format"] == fmt
            }
            if cells:
                rows.append([name, fmt, *(cells[b] for b in latency["batches"])])
    return rows
