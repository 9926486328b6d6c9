"""What every command shares around its one library call: library errors as one ``error:`` line
and exit code 2, Ctrl-C as one line and exit code 130, logging, Optuna's verbosity, the rank of
a distributed run."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from prunesearch.errors import PrunesearchError
from prunesearch.paths import CHECKPOINT

__all__ = [
    "bare_allow_import",
    "interruptible",
    "rank",
    "resume_hint",
    "setup_logging",
    "silence_optuna",
    "user_errors",
]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns a PrunesearchError (or a refused file operation) into one ``error:`` line and
    exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_out(kwargs.get("out"))
            return fn(*args, **kwargs)
        except PrunesearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the file system refused: a full disk, a read-only folder...
            typer.echo(f"error: {_os_error(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _check_out(out: Any) -> None:
    """``--out`` must be a folder or not exist yet: checked before any work."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise PrunesearchError(f"--out {out}: exists and is not a folder")


def _os_error(exc: OSError) -> str:
    """A file-system error in words: what was refused, where, and what is safe."""
    where = f" {exc.filename}" if exc.filename else ""
    text = f"cannot write or read{where}: {exc.strerror or exc}"
    if exc.errno == errno.ENOSPC:
        text += (
            " (files are written whole or not at all: a run folder holds its last "
            "complete checkpoint; free space and rerun with --resume)"
        )
    return text


def rank() -> int:
    """This process's rank in a torchrun launch (0 alone)."""
    return int(os.environ.get("RANK", "0"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """The library's log lines on stderr (rich on a terminal); ranks above 0 warn only."""
    logger = logging.getLogger("prunesearch")
    if logger.handlers:
        return
    logger.setLevel(logging.WARNING if rank() != 0 else logging.INFO)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, show_time=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def silence_optuna() -> None:
    """Optuna's INFO lines off for the whole command: our progress reports the trials, and a
    Ctrl-C is reported once, by :func:`interruptible`, not as Optuna's "trial failed"
    traceback. Here, not at import: importing prunesearch leaves Optuna's logging alone."""
    import optuna

    from prunesearch.find.studies import no_interrupt_tracebacks

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    no_interrupt_tracebacks()


@contextlib.contextmanager
def interruptible(what: Callable[[], str]) -> Iterator[None]:
    """A Ctrl-C becomes one line saying what was kept and how to go on (``what()``, asked
    then), and exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"error: interrupted; {what()}", err=True)
        raise typer.Exit(130) from None


def resume_hint(run_dir: Path) -> str:
    """What a training run interrupted at ``run_dir`` keeps."""
    if (Path(run_dir) / CHECKPOINT).is_file():
        return (
            f"{run_dir} holds the last finished epoch: run the same command with --resume "
            "to go on from it"
        )
    return f"no epoch had finished, nothing to resume in {run_dir}"


def bare_allow_import(argv: list[str]) -> list[str]:
    """``--allow-import`` with no package after it (the flag of earlier versions) becomes
    ``--allow-import=``: the package that the spec's own reference names (never the standard
    library). What follows is a package when it is a dotted name and not a file's."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--allow-import":
            following = argv[i + 1] if i + 1 < len(argv) else ""
            if not all(p.isidentifier() for p in following.split(".")) or following.endswith(
                (".json", ".yaml", ".yml")
            ):
                arg = "--allow-import="
        out.append(arg)
    return out
