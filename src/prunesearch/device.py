"""Moving a model to its device and memory format, around a oneDNN bug pruning walks into.

Channels-last (NHWC) trains the unpruned resnet20 1.35x faster on CPU (pruned nets often train
slower in it: the format a run trains in is chosen per run, in ``train.py``), but oneDNN's x64
1x1-convolution backward-weights kernel (``jit_1x1``) mishandles an NHWC source with fewer input
channels than its channel block (8 with AVX2, 16 with AVX-512) when the stride is above 1: it
reads and writes past its reduce-to-unit-stride workspace (uxlfoundation/oneDNN#6035, open).
Measured on this project's AVX2 machine (torch 2.13.0+cpu): weight gradients with a relative
error above 1, a hang with two threads, heap corruption ("free(): invalid next size", "double
free") with one. Pruning makes exactly these layers: a ResNet's strided 1x1 projection shortcut
reads the previous stage's residual stream, and a search may cut that stream below 8 channels.

So on CPU the convolutions at risk run in NCHW (their weight kept contiguous, their input made
contiguous by a forward pre-hook), which takes the kernel's blocked-source path, correct in
every case measured; their output goes back to channels-last (a forward hook), so the rest of
the network stays channels-last.
"""

from __future__ import annotations

import torch
from torch import nn

from prunesearch.errors import PrunesearchError

__all__ = ["GUARD_BELOW_CHANNELS", "at_risk", "resolve_device", "to_device"]

# the largest channel block of oneDNN's x64 1x1 kernels (AVX-512); AVX2's is 8
GUARD_BELOW_CHANNELS = 16


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise PrunesearchError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PrunesearchError("--device cuda: no CUDA device is available")
    return torch.device(name)


def at_risk(module: nn.Module) -> bool:
    """A convolution oneDNN's NHWC 1x1 backward-weights kernel can get wrong."""
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and max(module.stride) > 1
        and module.groups == 1
        and module.in_channels < GUARD_BELOW_CHANNELS
    )


def _nchw_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _nhwc_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    # back to channels-last, or the NCHW output spreads through every op it meets (a residual
    # sum takes its first operand's format) and the network runs in mixed formats
    return output.contiguous(memory_format=torch.channels_last)


def to_device(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model.to(device, memory_format)``, with the at-risk convolutions kept in NCHW on CPU
    (idempotent: a module gets one hook however often it is moved)."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory)
    if channels_last and torch.device(device).type == "cpu":
        for m in model.modules():
            if not at_risk(m):
                continue
            # a 1x1 weight is "contiguous" in both formats; only NCHW strides make PyTorch
            # choose the NCHW kernel (and every .to(channels_last) makes them NHWC again)
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            if not getattr(m, "_prunesearch_nchw", False):
                m.register_forward_pre_hook(_nchw_input)
                m.register_forward_hook(_nhwc_output)
                m._prunesearch_nchw = True
    return model
