"""Decode once, train fast: a folder's images decoded and resized once into a uint8 cache.

The cache lives in ``$PRUNESEARCH_CACHE`` (default ``~/.cache/prunesearch``) under
``images/<key>/``: ``images.npy`` (``N x C x H x W`` uint8, opened memory-mapped, so a data set
larger than memory trains from the page cache), ``labels.npy`` and ``manifest.json``. The key is
a sha256 of the file list (path, size, modification time, label, in order) and of the decode
settings (size, channels, resize rule, skipping of bad images, the split): any change to the
folder or the settings gives another key, and so a rebuild. A build is written into a temporary
folder renamed into place at the end, so a killed build leaves no half cache; after a build, the
caches of the same folder and settings under other keys (its earlier contents) are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunesearch.data.image_folder import BadImage, decode_sized
from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.progress import Reporter

__all__ = ["CacheSettings", "CachedImages", "cache_root", "cached_images", "mean_std"]

logger = logging.getLogger(__name__)

FORMAT = "prunesearch.image-cache/v1"
CHUNK = 1024  # images per chunk when copying or summing


@dataclass(frozen=True)
class CacheSettings:
    """How the images are decoded (part of the cache key)."""

    size: tuple[int, int]  # (H, W)
    channels: int
    skip_bad: bool
    resize_rule: str


@dataclass
class CachedImages:
    """A built cache, memory-mapped: the first ``manifest["n_train"]`` images are the training
    split, the rest the test split."""

    path: Path
    images: np.ndarray  # (N, C, H, W) uint8, read-only memory map
    labels: np.ndarray  # (N,) int64
    manifest: dict[str, Any]


def cache_root() -> Path:
    return Path(os.environ.get("PRUNESEARCH_CACHE") or Path.home() / ".cache" / "prunesearch")


def _stat_list(entries: list[tuple[Path, int]]) -> list[list[Any]]:
    out = []
    for path, label in entries:
        try:
            st = path.stat()
        except OSError as exc:
            raise PrunesearchError(f"cannot read {path}: {exc.strerror or exc}") from None
        out.append([str(path), st.st_size, st.st_mtime_ns, label])
    return out


def cache_key(files: list[list[Any]], n_train: int, settings: CacheSettings) -> str:
    blob = json.dumps(
        {"format": FORMAT, "files": files, "n_train": n_train, "settings": asdict(settings)},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()


def _open(folder: Path) -> CachedImages:
    manifest = read_json(folder / "manifest.json", "image cache manifest")
    try:
        images = np.load(folder / "images.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
    except (OSError, ValueError) as exc:
        raise PrunesearchError(
            f"image cache {folder} is unreadable ({exc}); delete it to rebuild"
        ) from None
    return CachedImages(folder, images, labels.astype(np.int64), manifest)


def mean_std(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1], summed in chunks (float64)."""
    c = images.shape[1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    for lo in range(0, len(images), CHUNK):
        x = np.asarray(images[lo : lo + CHUNK], dtype=np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0.0))
    return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-3)), 6) for s in std]


class _Build:
    """Decodes the entries into ``tmp/images.npy``; knows which were skipped."""

    def __init__(self, tmp: Path, settings: CacheSettings, exact: bool, reporter: Reporter) -> None:
        self.tmp, self.settings, self.exact, self.reporter = tmp, settings, exact, reporter
        self.images: np.ndarray | None = None
        self.skipped: list[str] = []
        self.resized = 0  # images whose own size was not the target's

    def _decode(self, path: Path) -> np.ndarray | None:
        try:
            array, native = decode_sized(path, self.settings.size, self.settings.channels)
        except BadImage as exc:
            if not self.settings.skip_bad:
                raise PrunesearchError(
                    f"cannot decode image {path}: {exc} (data.skip_bad_images: true skips "
                    "such files and counts them)"
                ) from None
            self.skipped.append(str(path))
            return None
        if native != self.settings.size:
            if self.exact:
                raise PrunesearchError(
                    f"images differ in size: {path} is {native[0]}x{native[1]}, others "
                    f"{self.settings.size[0]}x{self.settings.size[1]}; set data.image_size "
                    "(N or [H, W]) to resize them"
                )
            self.resized += 1
        return array

    def _store(self, array: np.ndarray, index: int, total: int) -> None:
        if self.images is None:
            self.images = np.lib.format.open_memmap(
                self.tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(total, *array.shape)
            )
        self.images[index] = array

    def run(self, entries: list[tuple[Path, int]]) -> tuple[np.ndarray, list[bool]]:
        kept: list[bool] = []
        n = 0
        self.reporter.work_start(f"decoding {len(entries)} images", len(entries))
        for i, (path, _) in enumerate(entries):
            array = self._decode(path)
            if array is not None:
                self._store(array, n, len(entries))
                n += 1
            kept.append(array is not None)
            if (i + 1) % 64 == 0 or i + 1 == len(entries):
                self.reporter.work_step(i + 1)
        if self.images is None:
            raise PrunesearchError(f"no readable images among {len(entries)} files")
        return self._trim(n), kept

    def _trim(self, n: int) -> np.ndarray:
        assert self.images is not None
        if n == len(self.images):
            self.images.flush()
            return self.images
        trimmed = np.lib.format.open_memmap(
            self.tmp / "trimmed.npy", mode="w+", dtype=np.uint8, shape=(n, *self.images.shape[1:])
        )
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            trimmed[lo:hi] = self.images[lo:hi]
        trimmed.flush()
        del self.images
        os.replace(self.tmp / "trimmed.npy", self.tmp / "images.npy")
        return trimmed


