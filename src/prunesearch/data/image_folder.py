"""The image-folder layout: find the images and their classes, and decode one image.

Layouts (as torchvision's ``ImageFolder``): ``DIR/<class>/*``, or ``DIR/train/<class>/*`` with
``DIR/test/<class>/*`` (or ``DIR/val/<class>/*``) as the test split. Classes are the
training folder's subfolders sorted by name; label ``i`` is the ``i``-th of them. Files are
read through Pillow: JPEG, PNG, BMP, WebP, TIFF, by extension (case-insensitive); any other
file (``.DS_Store``, ``Thumbs.db``, ``notes.txt``) is ignored and counted. Subfolders of a
class folder are searched too; hidden files and folders are skipped like other non-images.

Decoding: palette, grayscale, RGBA and other modes are converted to the wanted channel count
(1: luminance ``L``; 3: ``RGB``; transparency composited onto black). An image is brought to
``(H, W)`` by resizing it so that it covers ``H x W`` with its aspect ratio kept (the shorter
side, for a square target) with bilinear filtering, then cropping the centre.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunesearch.errors import PrunesearchError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_RULE",
    "BadImage",
    "FolderListing",
    "decode_image",
    "decode_sized",
    "first_size",
    "list_folder",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
RESIZE_RULE = "resize to cover HxW keeping the aspect ratio (bilinear), then centre crop"
TEST_FOLDERS = ("test", "val")


class BadImage(Exception):
    """An image file Pillow cannot decode (corrupt, truncated, not what its name says)."""


@dataclass
class FolderListing:
    """The image files of a folder, by split, each with its label.

    Attributes:
        classes: class names (folder names) sorted; a label indexes this list.
        train: ``(path, label)`` of every training image, in class then path order.
        test: the same for the test split, or None when the folder has none.
        ignored: files skipped because their extension is not an image's.
    """

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]] | None
    ignored: list[str] = field(default_factory=list)


def _class_folders(folder: Path, ignored: list[str]) -> list[Path]:
    """The class folders of ``folder`` by name; its loose files are counted as ignored."""
    try:
        children = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise PrunesearchError(f"cannot read folder {folder}: {exc.strerror or exc}") from None
    ignored.extend(str(p) for p in children if not p.is_dir())
    return [p for p in children if p.is_dir() and not p.name.startswith(".")]


def _images(folder: Path, label: int, ignored: list[str]) -> list[tuple[Path, int]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append((path, label))
            else:
                ignored.append(str(path))
    return found


def _raise(exc: OSError) -> None:
    raise PrunesearchError(f"cannot read folder {exc.filename}: {exc.strerror or exc}")


def _split(folder: Path, classes: list[str] | None, ignored: list[str]):
    found = _class_folders(folder, ignored)
    names = [p.name for p in found]
    if classes is None:
        classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise PrunesearchError(
                f"{folder}: class folder(s) {', '.join(extra[:5])} are not among the training "
                f"classes ({', '.join(classes[:10])})"
            )
    entries: list[tuple[Path, int]] = []
    for path in found:
        images = _images(path, classes.index(path.name), ignored)
        if not images:
            raise PrunesearchError(f"class folder {path} holds no images")
        entries.extend(images)
    return classes, entries


def list_folder(root: str | os.PathLike) -> FolderListing:
    """The images of ``root`` in either layout (see the module's docstring).

    Raises:
        PrunesearchError: the folder is missing or unreadable, holds fewer than two classes,
            an empty class folder, or a test split with classes the training split lacks.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrunesearchError(f"data folder not found: {root}")
    ignored: list[str] = []
    train_dir = root / "train"
    test_dir = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        classes, train = _split(train_dir, None, ignored)
        _, test = _split(test_dir, classes, ignored)
        where = train_dir
    else:
        classes, train = _split(root, None, ignored)
        test, where = None, root
    if len(classes) < 2:
        raise PrunesearchError(
            f"{where} holds {len(classes)} class folder(s): a classifier needs at least two "
            "(one subfolder of images per class)"
        )
    return FolderListing(root, classes, train, test, ignored)


def _resize_crop(image, size: tuple[int, int]):
    from PIL import Image

    h, w = size
    scale = max(h / image.height, w / image.width)
    rh, rw = max(h, round(image.height * scale)), max(w, round(image.width * scale))
    if (rh, rw) != (image.height, image.width):
        image = image.resize((rw, rh), Image.Resampling.BILINEAR)
    top, left = (rh - h) // 2, (rw - w) // 2
    return image.crop((left, top, left + w, top + h))


def _to_mode(image, channels: int):
    from PIL import Image

    if image.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def decode_image(path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """One image as ``(C, H, W)`` uint8, converted and brought to ``size`` (None: as it is).

    Raises:
        BadImage: Pillow cannot decode it (the caller names the file, or skips it).
    """
    return decode_sized(path, size, channels)[0]


def first_size(paths: list[Path]) -> tuple[int, int] | None:
    """``(H, W)`` of the first of ``paths`` whose header Pillow reads (None: none)."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                return image.height, image.width
        except (OSError, SyntaxError, ValueError):
            continue
    return None


def decode_sized(
    path: Path, size: tuple[int, int] | None, channels: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`, and the image's own ``(H, W)`` before resizing."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise PrunesearchError(f"data.channels must be 1 or 3 for an image folder, got {channels}")
    try:
        with Image.open(path) as image:
            native = (image.height, image.width)
            if size is not None and image.format == "JPEG" and native != size:
                image.draft(image.mode, (size[1], size[0]))  # DCT scaling, still >= size
            image.load()
            image = _to_mode(image, channels)
            if size is not None:
                image = _resize_crop(image, size)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"{exc}") from None
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)), native
