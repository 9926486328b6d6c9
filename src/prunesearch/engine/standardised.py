"""Weight-standardised convolutions (timm's ``StdConv2d``, ``ScaledStdConv2d``; BiT, NFNets):
a conv subclass whose own forward standardises each filter before convolving.

Recognised by what it computes, not by its class name, on a copy of the module:

* an affine change of each filter (``a * w + b``, ``a > 0``) leaves the output unchanged (the
  standardisation removes it; a plain conv would scale its output);
* changing one filter changes its own output channel alone, and a copy sliced as pruning
  slices a conv (its weight, bias and per-filter parameters such as a gain) gives exactly the
  kept output channels: its output channels prune exactly;
* a copy sliced on its input channels too runs on the kept inputs. Its filters are then
  standardised over the kept input channels alone: their statistics change, as a LayerNorm's
  over channels do when channels are removed (the stated semantics, README).

fvcore counts the standardisation too (timm's ``F.batch_norm`` over the weight): that cost is
measured once per module, per weight element, so the analytic FLOP count stays exact.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from prunesearch.engine.flops import count_flops
from prunesearch.engine.prune import slice_module

__all__ = ["standardisation_flops"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def standardisation_flops(m: nn.Module, in_shape: tuple[int, ...]) -> int | None:
    """fvcore's FLOPs per weight element for the standardisation of a weight-standardised conv
    ``m`` (a ``groups=1`` conv subclass with its own forward), on an input of ``in_shape``; None
    if ``m`` does not compute as one (see the module docstring)."""
    if not isinstance(m, _CONVS) or m.groups != 1 or list(m.children()):
        return None
    if m.out_channels < 6 or m.in_channels < 2:
        return None
    gen = torch.Generator().manual_seed(0)
    # a few of its filters over a few inputs: as telling, and cheap to copy and run
    c_in = min(5, m.in_channels)
    memo = {
        id(p): nn.Parameter(
            p.detach()[:6, :c_in].float().cpu() if p is m.weight else p.detach()[:6].float().cpu()
        )
        if p.dim() >= 1 and p.shape[0] == m.out_channels
        else nn.Parameter(p.detach().float().cpu().clone())
        for p in m.parameters(recurse=False)
    }
    probe = copy.deepcopy(m, memo).eval()
    try:
        slice_module(probe, "conv", None, None)  # its channel counts from the sliced weight
    except Exception:
        return None
    with torch.no_grad():  # a gain initialised to 0 (NF-ResNets' last conv) would hide the
        for p in probe.parameters():  # rest, tiny weights would make the eps count
            p.copy_(torch.randn(p.shape, generator=gen) if p is probe.weight else 0.5 + p.abs())
    # a small input: the standardisation costs the same at any size, the probe less
    x = torch.randn((1, c_in, *(min(n, 8) for n in in_shape[2:])), generator=gen)
    try:
        with torch.no_grad():
            if not _standardises(probe, x, gen):
                return None
            conv_flops = math.prod(probe(x).shape) * c_in * math.prod(m.kernel_size)
        extra = count_flops(probe, x) - conv_flops
    except Exception:  # its forward is its own: any failure means it is not one we know
        return None
    per_element = probe.weight.numel()
    if extra < 0 or extra % per_element:
        return None  # a cost that is not per weight element: not counted exactly here
    return extra // per_element


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return a.shape == b.shape and float((a - b).abs().max()) <= tol * float(b.abs().max())


def _standardises(probe: nn.Module, x: torch.Tensor, gen: torch.Generator) -> bool:
    y = probe(x)
    w = probe.weight.detach().clone()
    per_filter = (-1,) + (1,) * (w.dim() - 1)
    a = 0.5 + torch.rand(w.shape[0], generator=gen)
    b = torch.randn(w.shape[0], generator=gen)
    probe.weight.copy_(w * a.view(per_filter) + b.view(per_filter))
    if not _close(probe(x), y, 1e-2):  # eps makes it inexact; a plain conv is far off
        return False
    probe.weight.copy_(w)
    probe.weight[0] = torch.randn(w[0].shape, generator=gen)
    y0 = probe(x)
    if _close(y0[:, :1], y[:, :1], 1e-2) or not _close(y0[:, 1:], y[:, 1:], 1e-6):
        return False  # its first filter must make its first channel, and only that one
    probe.weight.copy_(w)
    keep_out = torch.arange(0, w.shape[0], 2)
    keep_in = torch.arange(0, w.shape[1], 2)
    out_only = copy.deepcopy(probe)
    slice_module(out_only, "conv", None, keep_out)
    if not _close(out_only(x), y[:, keep_out], 1e-5):
        return False
    both = copy.deepcopy(probe)
    slice_module(both, "conv", keep_in, keep_out)
    return both(x[:, keep_in]).shape == y[:, keep_out].shape