def _remove_stale(root: Path, manifest: dict[str, Any]) -> None:
    """Removes the caches of the same folder and settings under other keys: the folder's
    earlier contents (a cache of other settings, e.g. another image size, is kept)."""
    for folder in root.iterdir():
        if folder.name == manifest["key"] or folder.name.startswith("."):
            continue
        try:
            other = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        same = ("source", "settings")
        if all(other.get(k) == json.loads(json.dumps(manifest.get(k))) for k in same):
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("removed the stale image cache %s", folder)


def _write(
    tmp: Path, entries: list[tuple[Path, int]], n_train: int, build: _Build, header: dict
) -> dict[str, Any]:
    """Decodes ``entries`` into ``tmp`` (images, labels, manifest); returns the manifest."""
    images, kept = build.run(entries)
    labels = np.array([lab for (_, lab), k in zip(entries, kept, strict=True) if k], np.int64)
    kept_train = sum(kept[:n_train])
    if kept_train == 0:
        raise PrunesearchError(f"{header['source']}: no readable training images")
    mean, std = mean_std(images[:kept_train])
    np.save(tmp / "labels.npy", labels)
    manifest = header | {
        "n_train": kept_train,
        "n_test": len(labels) - kept_train,
        "shape": list(images.shape[1:]),
        "skipped": build.skipped,
        "resized": build.resized,
        "train_mean": mean,
        "train_std": std,
    }
    del images
    atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def _reused(final: Path, exact: bool, settings: CacheSettings, source: str) -> CachedImages:
    logger.info("reusing the image cache %s", final)
    cached = _open(final)
    if exact and cached.manifest.get("resized"):
        h, w = settings.size
        raise PrunesearchError(
            f"images differ in size: {cached.manifest['resized']} of {source} are not "
            f"{h}x{w}; set data.image_size (N or [H, W]) to resize them"
        )
    return cached


def cached_images(
    entries: list[tuple[Path, int]],
    n_train: int,
    settings: CacheSettings,
    *,
    source: str,
    exact: bool = False,
    reporter: Reporter | None = None,
) -> CachedImages:
    """The cache of ``entries`` (the first ``n_train`` the training split), built if missing.

    Args:
        entries: ``(image path, label)`` in the order they are stored.
        n_train: how many of ``entries`` are the training split.
        settings: how they are decoded.
        source: the folder they come from (stale caches of it are removed after a build).
        exact: every image must already have ``settings.size`` (no ``data.image_size``; not
            part of the key: such a cache is the same as one resized to that size).
        reporter: progress of the decoding.

    Raises:
        PrunesearchError: an image cannot be decoded (unless skipped), images differ in size
            with no ``image_size``, no image is readable, or the cache cannot be written.
    """
    key = cache_key(_stat_list(entries), n_train, settings)
    root = cache_root() / "images"
    final = root / key
    if (final / "manifest.json").is_file():
        return _reused(final, exact, settings, source)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=root))
    except OSError as exc:
        raise PrunesearchError(f"cannot write the image cache in {root}: {exc}") from None
    header = {"format": FORMAT, "key": key, "source": source, "settings": asdict(settings)}
    try:
        build = _Build(tmp, settings, exact, reporter or Reporter())
        manifest = _write(tmp, entries, n_train, build, header)
        del build
        try:
            os.rename(tmp, final)
        except OSError:  # built meanwhile by another process: theirs is the same
            if not (final / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PrunesearchError(f"cannot write the image cache in {root}: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_stale(root, manifest)
    return _open(final)
