"""User-facing errors.

Library code raises :class:`PrunesearchError` (or a subclass) for anything a user can fix: bad
input, a model that cannot be traced, an invalid spec. Only ``cli.py`` turns it into a one-line
``error: ...`` message and exit code 2; anything else is a bug (exit code 1).
"""

from __future__ import annotations

__all__ = ["PrunesearchError", "SpecError", "TraceError"]


class PrunesearchError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with code 2."""


class TraceError(PrunesearchError):
    """The model cannot be traced into a channel-dependency graph."""


class SpecError(PrunesearchError):
    """An architecture spec is malformed or does not fit its model."""
