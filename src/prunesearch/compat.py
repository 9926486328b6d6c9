"""Where prunesearch depends on a dependency's non-public API, in one place.

Each item is pinned by ``tests/test_compat.py``, so an upgrade that changes it fails loudly in
CI instead of misbehaving in a search.

* typer >= 0.16 vendors click as ``typer._click``; older typer runs on click itself. The CLI
  needs click's ``UsageError`` (to turn usage errors into one ``error:`` line) and
  ``NoArgsIsHelpError`` (a bare ``prunesearch`` prints the help). typer exports neither.
"""

from __future__ import annotations

try:  # recent typer vendors click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import NoArgsIsHelpError, UsageError

__all__ = ["NoArgsIsHelpError", "UsageError"]
