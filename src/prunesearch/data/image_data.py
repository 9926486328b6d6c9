"""What a split of a dataset is: uint8 images, int64 labels, and what the dataset is."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DatasetInfo", "ImageData"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and how to find, augment and normalise it."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int | tuple[int, int]  # N (square) or (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips preserve the label
    crop_padding: int  # random-crop padding for augmentation
    subdirs: tuple[str, ...] = ()
    files: dict[str, tuple[str, ...]] | None = None  # split -> file names
    url: str = ""
    md5: dict[str, str] | None = None  # download name -> md5
    archive: str = ""  # downloads are one tar.gz (CIFAR) rather than the files themselves
    classes: tuple[str, ...] = ()  # class names, where the data names them
    shuffled: bool = False  # stored in a seeded random order: the validation split is the tail

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of an image."""
        s = self.image_size
        h, w = (s, s) if isinstance(s, int) else s
        return (self.in_channels, h, w)


@dataclass
class ImageData:
    """Images as ``(N, C, H, W)`` uint8 and labels as ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor | slice) -> ImageData:
        return ImageData(self.images[idx], self.labels[idx], self.info)
