"""How fast this machine runs right now, against the fastest it has been seen to run.

The virtual machines this project runs on slow down by about 1.5x for seconds at a time, every
process and op alike (a pure-Python loop and a pruned ResNet-20 slowed by the same factor in the
same windows; BENCHMARKS.md, "Latency on a machine whose speed moves"). One timing window cannot
tell such a phase from a slower model, so latency budgets time a fixed reference workload just
before and after each window and scale the window by how much slower the reference ran than its
fastest time on record: what is left is the model's time at the machine's sustained speed.

The reference is a small fixed network (two 3x3 convolutions on a 16x32x32 map) run under the
same thread count, so that it slows with whatever slows the model. Its fastest median is kept
on disk per device, thread count and torch version (``store``), so that a model timed today and
one timed tomorrow are scaled to the same speed.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from prunesearch.fileio import atomic_write_json

if TYPE_CHECKING:
    from torch import nn

__all__ = ["SpeedReference"]

logger = logging.getLogger(__name__)

CALLS = 15  # timed calls of the reference per reading (about 1-2 ms of work)
WARMUP = 5  # untimed calls first: whatever ran before (a whole network) has left the caches cold


def _reference_net() -> nn.Module:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    ).eval()


class SpeedReference:
    """Readings of the reference workload: :meth:`factor` is how many times slower than its
    fastest it runs now (>= 1)."""

    def __init__(self, key: str, store: Path | None = None) -> None:
        import torch

        self.key, self.store = key, store
        self.net = _reference_net()
        self.x = torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
        self.best = self._stored()
        with torch.inference_mode():
            for _ in range(5):  # warm-up
                self.net(self.x)

    def _stored(self) -> float:
        if self.store is None or not self.store.is_file():
            return float("inf")
        try:
            return float(json.loads(self.store.read_text()).get(self.key, float("inf")))
        except (OSError, ValueError, AttributeError):
            return float("inf")

    def _remember(self, seconds: float) -> None:
        if self.store is None:
            return
        try:
            known = json.loads(self.store.read_text()) if self.store.is_file() else {}
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict) or seconds < float(known.get(self.key, float("inf"))):
            known = (known if isinstance(known, dict) else {}) | {self.key: seconds}
            atomic_write_json(self.store, known)

    def reading(self) -> float:
        """The reference's median seconds per call, now."""
        import time

        import torch

        samples = []
        with torch.inference_mode():
            for _ in range(WARMUP):
                self.net(self.x)
            for _ in range(CALLS):
                start = time.perf_counter()
                self.net(self.x)
                samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    def factor(self) -> float:
        """Now's reference time over the fastest on record (the record updated if beaten)."""
        now = self.reading()
        if now < self.best:
            self.best = now
            self._remember(now)
        return now / self.best
