"""Channel importance signals: which channels of a group to keep.

* ``l1``: sum over the group's producers (each place it holds in their outputs: ``rows``) of
  each output filter's L1 norm (Li et al., 2017).
* ``slimming``: sum over the BatchNorms normalising the group of |gamma| (Liu et al., 2017,
  network slimming); groups that no BN normalises fall back to ``l1``.
* a mapping of group name to a 1-D score tensor of the group's size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, Union

import torch
from torch import Tensor, nn

from prunesearch.errors import PrunesearchError
from prunesearch.vocab import SIGNALS, require

__all__ = ["SIGNALS", "Importance", "comparable_scores", "group_scores", "top_channels"]

logger = logging.getLogger(__name__)

Importance = Union[str, Mapping[str, Tensor]]  # noqa: UP007  (a runtime alias)


class Group(Protocol):
    """What a signal reads of a channel group (:class:`prunesearch.engine.graph.ChannelGroup`)."""

    name: str
    size: int
    rows: list[tuple[str, int]]
    norms: list[tuple[str, int, int]]


def _filter_l1(modules: Mapping[str, nn.Module], group: Group, per_weight: bool) -> Tensor:
    """Each channel's filter L1 norm summed over the group's producers (``per_weight``: each
    divided by its fan-in, averaged over producers)."""
    score = torch.zeros(group.size, dtype=torch.float64)
    for p, offset in group.rows:
        w = modules[p].weight.detach()[offset : offset + group.size]
        if per_weight:  # (as measured since the first release: the sum in float64)
            w = w.to(torch.float64).cpu()
        l1 = w.abs().flatten(1).sum(1).to(torch.float64).cpu()  # (size,)
        score += l1 / w[0].numel() if per_weight else l1
    return score / len(group.rows) if per_weight else score


def _slimming(modules: Mapping[str, nn.Module], group: Group) -> Tensor | None:
    score, found = torch.zeros(group.size, dtype=torch.float64), False
    for bn, offset, inner in group.norms:
        gamma = modules[bn].weight
        if gamma is None:
            continue
        g = gamma.detach().abs().to(torch.float64).cpu()
        score += g[offset : offset + group.size * inner].view(group.size, inner).mean(1)
        found = True
    return score if found else None


def group_scores(
    model: nn.Module, groups: Sequence[Group], importance: Importance
) -> dict[str, Tensor]:
    """Per-channel scores of ``groups`` of ``model`` (higher = more important)."""
    if isinstance(importance, Mapping):
        out = {}
        for group in groups:
            score = importance.get(group.name)
            if score is None:
                raise PrunesearchError(f"importance has no scores for group {group.name!r}")
            score = torch.as_tensor(score).detach().flatten().to(torch.float64).cpu()
            if score.numel() != group.size:
                raise PrunesearchError(
                    f"importance[{group.name!r}] has {score.numel()} "
                    f"scores; the group has {group.size} channels"
                )
            out[group.name] = score
        return out
    if importance not in SIGNALS:
        raise PrunesearchError(
            f"unknown importance signal {importance!r}; choose one of: {', '.join(SIGNALS)}"
        )
    modules = dict(model.named_modules())
    out = {}
    for group in groups:
        score = _slimming(modules, group) if importance == "slimming" else None
        if score is None:
            if importance == "slimming":
                logger.debug("group %s has no BatchNorm: slimming falls back to l1", group.name)
            score = _filter_l1(modules, group, per_weight=False)
        out[group.name] = score
    return out


def top_channels(scores: Tensor, width: int, step: int = 1, interleaved: bool = False) -> Tensor:
    """Indices of the ``width`` highest scores, in ascending channel order (ties: lower index).

    With ``step`` > 1 (``width`` a multiple of it), whole units are kept by their summed
    scores: ``interleaved``, the same positions in each of ``step`` equal runs (a grouped
    conv's groups); else whole runs of ``step`` channels (a GroupNorm's groups)."""
    if step > 1:
        size = scores.numel()
        if interleaved:  # (step runs, positions): keep positions
            runs = top_channels(scores.view(step, size // step).sum(0), width // step)
            return (torch.arange(step)[:, None] * (size // step) + runs[None, :]).flatten()
        blocks = top_channels(scores.view(size // step, step).sum(1), width // step)
        return (blocks[:, None] * step + torch.arange(step)[None, :]).flatten()
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:width].sort().values


def comparable_scores(model: nn.Module, groups: Sequence[Group], signal: str) -> dict[str, Tensor]:
    """Per-channel scores on one scale across groups, for global (cross-layer) decisions.

    ``slimming``: mean |gamma| over the BNs normalising each channel (a residual group has one
    BN per block; summing would favour long stages); groups without BN are left out.
    ``l1``: each producer's filter L1 norm divided by its fan-in, averaged over producers.
    """
    require("signal", signal, SIGNALS)
    modules = dict(model.named_modules())
    out = {}
    for g in groups:
        if signal == "l1":
            out[g.name] = _filter_l1(modules, g, per_weight=True)
            continue
        score = _slimming(modules, g)
        if score is not None:
            out[g.name] = score / sum(1 for bn, _, _ in g.norms if modules[bn].weight is not None)
    return out
