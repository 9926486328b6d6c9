"""Fast batch loader: the whole dataset as a uint8 tensor on the device, augmented per batch.

No per-sample Python: a batch is gathered with one index, randomly cropped (zero padding) with
one advanced-indexing gather, flipped with one masked ``flip``, and normalised with one fused
multiply-add. The order and the augmentation of epoch ``e`` depend only on ``(seed, e)``, so a
run resumed at an epoch boundary sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from prunesearch.data.datasets import ImageData

__all__ = ["BatchLoader"]


class BatchLoader:
    """Iterates ``(images, labels)`` batches of an :class:`ImageData` on ``device``.

    Args:
        data: the split to iterate.
        batch_size: global batch size; with ``world_size > 1`` each rank gets its share.
        train: shuffle, augment (if ``augment``) and drop the last incomplete batch.
        augment: random crop with padding, and horizontal flips where the dataset allows.
        channels_last: return batches in channels-last memory format.
        shard: ``(rank, world_size)``: this process's share of every batch (DDP).
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int,
        *,
        train: bool,
        augment: bool = True,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        rank, world_size = shard
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} ranks")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)  # (N, C, H, W) uint8
        self.labels = data.labels.to(self.device)
        self.info = data.info
        self.batch_size, self.train, self.augment = batch_size, train, augment and train
        self.seed, self.channels_last = seed, channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        c = self.images.shape[1]
        mean = torch.tensor(self.info.mean[:c], device=self.device).view(1, c, 1, 1)
        std = torch.tensor(self.info.std[:c], device=self.device).view(1, c, 1, 1)
        self._scale = 1.0 / (255.0 * std)  # x/255 - mean) / std  ==  x * scale + shift
        self._shift = -mean / std

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        return gen

    def _crop_flip(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.info.crop_padding
        if p:
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
            w2 = w + 2 * p
            oy = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(self.device)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(self.device)
            # flat offsets of each crop's pixels in the padded (H+2p)*(W+2p) plane: (B, H*W)
            pixel = (
                torch.arange(h, device=self.device)[:, None] * w2
                + torch.arange(w, device=self.device)[None, :]
            ).flatten()
            idx = (oy * w2 + ox)[:, None] + pixel[None, :]
            flat = padded.flatten(2)  # (B, C, (H+2p)*(W+2p))
            x = flat.gather(2, idx[:, None, :].expand(b, flat.shape[1], h * w)).view(b, -1, h, w)
        if self.info.flip:
            flip = (torch.rand(b, generator=gen) < 0.5).to(self.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = self._generator()
        n = len(self.labels)
        order = torch.randperm(n, generator=gen).to(self.device) if self.train else None
        share = self.batch_size // self.world_size
        for i in range(len(self)):
            lo = i * self.batch_size
            idx = (
                order[lo : lo + self.batch_size]
                if order is not None
                else torch.arange(lo, min(lo + self.batch_size, n), device=self.device)
            )
            if self.world_size > 1:
                idx = idx[self.rank * share : (self.rank + 1) * share]
            x = self.images[idx]
            if self.augment:
                x = self._crop_flip(x, gen)
            memory = torch.channels_last if self.channels_last else torch.contiguous_format
            x = torch.addcmul(self._shift, x.float(), self._scale).contiguous(memory_format=memory)
            yield x, self.labels[idx]
