"""prunesearch: channel pruning as architecture search.

Find the channel widths of a CNN that fit a FLOP or parameter budget, export them as a spec, and
train that architecture from scratch ("Rethinking the Value of Network Pruning", ICLR 2019).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .budget import allocate
from .errors import PrunesearchError, SpecError, TraceError
from .flops import count_flops, count_params
from .graph import ChannelGraph, ChannelGroup, trace
from .models import create_model, list_models, register_model
from .spec import ArchSpec, build

try:
    __version__ = version("prunesearch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ArchSpec",
    "ChannelGraph",
    "ChannelGroup",
    "PrunesearchError",
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
    "trace",
]
