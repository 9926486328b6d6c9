"""Model registry: zoo constructors by name, plus user models registered with a decorator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch import nn

from prunesearch.allow_import import (
    AllowImport,
    import_callable,
    import_permission,
    permits,
    stdlib,
)
from prunesearch.errors import PrunesearchError, shown
from prunesearch.models.external import external_constructor, is_external

__all__ = ["create_model", "is_import_ref", "list_models", "register_model", "resolve_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PLUGINS = "prunesearch.models"  # entry-point group of installed packages that register models
_plugins_loaded = False


def _load_plugins() -> None:
    """Imports the modules that installed packages declare under the ``prunesearch.models``
    entry-point group, so that their ``@register_model`` decorators run. Installing a package
    that declares itself is the user's consent; a spec alone never causes an import."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=_PLUGINS):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the zoo
            logging.getLogger(__name__).warning(
                "model plugin %s (%s) failed to load: %s", ep.name, ep.value, exc
            )


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Adds a model constructor to the registry under its ``__name__``.

    Registered models can be named in search spaces and specs and are built by
    :func:`create_model` without ``--allow-import``.
    """
    name = fn.__name__
    existing = _REGISTRY.get(name)
    if (
        existing is not None
        and existing is not fn
        and (existing.__module__ != fn.__module__ or existing.__qualname__ != fn.__qualname__)
    ):
        raise PrunesearchError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def is_import_ref(name: str) -> bool:
    """Whether ``name`` is an import reference of the form ``"pkg.module:callable"``."""
    return ":" in name


def resolve_model(name: str, *, allow_import: AllowImport = False) -> Callable[..., nn.Module]:
    """Returns the constructor for a registry name or a ``"pkg.module:callable"`` reference.

    ``"torchvision.models:NAME"`` and ``"timm:NAME"`` are trusted: imported without
    permission, never with pretrained weights (:mod:`prunesearch.models.external`). Another
    import reference is imported only when ``allow_import`` permits its package (see
    :data:`AllowImport`), or when the callable it names is registered; its module is never
    one of the standard library's. What is imported is logged first.

    Raises:
        PrunesearchError: the name is unknown, or an import is needed but not allowed.
    """
    if not isinstance(name, str) or not name:
        raise PrunesearchError(f"model name must be a non-empty string, got {shown(name)}")
    _load_plugins()
    if not is_import_ref(name):
        try:
            return _REGISTRY[name]
        except KeyError:
            raise PrunesearchError(
                f"unknown model {shown(name)}; known models: {', '.join(list_models())}"
            ) from None
    module_name, _, attr = name.partition(":")
    if (
        not module_name
        or not attr
        or not all(p.isidentifier() for p in (*module_name.split("."), *attr.split(".")))
    ):
        raise PrunesearchError(
            f"model reference {shown(name)} must look like 'pkg.module:callable'"
        )
    if is_external(module_name):  # torchvision's and timm's models: trusted, no weights fetched
        return external_constructor(module_name, attr)
    registered = _REGISTRY.get(attr.rsplit(".", 1)[-1])
    if registered is not None and registered.__module__ == module_name:
        return registered
    if stdlib(module_name):
        raise PrunesearchError(
            f"model reference {shown(name)} names the standard library, not a model: refused"
        )
    allow = import_permission(allow_import)
    if not permits(allow, module_name):
        top = module_name.split(".", 1)[0]
        raise PrunesearchError(
            f"model {shown(name)} is not registered; importing the code a spec names needs "
            f"--allow-import {top} (or register the model with @prunesearch.register_model in "
            "a package that declares a 'prunesearch.models' entry point)"
        )
    logging.getLogger(__name__).info("importing model code %s", name)
    obj = import_callable(name, "model")
    home = obj.__module__  # "pkg:torch.nn.Conv2d" reaches torch through pkg
    if not permits(allow, home):
        raise PrunesearchError(
            f"model reference {name!r} names a callable defined in "
            f"{home or 'no module'}, outside the allowed packages: refused"
        )
    return obj


def create_model(name: str, *, allow_import: AllowImport = False, **kwargs: Any) -> nn.Module:
    """Builds a model by registry name (or import reference, see :func:`resolve_model`).

    Args:
        name: registry name such as ``"resnet56"`` or ``"pkg.module:callable"``.
        allow_import: permit importing an unregistered ``"pkg.module:callable"`` (see
            :data:`AllowImport`).
        **kwargs: passed to the constructor (``num_classes``, ``in_channels``, ...).
    """
    fn = resolve_model(name, allow_import=allow_import)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise PrunesearchError(f"bad arguments for model {name!r}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise PrunesearchError(f"model {name!r} returned {type(model).__name__}, not nn.Module")
    return model
