"""torchvision and timm constructors by name: ``torchvision.models:resnet18`` (or any
``torchvision.models.<sub>:NAME``) and ``timm:resnet18``.

They are trusted references: well-known packages, imported without ``--allow-import``. Weights
are never fetched: ``pretrained``/``weights`` arguments are refused (a base's weights come from a
local file, ``--base FILE``). ``in_channels`` is passed to timm as its ``in_chans``;
torchvision's models take no input-channel argument.

torchvision's compiled ops may not load against the installed torch (a CUDA wheel beside a CPU
torch): its ``__init__`` then fails while registering fake implementations of those ops. Its
model definitions are pure Python, so the import is retried with those two registration
modules stubbed: the models work, the compiled ops (``torchvision.ops.nms``...) do not.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

from torch import nn

from prunesearch.errors import PrunesearchError, shown

__all__ = ["external_constructor", "is_external"]

logger = logging.getLogger(__name__)

_TORCHVISION = "torchvision.models"
_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")
# arguments that would download or load weights: a base comes from a local file instead
_WEIGHT_ARGS = ("pretrained", "weights", "weights_backbone", "checkpoint_path", "pretrained_cfg")


def is_external(module_name: str) -> bool:
    """Whether an import reference's module is torchvision's models or timm (trusted)."""
    return (
        module_name == "timm"
        or module_name == _TORCHVISION
        or module_name.startswith(_TORCHVISION + ".")
    )


def external_constructor(module_name: str, attr: str) -> Callable[..., nn.Module]:
    """The constructor of ``module_name:attr`` (see :func:`is_external`), checking its arguments.

    Raises:
        PrunesearchError: the package is not installed (naming the pip command), or the model
            is unknown to it.
    """
    ref = f"{module_name}:{attr}"
    if module_name == "timm":
        timm = _import("timm")
        if not timm.is_model(attr):
            raise PrunesearchError(f"timm has no model {attr!r} (timm.list_models() lists them)")

        def create_timm(**kwargs: Any) -> nn.Module:
            kwargs = _checked(ref, kwargs)
            if "in_channels" in kwargs:
                kwargs["in_chans"] = kwargs.pop("in_channels")
            return timm.create_model(attr, pretrained=False, **kwargs)

        create_timm.__name__ = create_timm.__qualname__ = attr
        return create_timm
    module = _import(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn) or attr.startswith("_"):
        raise PrunesearchError(f"{module_name} has no model constructor {attr!r}")

    def create_torchvision(**kwargs: Any) -> nn.Module:
        kwargs = _checked(ref, kwargs)
        if "in_channels" in kwargs or "in_chans" in kwargs:
            raise PrunesearchError(
                f"{ref}: torchvision's models take no in_channels (they read 3-channel images); "
                "use a timm model (timm:NAME takes in_channels) or a model of your own"
            )
        return fn(**kwargs)

    create_torchvision.__name__ = create_torchvision.__qualname__ = attr
    return create_torchvision


def _checked(ref: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without the weight arguments that ask for nothing (False/None)."""
    for key in _WEIGHT_ARGS:
        if key in kwargs and kwargs[key] not in (None, False):
            raise PrunesearchError(
                f"{ref}: {key}={shown(kwargs[key])} would fetch or load weights; prunesearch "
                "never downloads them: pass your weights as a local file with --base FILE"
            )
    return {k: v for k, v in kwargs.items() if k not in _WEIGHT_ARGS}


def _import(module_name: str) -> types.ModuleType:
    """Imports ``module_name`` (torchvision's models or timm, which imports torchvision),
    retrying with torchvision's op registrations stubbed if its compiled ops do not load."""
    top = module_name.split(".", 1)[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".", 1)[0] in ("torchvision", "timm"):
            raise _missing(exc.name.split(".", 1)[0]) from None
        raise PrunesearchError(f"cannot import {module_name}: {exc}") from None
    except Exception as exc:
        if "torchvision" not in sys.modules and not any(
            k.startswith("torchvision.") for k in sys.modules
        ):
            raise PrunesearchError(f"cannot import {module_name}: {exc}") from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    logger.warning(
        "torchvision's compiled ops do not load against torch here (%s): its model definitions "
        "are used without them",
        first,
    )
    for name in [k for k in sys.modules if k == top or k.startswith(top + ".")] + [
        k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")
    ]:
        sys.modules.pop(name, None)  # the half-imported packages
    for name in _REGISTRATIONS:
        sys.modules[name] = types.ModuleType(name)  # they need the compiled ops
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PrunesearchError(f"cannot import {module_name}: {exc}") from None


def _missing(package: str) -> PrunesearchError:
    import torch

    return PrunesearchError(
        f'{package} is not installed: pip install "torch=={torch.__version__}" {package} '
        "(torch pinned on the same line, so that pip keeps the installed build)"
    )
