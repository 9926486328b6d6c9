"""Local ``--jobs`` worker processes that a Ctrl-C ends quietly, whenever it lands.

A terminal's Ctrl-C reaches every process of the group. A spawned worker spends its first
seconds importing (torch, the job's modules) before its own handler is in place; an interrupt
there used to print the worker's traceback. So workers start with SIGINT ignored (a disposition
an exec'd interpreter inherits), take it back (:func:`accept_interrupts`) once they can end
quietly, and the main process ends any worker that an ignored Ctrl-C left running.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from multiprocessing.process import BaseProcess

__all__ = ["accept_interrupts", "ignore_interrupts", "join_workers", "start_workers"]

logger = logging.getLogger(__name__)

GRACE_S = 10.0  # how long interrupted workers get to fail their trials and exit by themselves


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_workers(workers: list[BaseProcess]) -> None:
    """Starts spawned workers with SIGINT ignored until they call :func:`accept_interrupts`."""
    with _sigint_ignored():
        for w in workers:
            w.start()


def accept_interrupts() -> None:
    """In a worker, once a KeyboardInterrupt would be caught: Ctrl-C raises it again."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def ignore_interrupts() -> None:
    """In an interrupted worker on its way out: a second Ctrl-C does not break the exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def join_workers(workers: list[BaseProcess], interrupted: bool) -> None:
    """Waits for the workers; after an interrupt, ends those still running after
    :data:`GRACE_S` (a Ctrl-C that came while they were starting was ignored). Their
    unfinished trials are failed and retried when the search is run again."""
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
