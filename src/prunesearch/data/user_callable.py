"""The user's own reader: ``{callable: "pkg.module:function", args: {...}}`` in a space.

The function is called with ``args`` as keyword arguments and returns the training dataset, or
a pair ``(train, test)``; each is map-style (``len`` and ``[i]``) and yields ``(image, label)``
with the image a ``C x H x W`` tensor or array (uint8, or float in [0, 1]) and the label an int.
A dataset's ``classes`` attribute, if any, names the classes. The items are read once into
memory as uint8. The import follows the rule for a model named by import path in a space: a
space is the user's own file, so its code is imported (and logged), never the standard
library's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from prunesearch.allow_import import import_callable, stdlib
from prunesearch.errors import PrunesearchError, first_line
from prunesearch.progress import Reporter

__all__ = ["call_reader", "materialise"]

logger = logging.getLogger(__name__)


def _resolve(reference: str):
    module_name, _, attr = reference.partition(":")
    if not all(p.isidentifier() for p in (*module_name.split("."), *attr.split("."))):
        raise PrunesearchError(f"data.dataset.callable {reference!r}: not 'pkg.module:function'")
    if stdlib(module_name):
        raise PrunesearchError(
            f"data.dataset.callable {reference!r} names the standard library: refused"
        )
    logger.info("importing the data reader %s", reference)
    return import_callable(reference, "data.dataset.callable")


def call_reader(reference: str, args: dict[str, Any]) -> tuple[Any, Any | None]:
    """``(train, test or None)`` from the user's function."""
    fn = _resolve(reference)
    try:
        result = fn(**args)
    except Exception as exc:  # the user's code: any failure is reported in one line
        raise PrunesearchError(f"data reader {reference} failed: {first_line(exc)[:200]}") from None
    if isinstance(result, tuple | list):
        if len(result) != 2:
            raise PrunesearchError(
                f"data reader {reference} returned {len(result)} items, not (train, test)"
            )
        return result[0], result[1]
    return result, None


def _as_uint8(image: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise PrunesearchError(f"{where}: image is not an array ({exc})") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise PrunesearchError(f"{where}: image must be C x H x W, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def materialise(
    dataset: Any, where: str, reporter: Reporter | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A map-style dataset read into ``(N, C, H, W)`` uint8 images and ``(N,)`` labels."""
    try:
        n = len(dataset)
    except TypeError:
        raise PrunesearchError(f"{where}: not a map-style dataset (it has no len())") from None
    if n == 0:
        raise PrunesearchError(f"{where}: holds no images")
    reporter = reporter or Reporter()
    reporter.work_start(f"reading {n} images of {where}", n)
    images: np.ndarray | None = None
    labels = np.empty(n, np.int64)
    for i in range(n):
        try:
            image, label = dataset[i]
        except Exception as exc:  # the user's code
            raise PrunesearchError(f"{where}[{i}]: {first_line(exc)[:200]}") from None
        array = _as_uint8(image, f"{where}[{i}]")
        if images is None:
            images = np.empty((n, *array.shape), np.uint8)
        elif array.shape != images.shape[1:]:
            raise PrunesearchError(
                f"{where}[{i}]: image is {list(array.shape)}, the first was "
                f"{list(images.shape[1:])}: the images must share one shape"
            )
        images[i] = array
        try:
            labels[i] = int(label)
        except (TypeError, ValueError):
            raise PrunesearchError(f"{where}[{i}]: label {label!r} is not an int") from None
        if (i + 1) % 256 == 0 or i + 1 == n:
            reporter.work_step(i + 1)
    assert images is not None
    if labels.min() < 0:
        low = int(labels.min())
        raise PrunesearchError(f"{where}: label {low} out of range (labels start at 0)")
    return images, labels
