"""The user's own data (``data.dataset: {folder|arrays|callable: ...}``) as train and test splits.

The splits come back as :class:`ImageData` with a :class:`DatasetInfo` made from the data: the
class count and names, channels, image size, and mean and std (the space's, or computed from the
training images). Both splits are stored in one seeded random order (seed 0) so that the
validation split is the tail of the training split and every split is a view: a folder's cache
stays memory-mapped, never loaded whole. Without a test split, ``data.test_size`` of the images
is carved off per class (at least one image of a class with two or more), seeded (0), and the
run says so. Augmentation: random crops with ``min(H, W) / 8`` padding and horizontal flips.

Each load returns a *source* record (what was read: kind, absolute path, a digest, classes,
preprocessing) that run folders keep, and later commands compare against.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesearch.data.arrays import read_arrays
from prunesearch.data.image_cache import CacheSettings, cached_images, mean_std
from prunesearch.data.image_data import DatasetInfo, ImageData
from prunesearch.data.image_folder import RESIZE_RULE, first_size, list_folder
from prunesearch.data.user_callable import call_reader, materialise
from prunesearch.errors import PrunesearchError
from prunesearch.fileio import file_digest
from prunesearch.progress import Reporter
from prunesearch.space import DataCfg

__all__ = ["UserData", "load_user_data"]

logger = logging.getLogger(__name__)

SEED = 0


@dataclass
class UserData:
    train: ImageData
    test: ImageData
    source: dict[str, Any]


def _hw(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def carve_test(labels: list[int], fraction: float) -> tuple[list[int], list[int]]:
    """Indices ``(train, test)``: ``fraction`` of each class's items to test (rounded, at least
    one of a class with two or more, never all), seeded; train in a seeded random order."""
    rng = np.random.default_rng(SEED)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train, test = [], []
    for label in sorted(by_class):
        items = rng.permutation(by_class[label]).tolist()
        k = min(len(items) - 1, max(1 if len(items) > 1 else 0, round(fraction * len(items))))
        test.extend(items[:k])
        train.extend(items[k:])
    return rng.permutation(train).tolist(), sorted(test)


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # a read-only memory map: the loader never writes to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _stats(d: DataCfg, computed: tuple[list[float], list[float]], channels: int):
    for key in ("mean", "std"):
        given = getattr(d, key)
        if given is not None and len(given) != channels:
            raise PrunesearchError(
                f"data.{key} has {len(given)} values, the images {channels} channel(s)"
            )
    mean = list(d.mean) if d.mean is not None else computed[0]
    std = list(d.std) if d.std is not None else computed[1]
    return mean, std, "space" if d.mean is not None else "training images"


def _info(name: str, shape: tuple[int, ...], classes: list[str], mean, std) -> DatasetInfo:
    c, h, w = shape
    return DatasetInfo(
        name,
        len(classes),
        c,
        (h, w) if h != w else h,
        tuple(mean),
        tuple(std),
        flip=True,
        crop_padding=max(1, round(min(h, w) / 8)),
        classes=tuple(classes),
        shuffled=True,
    )


def _folder(d: DataCfg, channels: int, reporter: Reporter | None) -> UserData:
    root = Path(d.dataset["folder"])
    listing = list_folder(root)
    if listing.ignored:
        logger.info("%s: ignored %d non-image file(s)", root, len(listing.ignored))
    if listing.test is None:
        train_idx, test_idx = carve_test([lab for _, lab in listing.train], d.test_size)
        entries = [listing.train[i] for i in train_idx] + [listing.train[i] for i in test_idx]
        n_train = len(train_idx)
        test_from = f"carved from the images: {d.test_size:g} of each class, seed {SEED}"
        logger.info("%s has no test folder: the test split is %s", root, test_from)
    else:
        order = np.random.default_rng(SEED).permutation(len(listing.train)).tolist()
        entries = [listing.train[i] for i in order] + listing.test
        n_train, test_from = len(order), "the folder's test split"
    size = _hw(d.image_size) or first_size([p for p, _ in entries])
    if size is None:
        raise PrunesearchError(f"{root}: none of its {len(entries)} images can be read")
    settings = CacheSettings(size, channels, d.skip_bad_images, RESIZE_RULE)
    cache = cached_images(
        entries,
        n_train,
        settings,
        source=str(root),
        exact=d.image_size is None,
        reporter=reporter,
    )
    m = cache.manifest
    if m["skipped"]:
        logger.warning("%s: skipped %d image(s) that cannot be decoded", root, len(m["skipped"]))
    if m["n_test"] == 0:
        raise PrunesearchError(f"{root}: no readable test images")
    mean, std, stats_from = _stats(d, (m["train_mean"], m["train_std"]), channels)
    info = _info(f"folder {root.name}", tuple(m["shape"]), listing.classes, mean, std)
    images, labels = _as_tensor(cache.images), torch.from_numpy(cache.labels)
    n = m["n_train"]
    source = {
        "kind": "folder",
        "path": str(root),
        "digest": m["key"],
        "digest_of": "file list with sizes, modification times and labels, and decode settings",
        "test_split": test_from,
        "ignored_files": len(listing.ignored),
        "skipped_images": len(m["skipped"]),
        "resize": RESIZE_RULE if d.image_size is not None else "none (images share one size)",
        "cache": str(cache.path),
    }
    return _finish(
        ImageData(images[:n], labels[:n], info),
        ImageData(images[n:], labels[n:], info),
        source | _preprocessing(info, stats_from),
    )


def _preprocessing(info: DatasetInfo, stats_from: str) -> dict[str, Any]:
    c, h, w = info.shape
    return {
        "classes": list(info.classes),
        "image_size": [h, w],
        "channels": c,
        "channel_order": "RGB" if c == 3 else ("L" if c == 1 else f"{c} channels"),
        "mean": list(info.mean),
        "std": list(info.std),
        "mean_std_from": stats_from,
    }


def _finish(train: ImageData, test: ImageData, source: dict[str, Any]) -> UserData:
    source |= {"n_train": len(train), "n_test": len(test)}
    return UserData(train, test, source)


def _classes(names: list[str] | None, labels: list[np.ndarray], num_classes: int | None, where):
    top = max(int(y.max()) for y in labels if len(y))
    n = num_classes if num_classes is not None else top + 1
    if names is not None and num_classes is None:
        n = max(n, len(names))
    if top >= n:
        raise PrunesearchError(
            f"{where}: label {top} out of range: the model has {n} classes (model.args.num_classes)"
        )
    if names is not None and len(names) != n:
        raise PrunesearchError(f"{where}: {len(names)} class names for {n} classes")
    if n < 2:
        raise PrunesearchError(f"{where}: the labels hold one class; a classifier needs two")
    return names or [str(i) for i in range(n)]


def _in_memory(
    d: DataCfg, arrays: tuple, names: list[str] | None, num_classes: int | None, where: str
) -> tuple[ImageData, ImageData, dict[str, Any]]:
    """Train and test splits from in-memory arrays (test carved off when None), and how."""
    x_train, y_train, x_test, y_test = arrays
    all_labels = [y_train] if y_test is None else [y_train, y_test]
    classes = _classes(names, all_labels, num_classes, where)
    test_from = "given"
    if x_test is None:
        train_idx, test_idx = carve_test(y_train.tolist(), d.test_size)
        x_test, y_test = x_train[test_idx], y_train[test_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        test_from = f"carved from the training images: {d.test_size:g} of each class, seed {SEED}"
        logger.info("%s has no test split: the test split is %s", where, test_from)
    else:
        order = np.random.default_rng(SEED).permutation(len(y_train))
        x_train, y_train = x_train[order], y_train[order]
    if d.channels is not None and d.channels != x_train.shape[1]:
        raise PrunesearchError(
            f"data.channels is {d.channels} but {where} holds {x_train.shape[1]}-channel images "
            "(arrays are not converted)"
        )
    size = _hw(d.image_size)
    if size is not None and tuple(x_train.shape[2:]) != size:
        raise PrunesearchError(
            f"data.image_size is {list(size)} but {where} holds {list(x_train.shape[2:])} "
            "images (arrays are not resized)"
        )
    mean, std, stats_from = _stats(d, mean_std(x_train), x_train.shape[1])
    info = _info(where, tuple(x_train.shape[1:]), classes, mean, std)
    train = ImageData(torch.from_numpy(x_train), torch.from_numpy(y_train), info)
    test = ImageData(torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test), info)
    return train, test, {"test_split": test_from} | _preprocessing(info, stats_from)


def _arrays(d: DataCfg, num_classes: int | None) -> UserData:
    path = Path(d.dataset["arrays"])
    a = read_arrays(path)
    train, test, how = _in_memory(
        d, (a.x_train, a.y_train, a.x_test, a.y_test), a.classes, num_classes, f"arrays {path.name}"
    )
    source = {
        "kind": "arrays",
        "path": str(path),
        "digest": file_digest(path),
        "digest_of": "sha256 of the file",
        "layout": a.layout,
    }
    return _finish(train, test, source | how)


def _callable(d: DataCfg, num_classes: int | None, reporter: Reporter | None) -> UserData:
    reference, args = d.dataset["callable"], d.dataset.get("args", {})
    train_ds, test_ds = call_reader(reference, args)
    x_train, y_train = materialise(train_ds, f"{reference} train", reporter)
    x_test = y_test = None
    if test_ds is not None:
        x_test, y_test = materialise(test_ds, f"{reference} test", reporter)
    names = getattr(train_ds, "classes", None)
    names = [str(c) for c in names] if isinstance(names, list | tuple) else None
    train, test, how = _in_memory(
        d, (x_train, y_train, x_test, y_test), names, num_classes, reference
    )
    source = {
        "kind": "callable",
        "callable": reference,
        "args": args,
        "digest": None,
        "digest_of": "nothing: the reader's data is not checked for change",
    }
    return _finish(train, test, source | how)


def load_user_data(
    d: DataCfg,
    *,
    channels: int,
    num_classes: int | None = None,
    reporter: Reporter | None = None,
) -> UserData:
    """The train and test splits of the user's data, and the record of its source.

    Args:
        d: the space's data section; ``d.dataset`` is a mapping (see :class:`DataCfg`).
        channels: the channel count images are converted to (an image folder).
        num_classes: the model's class count if the space gives it (arrays and callables:
            labels are checked against it; without it, the largest label + 1).
        reporter: progress of decoding or reading.
    """
    kind = next(k for k in ("folder", "arrays", "callable") if k in d.dataset)
    if kind == "folder":
        return _folder(d, channels, reporter)
    if kind == "arrays":
        return _arrays(d, num_classes)
    return _callable(d, num_classes, reporter)
