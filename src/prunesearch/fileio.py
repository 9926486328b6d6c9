"""Files: atomic writes (a killed process never leaves a half-written file behind) and bounded,
validated reads of the files a user may hand us (a spec, a run folder's JSON): a file too large,
nested too deeply or not JSON is one error naming it, never a traceback or minutes of work."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError

__all__ = [
    "MAX_READ_BYTES",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_digest",
    "held_lock",
    "read_json",
    "read_text",
]

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 16 << 20  # a spec of a 1,000-layer net is about 100 KB


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to a temp file beside ``path``, fsyncs it, then renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # say which file it was
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text(path: str | os.PathLike, what: str, limit: int = MAX_READ_BYTES) -> str:
    """The text of ``path``, a file the user gave us (``what`` names it in errors), refused
    above ``limit`` bytes before it is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise PrunesearchError(f"{what} {path} is not a file")
        if size > limit:
            raise PrunesearchError(
                f"{what} {path} is {size / 2**20:.1f} MiB; the most read is {limit / 2**20:.0f} MiB"
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrunesearchError(f"{what} file not found: {path}") from None
    except UnicodeDecodeError:
        raise PrunesearchError(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise PrunesearchError(f"cannot read {what} {path}: {exc.strerror}") from None


_JSON_TYPES = {dict: "an object", list: "an array"}


def read_json(
    path: str | os.PathLike, what: str, expect: type | None = dict, limit: int = MAX_READ_BYTES
) -> Any:
    """The parsed JSON of ``path`` (see :func:`read_text`), which must hold ``expect`` (an
    object by default; None: anything)."""
    text = read_text(path, what, limit)
    if not text.strip():
        raise PrunesearchError(f"{what} {path} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PrunesearchError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PrunesearchError(f"{what} {path} is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PrunesearchError(
            f"{what} {path} is not valid JSON: {str(exc).split(':')[0]}"
        ) from None
    if expect is not None and not isinstance(data, expect):
        raise PrunesearchError(
            f"{what} {path} must hold {_JSON_TYPES.get(expect, expect)}, not {type(data).__name__}"
        )
    return data


@contextlib.contextmanager
def held_lock(path: str | os.PathLike, waiting_for: str) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed) for the ``with`` block, between
    processes of this host (``flock``; released by the kernel if the holder dies). A caller that
    has to wait says once what for (``waiting_for``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for %s", waiting_for)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
