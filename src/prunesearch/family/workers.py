"""``family --jobs N``: the members trained in N local processes, one unit of work at a time.

A unit is one member, or for ``chain`` one whole chain (the members, or one baseline's
controls, largest first: each starts from the one before). The workers take units from a
shared queue until it is empty, each with its share of the torch threads, and train into the
run folders the one-process path uses: the main process then reuses every finished member for
the export and the report, and a run killed in either mode resumes in either mode. A Ctrl-C
ends the workers quietly (:mod:`prunesearch.find.workers`); a member that fails is one error
naming it, raised once the others are done.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import sys
import time
from dataclasses import replace

import torch

from prunesearch.errors import PrunesearchError, first_line, keep_interrupts
from prunesearch.family.inputs import Member
from prunesearch.family.members import Trainer
from prunesearch.find.studies import no_interrupt_tracebacks
from prunesearch.find.workers import (
    accept_interrupts,
    ignore_interrupts,
    join_workers,
    start_workers,
)

__all__ = ["train_in_workers", "work_units"]

logger = logging.getLogger(__name__)


def work_units(groups: list[list[Member]], chained: bool) -> list[list[Member]]:
    """What one worker trains at a time: each group whole when its members chain (the family,
    each baseline's controls), else each member alone; largest first."""
    if chained:
        return [list(g) for g in groups if g]
    return [[m] for m in sorted((m for g in groups for m in g), key=lambda m: -m.spec.flops)]


def _worker(trainer: Trainer, units: list[list[Member]], todo, done, threads: int) -> None:
    """Body of a worker process: units from ``todo`` until it is empty; ``done`` hears
    ``(unit, seconds, error)`` for each."""
    torch.set_num_threads(threads)
    no_interrupt_tracebacks()
    keep_interrupts()
    try:
        accept_interrupts()
        while True:
            try:
                k = todo.get(timeout=1.0)  # the queue's feeder may still be filling it
            except queue.Empty:
                return
            t0 = time.perf_counter()
            try:
                trainer.train_all(units[k])
            except Exception as exc:  # reported by the main process, which names the member
                done.put((k, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
                return
            done.put((k, time.perf_counter() - t0, None))
    except KeyboardInterrupt:
        ignore_interrupts()
        sys.exit(130)


def train_in_workers(trainer: Trainer, units: list[list[Member]], jobs: int) -> None:
    """Trains ``units`` in ``jobs`` spawned processes (fewer when there are fewer units);
    returns once all are trained.

    Raises:
        PrunesearchError: a unit failed (its first member and message) or a worker died.
    """
    ctx = multiprocessing.get_context("spawn")
    todo, done = ctx.Queue(), ctx.Queue()
    for k in range(len(units)):
        todo.put(k)
    n = min(jobs, len(units))
    threads = max(1, torch.get_num_threads() // n)
    quiet = replace(trainer, reporter=None, _splits=None)  # what a worker can be sent
    workers = [
        ctx.Process(target=_worker, args=(quiet, units, todo, done, threads)) for _ in range(n)
    ]
    logger.info("training %d unit(s) in %d processes, %d thread(s) each", len(units), n, threads)
    interrupted, errors, finished = False, [], 0
    try:
        start_workers(workers)
        while finished < len(units) and (any(w.is_alive() for w in workers) or not done.empty()):
            try:
                k, seconds, error = done.get(timeout=0.5)
            except queue.Empty:
                continue
            finished += 1
            slugs = ", ".join(m.slug for m in units[k])
            if error:
                errors.append(f"member {units[k][0].slug}: {first_line(error)}")
            else:
                logger.info("trained %s in %.1f s (%d/%d)", slugs, seconds, finished, len(units))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        join_workers(workers, interrupted)
    if errors:
        raise PrunesearchError(f"training failed: {errors[0]}")
    if finished < len(units):
        codes = [w.exitcode for w in workers]
        raise PrunesearchError(f"a family worker died (exit codes {codes}); run again to go on")
