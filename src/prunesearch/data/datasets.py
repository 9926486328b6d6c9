"""Datasets as in-memory uint8 tensors, without torchvision.

Readers: IDX files (``.gz`` or raw) for MNIST and Fashion-MNIST; the CIFAR python batches
through a restricted unpickler that admits only numpy arrays; a synthetic dataset for tests.
Look-up order for the files: ``--data-dir``, ``$PRUNESEARCH_DATA``, ``~/.cache/prunesearch``,
then system dataset folders (Debian's ``dataset-fashion-mnist`` installs
``/usr/share/datasets/fashion-mnist``). An explicit ``--data-dir`` is the only place looked in.
Nothing is downloaded unless asked (``download=True``), and downloads are md5-checked.

The batch loader lives in :mod:`prunesearch.data.loader`.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunesearch.data.image_data import DatasetInfo, ImageData
from prunesearch.data.user_data import load_user_data
from prunesearch.errors import PrunesearchError
from prunesearch.fileio import file_digest

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageData",
    "LoadedData",
    "load_dataset",
    "load_train_test",
    "split_validation",
]

logger = logging.getLogger(__name__)


_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        10,
        1,
        28,
        (0.2860,),
        (0.3530,),
        flip=True,
        crop_padding=2,
        subdirs=("fashion-mnist", "FashionMNIST/raw"),
        files=_FMNIST_FILES,
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "mnist": DatasetInfo(
        "mnist",
        10,
        1,
        28,
        (0.1307,),
        (0.3081,),
        flip=False,
        crop_padding=2,
        subdirs=("mnist", "MNIST/raw"),
        files=_FMNIST_FILES,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        10,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        flip=True,
        crop_padding=4,
        subdirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        url="https://www.cs.toronto.edu/~kriz/",
        md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        flip=True,
        crop_padding=4,
        subdirs=("cifar-100-python", "cifar100/cifar-100-python"),
        files={"train": ("train",), "test": ("test",)},
        url="https://www.cs.toronto.edu/~kriz/",
        md5={"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        archive="cifar-100-python.tar.gz",
    ),
}
SYNTHETIC = "synthetic"
SYSTEM_DIRS = (Path("/usr/share/datasets"),)


# -- readers ----------------------------------------------------------------------------------


def _open_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (uint8 payload), gzip-compressed or raw."""
    try:
        raw = _open_maybe_gz(path)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise PrunesearchError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise PrunesearchError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise PrunesearchError(f"{path} is truncated or corrupt: header says {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the few globals a pickled numpy array needs, and nothing else."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR python batch: ``(N, 3, 32, 32)`` uint8 images and int64 labels."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        OSError,
    ) as exc:
        raise PrunesearchError(f"cannot read CIFAR batch {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise PrunesearchError(f"{path} is not a CIFAR batch (not a dict)")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    labels = obj.get("labels", obj.get("fine_labels"))
    data = obj.get("data")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise PrunesearchError(f"{path}: CIFAR labels are not a list of integers") from None
    if not isinstance(data, np.ndarray) or labels.ndim != 1 or len(data) != len(labels):
        raise PrunesearchError(
            f"{path} is not a CIFAR batch (no data, or labels that do not match it)"
        )
    try:
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    except ValueError as exc:
        raise PrunesearchError(f"{path}: CIFAR data has the wrong size: {exc}") from None
    return images, labels


# -- look-up and download ---------------------------------------------------------------------


def _candidates(info: DatasetInfo, root: Path) -> list[Path]:
    return [root] + [root / s for s in info.subdirs]


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete(info: DatasetInfo, folder: Path) -> bool:
    assert info.files is not None
    return all(_find_file(folder, n) for names in info.files.values() for n in names)


def search_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    roots = []
    if os.environ.get("PRUNESEARCH_DATA"):
        roots.append(Path(os.environ["PRUNESEARCH_DATA"]))
    roots.append(Path.home() / ".cache" / "prunesearch")
    roots.extend(SYSTEM_DIRS)
    return roots


def locate(info: DatasetInfo, data_dir: str | os.PathLike | None) -> Path | None:
    """The first folder, in look-up order, that holds all of the dataset's files."""
    for root in search_roots(data_dir):
        for folder in _candidates(info, root):
            if folder.is_dir() and _complete(info, folder):
                return folder
    return None


def _expected(info: DatasetInfo) -> str:
    assert info.files is not None
    return ", ".join(n for names in info.files.values() for n in names)


def download(info: DatasetInfo, root: Path, base_url: str | None = None) -> Path:
    """Downloads the dataset into ``root`` (md5-checked, atomic); returns its folder."""
    assert info.md5 is not None
    base = base_url or os.environ.get("PRUNESEARCH_MIRROR") or info.url
    root.mkdir(parents=True, exist_ok=True)
    target = root / info.subdirs[0]
    target.mkdir(parents=True, exist_ok=True)
    for name, md5 in info.md5.items():
        url = base.rstrip("/") + "/" + name
        logger.info("downloading %s", url)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                shutil.copyfileobj(resp, out)
            if file_digest(Path(tmp), "md5") != md5:
                raise PrunesearchError(f"download of {url} failed its md5 check")
            if info.archive:
                with tarfile.open(tmp, "r:gz") as tar:
                    tar.extractall(root, filter="data")
            else:
                os.replace(tmp, target / name)
        except OSError as exc:
            raise PrunesearchError(f"cannot download {url}: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


# -- public -----------------------------------------------------------------------------------


def _synthetic(
    split: str,
    image_size: int = 16,
    in_channels: int = 3,
    num_classes: int = 4,
    train_size: int = 512,
    test_size: int = 256,
    seed: int = 0,
) -> ImageData:
    """Learnable random data: each class is a fixed random pattern plus noise."""
    gen = torch.Generator().manual_seed(seed)
    shape = (num_classes, in_channels, image_size, image_size)
    patterns = torch.rand(shape, generator=gen) * 160 + 40
    n = train_size if split == "train" else test_size
    gen.manual_seed(seed + (1 if split == "train" else 2))
    labels = torch.randint(num_classes, (n,), generator=gen)
    noise = torch.randn((n, *shape[1:]), generator=gen) * 40
    images = (patterns[labels] + noise).clamp(0, 255).to(torch.uint8)
    info = DatasetInfo(
        SYNTHETIC,
        num_classes,
        in_channels,
        image_size,
        (0.5,) * in_channels,
        (0.25,) * in_channels,
        flip=False,
        crop_padding=1,
    )
    return ImageData(images, labels, info)


@dataclass
class LoadedData:
    """A space's train and test splits, and (the user's own data) the record of its source."""

    train: ImageData
    test: ImageData
    source: dict | None = None


def load_train_test(
    data_cfg,
    *,
    channels: int = 3,
    num_classes: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download_missing: bool = False,
    reporter=None,
) -> LoadedData:
    """Both splits of a space's ``data`` section: a built-in dataset by name, or the user's own
    (``{folder|arrays|callable: ...}``, :mod:`prunesearch.data.user_data`).

    Args:
        data_cfg: the space's :class:`~prunesearch.space.DataCfg`.
        channels: the user's images are converted to this many channels (a folder).
        num_classes: the model's class count if the space gives it (labels are checked).
        data_dir, download_missing: where a built-in dataset is, and whether to download it.
        reporter: progress of decoding the user's images.
    """
    if isinstance(data_cfg.dataset, dict):
        user = load_user_data(
            data_cfg, channels=channels, num_classes=num_classes, reporter=reporter
        )
        return LoadedData(user.train, user.test, user.source)
    name, syn = data_cfg.dataset, data_cfg.synthetic
    train = load_dataset(name, "train", data_dir=data_dir, download_missing=download_missing, **syn)
    return LoadedData(train, load_dataset(name, "test", data_dir=data_dir, **syn))


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join([*DATASETS, SYNTHETIC])
        raise PrunesearchError(f"unknown dataset {name!r}; known: {known}") from None


def load_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download_missing: bool = False,
    **synthetic_args,
) -> ImageData:
    """Loads ``split`` ("train" or "test") of a dataset into memory.

    Raises:
        PrunesearchError: the files are not found (listing those expected and where it looked),
            or are corrupt.
    """
    if split not in ("train", "test"):
        raise PrunesearchError(f"split must be 'train' or 'test', got {split!r}")
    if name == SYNTHETIC:
        return _synthetic(split, **synthetic_args)
    info = dataset_info(name)
    folder = locate(info, data_dir)
    if folder is None and download_missing:
        root = Path(data_dir) if data_dir is not None else Path.home() / ".cache" / "prunesearch"
        folder = download(info, root)
    if folder is None:
        where = ", ".join(str(r) for r in search_roots(data_dir))
        hint = "" if data_dir is not None else " (pass --data-dir, or --download)"
        raise PrunesearchError(
            f"{name} not found in {where}: expected files {_expected(info)}{hint}"
        )
    assert info.files is not None
    paths = [_find_file(folder, n) for n in info.files[split]]
    if info.name.startswith("cifar"):
        parts = [read_cifar_batch(p) for p in paths if p is not None]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    else:
        images, labels = (read_idx(p) for p in paths if p is not None)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise PrunesearchError(f"{folder}: images and labels of {name} do not match")
        images = images[:, None]  # (N, 1, 28, 28)
    if len(labels) == 0:
        raise PrunesearchError(f"{folder}: the {split} split of {name} holds no images")
    if images.shape[1:] != (info.in_channels, info.image_size, info.image_size):
        raise PrunesearchError(
            f"{folder}: {name} images are {list(images.shape[1:])}, not "
            f"{[info.in_channels, info.image_size, info.image_size]}"
        )
    if labels.min() < 0 or labels.max() >= info.num_classes:
        raise PrunesearchError(
            f"{folder}: labels of {name} out of range (they must be 0..{info.num_classes - 1})"
        )
    return ImageData(
        torch.from_numpy(np.array(images, dtype=np.uint8)),
        torch.from_numpy(labels.astype(np.int64)),
        info,
    )


def validation_size(val_size: int | None, n_train: int) -> int:
    """``data.val_size``, or by default 10% of the training images (at least 1, at most 5000:
    the validation split of the built-in datasets), so that a small folder works unset."""
    if val_size is not None:
        return val_size
    return min(5000, max(1, n_train // 10)) if n_train > 1 else 0


def split_validation(train: ImageData, val_size: int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Carves a held-out validation split from the training set, deterministically.

    The split depends only on ``seed`` (fixed at 0 by default, independent of the run's seed)
    so every run and every search scores on the same images. The test set is never used to
    choose anything. Data stored in a seeded random order (the user's own, ``info.shuffled``)
    gives its last ``val_size`` images: both splits stay views of a memory-mapped cache.
    """
    if not 0 < val_size < len(train):
        raise PrunesearchError(
            f"data.val_size must be in 1..{len(train) - 1} (the training split holds "
            f"{len(train)} images; default 10% of them, at most 5000; 0 for no validation split), "
            f"got {val_size}"
        )
    if train.info.shuffled:
        cut = len(train) - val_size
        return train.subset(slice(0, cut)), train.subset(slice(cut, len(train)))
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return train.subset(train_idx), train.subset(val_idx)
