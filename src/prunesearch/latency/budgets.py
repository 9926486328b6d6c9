"""Latency budgets in the search (``--budget 4ms``, ``50%latency``).

* :func:`resolve_threads`: the space's ``search.latency_threads`` made concrete before any
  process changes torch's thread count (search workers train with one thread; the latency a
  budget means is the one measured with the space's count).
* :func:`attach_latency`: the space's latency models (one per memory format the space allows,
  built or read from the cache) attached to a graph, so that ``budget.cost(graph, "latency")``
  and every projection see predicted nanoseconds per image: under ``latency_format: auto`` a
  candidate's latency is that of the faster format, which is the one its spec records.
* :func:`measured_within`: truth over prediction. The architecture to export is timed for real
  (:func:`prunesearch.latency.measure.measure`, the method of ``show --latency``); when the
  prediction
  was optimistic, its keep ratios are projected again onto a target shrunk by the error, and
  timed again, until the measured latency meets the budget.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prunesearch.errors import PrunesearchError
from prunesearch.latency.measure import FORMATS, Timing, measure
from prunesearch.latency.predictor import (
    LatencyKey,
    LatencyModel,
    latency_key,
    latency_model,
    speed_reference,
)

if TYPE_CHECKING:
    from prunesearch.engine.graph import ChannelGraph
    from prunesearch.progress import Reporter
    from prunesearch.space import Space
    from prunesearch.spec import ArchSpec

__all__ = [
    "attach_latency",
    "base_latency",
    "fastest",
    "latency_record",
    "measured_within",
    "resolve_threads",
    "spec_ms",
    "study_qualifier",
    "timing",
]

logger = logging.getLogger(__name__)

REPROJECTIONS = 4  # tries to bring a measured latency under the budget before giving up
MARGIN = 0.98  # a re-projection aims this far under the budget: measurements jitter
# a measurement is the median of ROUNDS scaled medians taken GAP_SECONDS apart: this machine's
# speed drops 1.5x for seconds at a time (BENCHMARKS.md), which one window cannot tell from the
# model
ROUNDS, GAP_SECONDS = 5, 0.5


def resolve_threads(space: Space) -> Space:
    """The space with ``search.latency_threads`` 0 (torch's default) replaced by the count."""
    import torch

    if space.search.latency_threads:
        return space
    search = dataclasses.replace(space.search, latency_threads=torch.get_num_threads())
    return dataclasses.replace(space, search=search)


def study_qualifier(space: Space, device: str) -> str:
    """What a latency budget's milliseconds are of, as a study name's suffix: the device (its
    CPU model or GPU name, hashed), threads, batch, format and torch. A search resumed or joined
    with other settings opens its own study rather than mixing trials timed differently."""
    s = space.search
    key = _key(space, device, s.latency_format)
    return f"@{device}-{key.threads}t-b{s.latency_batch}-{s.latency_format}-{key.digest()[:6]}"


def _key(space: Space, device: str, fmt: str) -> LatencyKey:
    """The latency key of the space's settings (threads 0: torch's count now)."""
    import torch

    s = space.search
    return latency_key(device, s.latency_threads or torch.get_num_threads(), fmt, s.latency_batch)


def timing(space: Space, device: str, fmt: str) -> dict[str, Any]:
    """``measure`` settings of the space's latency: batch, threads, format, and the timing
    protocol (rounds scaled by a speed reference to the machine's sustained speed)."""
    s = space.search
    key = _key(space, device, fmt)
    return {
        "batch": s.latency_batch,
        "device": device,
        "n_threads": key.threads,
        "channels_last": fmt == "channels-last",
        "timing": Timing(rounds=ROUNDS, gap_seconds=GAP_SECONDS, reference=speed_reference(key)),
    }


def _formats(space: Space) -> tuple[str, ...]:
    fmt = space.search.latency_format
    return FORMATS if fmt == "auto" else (fmt,)


def attach_latency(
    graph: ChannelGraph, space: Space, *, device: str = "cpu", reporter: Reporter | None = None
) -> dict[str, LatencyModel]:
    """Builds (or reads from the cache) the space's latency models of ``graph`` and makes them
    its ``latency`` cost: predicted nanoseconds per image at ``search.latency_batch``."""
    s = space.search
    models = {
        fmt: latency_model(
            graph,
            batch=s.latency_batch,
            device=device,
            threads=s.latency_threads or None,
            memory_format=fmt,
            min_ratio=s.min_ratio,
            reporter=reporter,
        )
        for fmt in _formats(space)
    }

    def predicted(widths: Mapping[str, int] | None = None) -> int:
        return fastest(models, widths)[1]

    graph.cost_models["latency"] = predicted
    return models


def base_latency(graph: ChannelGraph, space: Space, *, device: str = "cpu") -> int:
    """The unpruned model's measured nanoseconds per image in its faster format: checks an
    absolute budget in a second, before any table is built."""
    times = []
    for fmt in _formats(space):
        settings = timing(space, device, fmt)
        settings["timing"] = dataclasses.replace(settings["timing"], max_seconds=1.0)
        lat = measure(graph.model, tuple(graph.example_input.shape[1:]), **settings)
        times.append(lat.steady_ms * 1e6)
    return round(min(times))


def spec_ms(spec: ArchSpec, space: Space, *, device: str = "cpu") -> dict[str, Any]:
    """A spec's measured milliseconds per image, in its faster allowed memory format, with the
    space's latency settings (compare's rows at a latency budget)."""
    from prunesearch.spec import build

    best: dict[str, Any] = {}
    for fmt in _formats(space):
        lat = measure(build(spec), tuple(spec.input_shape), **timing(space, device, fmt))
        if not best or lat.steady_ms < best["ms"]:
            best = {
                "ms": lat.steady_ms,
                "iqr_ms": list(lat.iqr_ms),
                "memory_format": fmt,
                "round_ms": [1e3 * m / lat.batch for m in lat.round_medians],
            }
    return best


def fastest(
    models: Mapping[str, LatencyModel], widths: Mapping[str, int] | None
) -> tuple[str, int]:
    """(memory format, predicted ns per image) of the faster format at ``widths``."""
    return min(((fmt, m(widths)) for fmt, m in models.items()), key=lambda p: p[1])


def latency_record(
    graph: ChannelGraph,
    models: Mapping[str, LatencyModel],
    widths: Mapping[str, int],
    target: int,
    space: Space,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """``widths`` timed for real in the format the models predict faster: what a spec keeps
    (the budget's settings, predicted and measured ms per image)."""
    s = space.search
    fmt, predicted = fastest(models, widths)
    settings = timing(space, device, fmt)
    lat = measure(graph.prune(dict(widths)), tuple(graph.example_input.shape[1:]), **settings)
    return {
        "memory_format": fmt,
        "batch": s.latency_batch,
        "threads": s.latency_threads,
        "device": device,
        "target_ms": target / 1e6,
        "predicted_ms": predicted / 1e6,
        "measured_ms": lat.steady_ms,
        "measured_iqr_ms": list(lat.iqr_ms),
        "round_ms": [1e3 * m / lat.batch for m in lat.round_medians],
        "repeats": len(lat.samples),
        "speed_factors": list(lat.speed_factors),
        "timing": settings["timing"].to_dict(),
        "method": settings["timing"].to_dict()["method"],
    }


def measured_within(
    graph: ChannelGraph,
    models: Mapping[str, LatencyModel],
    widths: Mapping[str, int],
    target: int,
    space: Space,
    *,
    device: str = "cpu",
    reproject: Callable[[int], dict[str, int]] | None = None,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Times ``widths`` for real; while that is over ``target`` (ns per image), asks
    ``reproject(smaller_target)`` for widths of the same shape and times those.

    Returns:
        The widths that meet the budget when measured, and the latency record a spec keeps
        (budget settings, the format, predicted and measured ms, each re-projection).

    Raises:
        PrunesearchError: no re-projection meets the budget (the machine's timing is too
            noisy for it, or the budget is below what the narrowest widths reach).
    """
    tries: list[dict[str, Any]] = []
    aim = target
    for _ in range(REPROJECTIONS):
        record = latency_record(graph, models, widths, target, space, device=device)
        if record["measured_ms"] * 1e6 <= target:
            if tries:
                record["reprojections"] = tries
            return dict(widths), record
        tries.append(
            {k: record[k] for k in ("predicted_ms", "measured_ms", "memory_format")}
            | {"widths": dict(widths)}
        )
        if reproject is None:
            break
        aim = int(aim * MARGIN * target / (record["measured_ms"] * 1e6))
        logger.info(
            "measured %.3f ms per image against a budget of %.3f ms (predicted "
            "%.3f ms): projecting the same shape onto %.3f ms",
            record["measured_ms"],
            target / 1e6,
            record["predicted_ms"],
            aim / 1e6,
        )
        widths = reproject(aim)
    raise PrunesearchError(
        f"latency budget {target / 1e6:.3f} ms: the architecture measured "
        f"{tries[-1]['measured_ms']:.3f} ms per image after {len(tries)} tries (predicted "
        f"{tries[-1]['predicted_ms']:.3f} ms); the machine's timing may be too noisy for this "
        "budget: run again on a quiet machine, or loosen the budget"
    )
