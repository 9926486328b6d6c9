"""prunesearch: channel pruning as architecture search.

Find the channel widths of a CNN that fit a FLOP or parameter budget, export them as a spec, and
train that architecture from scratch ("Rethinking the Value of Network Pruning", ICLR 2019).

The public names are imported on first use (PEP 562): ``import prunesearch`` does not import
torch, so the CLI starts fast; ``ps.trace`` etc. work as if imported here. Subpackages and top-level
modules (``ps.engine``, ``ps.spec``, ...) load on attribute access too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from prunesearch.errors import PrunesearchError, SpecError, TraceError

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from prunesearch.engine.budget import allocate
    from prunesearch.engine.flops import count_flops, count_params
    from prunesearch.engine.graph import ChannelGraph, ChannelGroup, trace
    from prunesearch.find.api import SearchOptions, SearchResult, search
    from prunesearch.models import create_model, list_models, register_model
    from prunesearch.spec import ArchSpec, build

__all__ = [
    "ArchSpec",
    "ChannelGraph",
    "ChannelGroup",
    "PrunesearchError",
    "SearchOptions",
    "SearchResult",
    "SpecError",
    "TraceError",
    "__version__",
    "allocate",
    "build",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "register_model",
    "search",
    "trace",
]

_LAZY = {  # public name: the module that defines it
    "allocate": "engine.budget",
    "count_flops": "engine.flops",
    "count_params": "engine.flops",
    "ChannelGraph": "engine.graph",
    "ChannelGroup": "engine.graph",
    "trace": "engine.graph",
    "create_model": "models",
    "list_models": "models",
    "register_model": "models",
    "ArchSpec": "spec",
    "build": "spec",
    "search": "find.api",
    "SearchOptions": "find.api",
    "SearchResult": "find.api",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunesearch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name.startswith("__"):  # probed by inspect, pickle, pytest...: never a submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:  # a submodule, e.g. ps.spec or ps.engine
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
