"""Which model code a spec may make prunesearch import: ``--allow-import PKG``.

A spec is data that may come from anyone, and its ``model`` may be an import reference
(``"pkg.module:callable"``, called with arguments the spec chooses). Importing it runs code, so
the user names the packages they trust; the standard library is never one of them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Union

from prunesearch.errors import PrunesearchError

__all__ = [
    "OWN_PACKAGE",
    "AllowImport",
    "import_callable",
    "import_permission",
    "permits",
    "stdlib",
]

AllowImport = Union[bool, str, Sequence[str]]  # noqa: UP007 - a runtime alias
"""Permission to import the code an import reference names: ``False`` (none), package names
(``"mypkg"`` permits ``mypkg`` and ``mypkg.*``) or ``True`` (any package). The standard library
and builtins are never permitted: a model is not there, and ``os:system`` is."""


OWN_PACKAGE = ""  # ``--allow-import`` given no package: the one the spec's reference names


def import_permission(allow: AllowImport, reference: str | None = None) -> bool | tuple[str, ...]:
    """``allow`` in a canonical, hashable form: a bool, or a sorted tuple of package names.

    :data:`OWN_PACKAGE` among the names stands for the top-level package of ``reference`` (a
    spec's ``"pkg.module:callable"``; the bare ``--allow-import`` flag of earlier versions),
    and is replaced by it, with a log line naming it."""
    if isinstance(allow, bool):
        return allow
    names = (allow,) if isinstance(allow, str) else tuple(allow)
    if OWN_PACKAGE in names:
        own = (
            reference.partition(":")[0].split(".", 1)[0] if reference and ":" in reference else None
        )
        names = tuple(n for n in names if n != OWN_PACKAGE) + ((own,) if own else ())
        if own:
            logging.getLogger(__name__).info(
                "--allow-import without a package: allowing %s, the package the spec names", own
            )
    for name in names:
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise PrunesearchError(f"--allow-import {name!r}: give a package name, e.g. mypkg")
        if stdlib(name):
            raise PrunesearchError(
                f"--allow-import {name!r}: a standard-library module; only "
                "packages that hold models can be allowed"
            )
    return tuple(sorted(set(names))) or False


def stdlib(module_name: str) -> bool:
    """Whether ``module_name`` belongs to the standard library (or is built in)."""
    top = module_name.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def permits(allow: bool | tuple[str, ...], module_name: str) -> bool:
    """Whether a canonical permission (:func:`import_permission`) covers ``module_name``."""
    if allow is True:
        return True
    return any(module_name == p or module_name.startswith(p + ".") for p in allow or ())


def import_callable(reference: str, what: str) -> Callable[..., Any]:
    """The callable ``"pkg.module:attr.path"`` names, imported (the caller has checked that the
    package may be imported). Refused: a module that does not import, a missing attribute,
    something not callable, and a callable defined in the standard library (``pkg:os.system``
    reaches ``os`` through ``pkg``). ``what`` names the reference in errors (``model``)."""
    module_name, _, attr = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PrunesearchError(
            f"cannot import module {module_name!r} for {what} {reference!r}: {exc}"
        ) from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PrunesearchError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(obj):
        raise PrunesearchError(f"{what} reference {reference!r} does not name a callable")
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str) or stdlib(home):
        raise PrunesearchError(
            f"{what} reference {reference!r} names a callable defined in "
            f"{home or 'no module'}, the standard library: refused"
        )
    return obj
