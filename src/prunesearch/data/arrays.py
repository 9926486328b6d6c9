"""The user's images as numpy arrays in one ``.npz`` file.

Keys: ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` (and ``classes``: the class
names). Images are ``N x H x W`` (one channel), ``N x C x H x W`` or ``N x H x W x C``: the
layout is taken to be NHWC when the last axis has 1 to 4 entries and axis 1 more than 4, NCHW
otherwise. uint8 images are used as they are; float images are taken as [0, 1] when their
maximum is at most 1, else as [0, 255], and rounded to uint8. Labels are integers from 0. The
file is read whole into memory (``np.load`` without pickles): for data larger than memory,
use an image folder.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunesearch.errors import PrunesearchError

__all__ = ["ArraySplits", "read_arrays"]


@dataclass
class ArraySplits:
    x_train: np.ndarray  # (N, C, H, W) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str] | None
    layout: str  # "NCHW" or "NHWC": what the file held


def _layout(x: np.ndarray) -> str:
    return "NHWC" if x.ndim == 4 and 1 <= x.shape[-1] <= 4 and x.shape[1] > 4 else "NCHW"


def _images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or 0 in x.shape:
        raise PrunesearchError(f"{where}: must be N x [C x] H x W images, got shape {x.shape}")
    if _layout(x) == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise PrunesearchError(f"{where}: must hold numbers (uint8 or float), got {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise PrunesearchError(f"{where}: holds NaN or infinite values")
    scale = 255.0 if np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0 else 1.0
    return np.ascontiguousarray(np.clip(np.rint(x * scale), 0, 255).astype(np.uint8))


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise PrunesearchError(f"{where}: must be {n} labels (one per image), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise PrunesearchError(f"{where}: labels must be integers, got {y.dtype}")
    if len(y) and y.min() < 0:
        raise PrunesearchError(f"{where}: label {int(y.min())} out of range (labels start at 0)")
    return y.astype(np.int64)


def read_arrays(path: str | Path) -> ArraySplits:
    """Reads and checks an ``.npz`` of images and labels (see the module's docstring).

    Raises:
        PrunesearchError: the file is missing, unreadable or not an npz; a key is missing or
            has the wrong shape or type; a label is negative.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise PrunesearchError(f"arrays file not found: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PrunesearchError(f"cannot read arrays file {path}: {exc}") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise PrunesearchError(f"{path}: no {key!r} array (keys: {', '.join(arrays)})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise PrunesearchError(f"{path}: give both x_test and y_test, or neither")
    layout = _layout(arrays["x_train"])
    x_train = _images(arrays["x_train"], f"{path}: x_train")
    y_train = _labels(arrays["y_train"], len(x_train), f"{path}: y_train")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _images(arrays["x_test"], f"{path}: x_test")
        y_test = _labels(arrays["y_test"], len(x_test), f"{path}: y_test")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise PrunesearchError(
                f"{path}: x_test images are {list(x_test.shape[1:])}, x_train's "
                f"{list(x_train.shape[1:])}"
            )
    classes = None
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"].tolist()]
    return ArraySplits(x_train, y_train, x_test, y_test, classes, layout)
