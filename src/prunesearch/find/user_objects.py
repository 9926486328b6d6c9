"""The user's own objects as the search's parts: a model's reference, its datasets as image
tensors, and a score function as a candidate scorer (:class:`ScoreFunction`).

``ps.search`` (``api.py``) scores candidates either with the built-in objectives on the user's
``(train, val)`` datasets, or with the user's ``score(model) -> float``; both plug into the CLI's
machinery (``Candidates.on_graph``) as a scorer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prunesearch.data.datasets import DatasetInfo, ImageData
from prunesearch.device import to_device
from prunesearch.engine.graph import ChannelGraph
from prunesearch.engine.importance import Importance
from prunesearch.errors import PrunesearchError
from prunesearch.find.objectives import recalibrate_bn
from prunesearch.models import list_models, resolve_model
from prunesearch.spec import reinitialize

__all__ = ["BadScore", "ScoreFunction", "image_data", "model_reference", "weights_digest"]


class BadScore(Exception):
    """A user's score function returned something that is not a finite number. Not a
    :class:`PrunesearchError`, so that a study does not take it for a failed candidate and
    retry another: ``ps.search`` turns it into one, naming the trial."""


def model_reference(model: nn.Module) -> str:
    """What a spec records as the model: its registered name when its class is registered
    (``@ps.register_model``), else ``"pkg.module:Class"`` (``build`` imports it when allowed)."""
    cls = type(model)
    name = cls.__name__
    if name in list_models() and resolve_model(name) is cls:
        return name
    return f"{cls.__module__}:{cls.__qualname__}"


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state (names, shapes, values): the base's identity in study names
    and specs, as the file digest is for a base on disk."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(f"{key}:{tuple(value.shape)}:{value.dtype}".encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tensors(dataset: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = getattr(dataset, "tensors", None)  # a TensorDataset: no per-item loop
    if isinstance(tensors, tuple) and len(tensors) == 2:
        return tensors[0], tensors[1]
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError:
        raise PrunesearchError(
            f"{where}: give a map-style dataset (len() and [i]) of (image, label) pairs, "
            f"got {type(dataset).__name__}"
        ) from None
    if not items:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    xs, ys = zip(*((x, y) for x, y, *_ in items), strict=True)
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys)


def image_data(dataset: Any, where: str, shape: tuple[int, ...]) -> ImageData:
    """A dataset of ``(image, label)`` pairs as the loaders' image tensors, unchanged: the
    images are what the model takes (normalised by the user), and no augmentation is added.

    Raises:
        PrunesearchError: the images do not have the example input's shape, or the labels are
            not class indices.
    """
    images, labels = _tensors(dataset, where)
    if len(labels) == 0:
        raise PrunesearchError(f"{where}: the dataset is empty")
    if tuple(images.shape[1:]) != tuple(shape):
        raise PrunesearchError(
            f"{where}: images of shape {list(images.shape[1:])}, but the example input's "
            f"are {list(shape)}"
        )
    if labels.dim() != 1 or labels.dtype.is_floating_point or bool((labels < 0).any()):
        raise PrunesearchError(f"{where}: labels must be class indices (one integer per image)")
    c = images.shape[1]
    info = DatasetInfo(
        name="python",
        num_classes=int(labels.max()) + 1,
        in_channels=c,
        image_size=images.shape[-1],
        mean=(0.0,) * c,  # the loader's (x / 255 - mean) / std is then x itself
        std=(1 / 255,) * c,
        flip=False,
        crop_padding=0,
    )
    return ImageData(images.float(), labels.long(), info)


class ScoreFunction:
    """Scores widths with the user's ``fn(model) -> float`` (higher is better).

    Args:
        graph: the user's model, traced.
        fn: the score function; what it raises reaches the caller unchanged.
        scratch: give ``fn`` an untrained model of the widths (seeded: the same init for every
            candidate) rather than the pruned model with inherited weights.
        importance: which channels an inherited model keeps.
        calib: batches that recalibrate an inherited model's BN statistics (none: as pruned).
        device: where the model is put before ``fn`` sees it.
    """

    def __init__(
        self,
        graph: ChannelGraph,
        fn: Callable[[nn.Module], float],
        *,
        scratch: bool,
        importance: Importance,
        calib: list[torch.Tensor],
        device: torch.device,
    ) -> None:
        self.graph, self.fn, self.scratch, self.importance = graph, fn, scratch, importance
        self.calib, self.device = calib, device

    def model(
        self, widths: Mapping[str, int], importance: Importance | None = None, seed: int = 0
    ) -> nn.Module:
        """The model ``fn`` receives for ``widths``."""
        if self.scratch:
            torch.manual_seed(seed)
            return to_device(reinitialize(self.graph.prune(widths)), self.device, False)
        model = self.graph.prune(widths, self.importance if importance is None else importance)
        model = to_device(model, self.device, False)
        recalibrate_bn(model, self.calib)
        return model.eval()

    def score(
        self,
        widths: Mapping[str, int],
        importance: Importance | None = None,
        seed: int | None = None,
    ) -> float:
        """``fn``'s value of the candidate (``seed``: another init, from-scratch only).

        Raises:
            BadScore: ``fn`` returned something other than a finite number.
        """
        value = self.fn(self.model(widths, importance, seed or 0))
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise BadScore(
                f"the score function returned {value!r} for widths {dict(widths)}; it must "
                "return a finite number to maximise"
            )
        return number
