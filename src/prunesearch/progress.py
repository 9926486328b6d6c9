"""Progress reporting for long work: rich bars on a terminal, plain log lines elsewhere.

Library code calls a :class:`Reporter`; it never prints. The CLI picks :func:`make_reporter`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["LogReporter", "Reporter", "RichReporter", "make_reporter"]

logger = logging.getLogger("prunesearch")


class Reporter:
    """Receives training progress. The base class ignores everything."""

    def start(self, title: str, epochs: int, batches: int, first_epoch: int = 0) -> None: ...

    def batch(self, epoch: int, index: int, loss: float, accuracy: float) -> None: ...

    def epoch(self, epoch: int, record: dict[str, Any]) -> None: ...

    def search_start(self, title: str, total: int, completed: int) -> None: ...

    def search_trial(self, completed: int, best: float | None) -> None: ...

    def work_start(self, title: str, total: int) -> None:
        """Counted work that is neither epochs nor trials (e.g. timing a latency table)."""

    def work_step(self, done: int) -> None: ...

    def close(self) -> None: ...


def _epoch_line(epoch: int, epochs: int, r: dict[str, Any]) -> str:
    val = f" val_acc {r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else ""
    return (
        f"epoch {epoch + 1}/{epochs} loss {r['train_loss']:.4f} "
        f"acc {r['train_accuracy']:.4f}{val} lr {r['lr']:.4g} {r['seconds']:.1f}s "
        f"({r['images_per_s']:.0f} img/s)"
    )


class LogReporter(Reporter):
    """One log line per epoch (for pipes, files and CI)."""

    def start(self, title: str, epochs: int, batches: int, first_epoch: int = 0) -> None:
        self.epochs = epochs
        logger.info("%s: epochs %d..%d, %d batches each", title, first_epoch + 1, epochs, batches)

    def epoch(self, epoch: int, record: dict[str, Any]) -> None:
        logger.info(_epoch_line(epoch, self.epochs, record))

    def search_start(self, title: str, total: int, completed: int) -> None:
        self.total = total
        logger.info("%s: %d of %d trials done", title, completed, total)

    def search_trial(self, completed: int, best: float | None) -> None:
        best_text = f"{best:.4f}" if best is not None else "-"
        logger.info("trial %d/%d, best score %s", completed, self.total, best_text)

    def work_start(self, title: str, total: int) -> None:
        self.work_title, self.work_total, self.work_logged = title, total, 0
        logger.info("%s: %d steps", title, total)

    def work_step(self, done: int) -> None:
        quarter = 4 * done // max(1, self.work_total)  # a line at each quarter, not each step
        if quarter > self.work_logged:
            self.work_logged = quarter
            logger.info("%s: %d/%d", self.work_title, done, self.work_total)


class RichReporter(Reporter):
    """Two rich bars: epochs, and batches of the current epoch with loss and accuracy."""

    def __init__(self, console=None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.console = self.progress.console

    def start(self, title: str, epochs: int, batches: int, first_epoch: int = 0) -> None:
        self.epochs = epochs
        self.progress.start()
        self.epoch_task = self.progress.add_task(
            title, total=epochs, completed=first_epoch, info=""
        )
        self.batch_task = self.progress.add_task("  batches", total=batches, info="")

    def batch(self, epoch: int, index: int, loss: float, accuracy: float) -> None:
        self.progress.update(
            self.batch_task, completed=index + 1, info=f"loss {loss:.3f} acc {accuracy:.3f}"
        )

    def epoch(self, epoch: int, record: dict[str, Any]) -> None:
        self.progress.update(
            self.epoch_task, completed=epoch + 1, info=f"val {record.get('val_accuracy') or 0:.3f}"
        )
        self.progress.reset(self.batch_task)
        self.console.log(_epoch_line(epoch, self.epochs, record))

    def search_start(self, title: str, total: int, completed: int) -> None:
        self.progress.start()
        self.search_task = self.progress.add_task(title, total=total, completed=completed, info="")

    def search_trial(self, completed: int, best: float | None) -> None:
        self.progress.update(
            self.search_task,
            completed=completed,
            info=f"best {best:.4f}" if best is not None else "",
        )

    def work_start(self, title: str, total: int) -> None:
        self.progress.start()
        self.work_task = self.progress.add_task(title, total=total, info="")

    def work_step(self, done: int) -> None:
        self.progress.update(self.work_task, completed=done)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(rank: int = 0) -> Reporter:
    """Rich bars on an interactive terminal, log lines otherwise; silent on ranks > 0."""
    if rank != 0:
        return Reporter()
    return RichReporter() if sys.stderr.isatty() and sys.stdout.isatty() else LogReporter()
