"""User-facing errors.

Library code raises :class:`PrunesearchError` (or a subclass) for anything a user can fix: bad
input, a model that cannot be traced, an invalid spec. Only ``cli.py`` turns it into a one-line
``error: ...`` message and exit code 2; anything else is a bug (exit code 1).
"""

from __future__ import annotations

import _thread
import sys
import threading

__all__ = [
    "PrunesearchError",
    "SpecError",
    "TraceError",
    "edited_file",
    "first_line",
    "keep_interrupts",
    "shown",
]


class PrunesearchError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with code 2."""


class TraceError(PrunesearchError):
    """The model cannot be traced into a channel-dependency graph."""


class SpecError(PrunesearchError):
    """An architecture spec is malformed or does not fit its model."""


SHOWN_CHARS = 60  # the most of a user's value an error line repeats


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` bounded for an error line: a 100 MB string or a 5000-digit number is
    shown by its start and its size, a container (perhaps built from YAML aliases) by its type
    and length, never walked whole."""
    if isinstance(value, (dict, list, tuple, set)):
        flat = len(value) <= 8 and all(
            isinstance(v, (float, bool, type(None)))
            or (isinstance(v, int) and v.bit_length() < 64)
            or (isinstance(v, str) and len(v) <= 20)
            for v in ([*value.keys(), *value.values()] if isinstance(value, dict) else value)
        )
        if not flat:
            return f"a {type(value).__name__} of {len(value)} item(s)"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, int) and value.bit_length() > 3 * limit:  # repr() may even refuse
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def edited_file(path: object, exc: BaseException) -> PrunesearchError:
    """The error for a run folder's file that parsed but is not shaped as prunesearch writes
    it (a ``KeyError``/``TypeError``... met while reading it): one line naming the file."""
    return PrunesearchError(
        f"{path} is not as prunesearch writes it ({type(exc).__name__}: {shown(str(exc))}); "
        "was it edited?"
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def keep_interrupts() -> None:
    """A Ctrl-C that lands inside a finalizer or a weakref callback is not "ignored" by the
    interpreter, which would print a traceback and lose it (the run would go on): it is raised
    again in the main thread at once. Other unraisable exceptions go to the previous hook.
    Idempotent; for the CLI and its worker processes (a library leaves the hook alone)."""
    previous = sys.unraisablehook
    if getattr(previous, "keeps_interrupts", False):
        return

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # as if the signal arrived again, 10 ms later: by then the main thread has left
            # this hook (an interrupt raised inside it would be "ignored" once more)
            timer = threading.Timer(0.01, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    hook.keeps_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
