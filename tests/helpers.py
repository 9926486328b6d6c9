"""Test helpers: random widths and the dead-channel equivalence check."""

from __future__ import annotations

import random

import torch

import prunesearch as ps


def random_widths(graph: ps.ChannelGraph, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {g.name: rng.randint(1, g.size) for g in graph.groups}


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine parameters and statistics, so that slicing mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def kill_removed_channels(graph: ps.ChannelGraph, widths: dict[str, int]) -> dict:
    """Makes the channels that ``widths`` removes dead in ``graph.model`` (in place).

    Producers' rows and biases are zeroed and BNs map those channels to 0, so removing them
    cannot change the output. Returns an importance mapping that keeps exactly the live ones.
    """
    kept = graph.keep_indices(widths, "l1")
    modules = dict(graph.model.named_modules())
    scores = {}
    with torch.no_grad():
        for name, idx in kept.items():
            g = graph.group(name)
            dead = torch.ones(g.size, dtype=torch.bool)
            dead[idx] = False
            scores[name] = (~dead).double()
            for p in g.producers:
                m = modules[p]
                m.weight[dead] = 0
                if m.bias is not None:
                    m.bias[dead] = 0
            for bn, offset, inner in g.norms:
                feat = (torch.nonzero(dead).flatten()[:, None] * inner
                        + torch.arange(inner)).flatten() + offset
                modules[bn].weight[feat] = 0
                modules[bn].bias[feat] = 0
    return scores


def assert_equivalent_after_pruning(model: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """Prunes random widths of a dead-channel model and checks the outputs do not change."""
    randomize_bn(model, seed)
    model.eval()
    graph = ps.trace(model, x[:1])
    widths = random_widths(graph, seed)
    importance = kill_removed_channels(graph, widths)
    pruned = graph.prune(widths, importance).eval()
    with torch.no_grad():
        ref, out = model(x), pruned(x)
    err = (out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)
    assert err < 1e-4, f"relative error {err:.2e} with widths {widths}"
