"""Physical pruning: copy a model and slice the tensors of every module whose channels shrink."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from prunesearch.engine.channels import Layout, ModuleRole

__all__ = ["layout_indices", "prune_copy", "slice_module"]


def layout_indices(
    layout: Layout, group_of: Callable[[int], int | None], kept: dict[int, torch.Tensor]
) -> torch.Tensor | None:
    """Indices kept along a tensor's channel (or flattened feature) dim; None if all are kept.

    ``group_of`` maps a channel space to its group index (None for fixed spaces); ``kept`` holds
    the sorted channel indices kept per pruned group.
    """
    parts, offset, pruned = [], 0, False
    for seg in layout:
        g = group_of(seg.space)
        if g is not None and g in kept:
            idx = kept[g]
            # (width, inner) feature indices of the kept channels, then flattened
            feats = idx[:, None] * seg.inner + torch.arange(seg.inner)[None, :]
            parts.append(feats.reshape(-1) + offset)
            pruned = True
        else:
            parts.append(torch.arange(offset, offset + seg.length * seg.inner))
        offset += seg.length * seg.inner
    return torch.cat(parts) if pruned else None


def _take(t: torch.Tensor | None, dim: int, idx: torch.Tensor | None) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.detach()
    return t.index_select(dim, idx.to(t.device)) if idx is not None else t.clone()


def _set_param(m: nn.Module, name: str, value: torch.Tensor | None, old) -> None:
    if value is not None:
        setattr(m, name, nn.Parameter(value, requires_grad=old.requires_grad))


def slice_module(m: nn.Module, kind: str, in_idx, out_idx) -> None:
    """Slices ``m``'s tensors in place as a module of role ``kind`` (:class:`ModuleRole`):
    ``in_idx``/``out_idx`` are the kept input/output channels (None: all). A conv's other
    parameters with one entry per filter (a weight-standardised conv's gain) go with its
    filters."""
    w, b = m.weight, getattr(m, "bias", None)
    if kind in ("conv", "gconv", "linear"):
        if kind == "gconv" and in_idx is not None:
            # every conv group keeps the same input positions: those of the first group
            in_idx = in_idx[: len(in_idx) // m.groups]
        for name, p in list(m._parameters.items()):
            if name not in ("weight", "bias") and p is not None:
                per_filter = p.dim() >= 1 and p.shape[0] == w.shape[0]
                _set_param(m, name, _take(p, 0, out_idx if per_filter else None), p)
        _set_param(m, "weight", _take(_take(w, 0, out_idx), 1, in_idx), w)
        _set_param(m, "bias", _take(b, 0, out_idx), b)
        c_in, c_out = m.weight.shape[1] * getattr(m, "groups", 1), m.weight.shape[0]
        if kind == "linear":
            m.in_features, m.out_features = c_in, c_out
        else:
            m.in_channels, m.out_channels = c_in, c_out
        return
    if kind == "dwconv":
        _set_param(m, "weight", _take(w, 0, in_idx), w)
        _set_param(m, "bias", _take(b, 0, in_idx), b)
        m.in_channels = m.out_channels = m.groups = m.weight.shape[0]
        return
    if kind not in ("bn", "ln", "gn"):  # pragma: no cover - roles come from analyze
        raise AssertionError(kind)
    _set_param(m, "weight", _take(w, 0, in_idx), w)
    _set_param(m, "bias", _take(b, 0, in_idx), b)
    if kind == "bn":
        for buf in ("running_mean", "running_var"):
            if getattr(m, buf, None) is not None:
                setattr(m, buf, _take(getattr(m, buf), 0, in_idx))
    if in_idx is None:
        return
    if kind == "bn":
        m.num_features = len(in_idx)
    elif kind == "ln":
        m.normalized_shape = (len(in_idx),)
    else:  # whole groups are kept
        m.num_groups = len(in_idx) // (m.num_channels // m.num_groups)
        m.num_channels = len(in_idx)


def _slice_tensor(owner: nn.Module, attr: str, dim: int, idx: torch.Tensor | None) -> None:
    """A parameter or buffer sliced along ``dim`` (an elementwise scale's ``param`` role)."""
    old = getattr(owner, attr)
    new = _take(old, dim, idx)
    if isinstance(old, nn.Parameter):
        _set_param(owner, attr, new, old)
    else:
        setattr(owner, attr, new)


def _tensors(modules: dict[str, nn.Module], role: ModuleRole) -> list[torch.Tensor]:
    """The tensors a role slices (left out of the deep copy, replaced by their slices)."""
    if role.kind == "param":
        owner, _, attr = role.name.rpartition(".")
        return [getattr(modules[owner], attr)]
    m = modules[role.name]
    return list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))


def prune_copy(
    model: nn.Module,
    roles: dict[str, ModuleRole],
    indices: Callable[[ModuleRole], tuple[torch.Tensor | None, torch.Tensor | None]],
) -> nn.Module:
    """A deep copy of ``model`` with each role module sliced by ``indices(role)``.

    ``indices`` returns ``(in_idx, out_idx)``. Tensors that will be sliced are not copied first
    (they are left out of the deep copy through its memo), so pruning costs about one copy of
    the kept weights.
    """
    modules = dict(model.named_modules())
    memo: dict[int, object] = {}
    for role in roles.values():
        for t in _tensors(modules, role):
            memo[id(t)] = t  # reuse during the copy; replaced by fresh slices below
    new = copy.deepcopy(model, memo)
    new_modules = dict(new.named_modules())
    for name, role in roles.items():
        in_idx, out_idx = indices(role)
        if role.kind == "param":
            owner, _, attr = name.rpartition(".")
            _slice_tensor(new_modules[owner], attr, role.dim, in_idx)
            continue
        m = new_modules[name]
        slice_module(m, role.kind, in_idx, out_idx)
        for buf_name, buf in list(m.named_buffers(recurse=False)):
            if buf_name not in ("running_mean", "running_var") and buf is not None:
                setattr(m, buf_name, buf.clone())  # e.g. num_batches_tracked: never shared
    return new
