"""Local ``--jobs`` worker processes that a Ctrl-C ends quietly, whenever it lands.

A terminal's Ctrl-C reaches every process of the group. A spawned worker spends its first
seconds importing (torch, the job's modules) before its own handler is in place; an interrupt
there used to print the worker's traceback. So workers start with SIGINT *blocked* (a signal
mask survives fork and exec): a Ctrl-C during their start stays pending and is delivered when
they unblock it (:func:`accept_interrupts`) inside the code that ends them quietly. The main
process blocks SIGINT only while it starts them, so a Ctrl-C in that window is delivered to it
right after, not lost (ignoring it there, as a first version did, let the search run on).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess

__all__ = ["accept_interrupts", "ignore_interrupts", "join_workers", "start_workers"]

logger = logging.getLogger(__name__)

GRACE_S = 10.0  # how long interrupted workers get to fail their trials and exit by themselves


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals go to the main thread: only its mask matters
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:  # a Ctrl-C that came meanwhile is delivered now, as a KeyboardInterrupt
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_workers(workers: list[BaseProcess]) -> None:
    """Starts spawned workers with SIGINT blocked until they call :func:`accept_interrupts`."""
    if workers:
        # multiprocessing's resource tracker, started by the first spawn, unblocks SIGINT once
        # it runs (bpo-33613's mask dance): started first, it leaves our mask alone
        resource_tracker.ensure_running()
    with _sigint_blocked():
        for w in workers:
            w.start()


def accept_interrupts() -> None:
    """In a worker, once a KeyboardInterrupt would be caught: Ctrl-C raises it (one that came
    while the worker was starting is delivered now)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def ignore_interrupts() -> None:
    """In an interrupted worker on its way out: a second Ctrl-C does not break the exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def join_workers(workers: list[BaseProcess], interrupted: bool) -> None:
    """Waits for the workers; after an interrupt, ends those still running after
    :data:`GRACE_S` (a Ctrl-C that came while they were starting was ignored). Their
    unfinished trials are failed and retried when the search is run again."""
    workers = [w for w in workers if w.pid is not None]  # an interrupt may stop their start
    if not interrupted:
        for w in workers:
            w.join()
        return
    for w in workers:
        w.join(GRACE_S)
        if w.is_alive():
            logger.debug("ending search worker %s, still running after the interrupt", w.pid)
            w.terminate()  # SIGTERM: no handler in the worker, so no traceback either
            w.join()
