"""The layers of real model families (prunesearch.engine.layer_rules): LayerNorm over channels and
layer scales (ConvNeXt), grouped convolutions (ResNeXt, RegNet), GroupNorm; and the variants
that must stay whole. Equivalence and exact costs of each toy model run in test_graph.py over
CONSTRUCTS."""

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunesearch as ps
from prunesearch.engine.budget import project

from ..helpers import kill_removed_channels, random_widths, randomize_bn, relative_error
from ..toy_models import (
    ConvNeXtBlocks,
    GroupedBottleneck,
    GroupNorms,
    StandardisedGroupNormed,
    cbr,
)

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _groups(model):
    graph = ps.trace(model.eval(), X[:1])
    return graph, {g.name: g for g in graph.groups}


def test_layer_norms_over_channels_and_layer_scales_prune_with_their_channels():
    graph, groups = _groups(ConvNeXtBlocks())
    assert set(groups) == {"stem", "pw1", "down"} and graph.fixed_ops == []  # was none
    assert groups["stem"].producers == ["stem", "dw", "pw2"]
    assert groups["stem"].followers == ["stem_norm", "norm", "gamma", "down_norm"]
    assert groups["down"].followers == ["scale2", "head_scale", "head_norm"]
    pruned = graph.prune({"stem": 5, "down": 7})
    assert pruned.norm.normalized_shape == pruned.stem_norm.normalized_shape == (5,)
    assert pruned.gamma.shape == (5, 1, 1) and isinstance(pruned.gamma, nn.Parameter)
    assert pruned.scale2.shape == pruned.head_scale.shape == pruned.head_norm.weight.shape == (7,)
    assert pruned.pw1.in_features == 5 and pruned.mlp2.out_features == 7


def test_a_pruned_layer_norm_normalises_the_kept_channels_alone():
    """The decision (README): LayerNorm statistics over channels change when channels go, as
    in Torch-Pruning; the pruned model equals the original whose LayerNorms see the kept
    channels alone (test_graph's equivalence), not the original with dead channels."""
    torch.manual_seed(0)
    model = ConvNeXtBlocks().eval()
    randomize_bn(model)
    graph = ps.trace(model, X[:1])
    widths = {"stem": 4, "down": 6}
    importance = kill_removed_channels(graph, widths)
    with torch.no_grad():
        assert relative_error(graph.prune(widths, importance)(X), model(X)) > 1e-2


def _layer_norm_variants():
    class OverSpace(nn.Module):  # LayerNorm over (C, H, W): not the channels alone
        def __init__(self):
            super().__init__()
            self.c1, self.norm = nn.Conv2d(3, 8, 3, padding=1), nn.LayerNorm([8, 16, 16])
            self.c2 = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c2(self.norm(self.c1(x))).mean((2, 3))

    class OverWidth(nn.Module):  # LayerNorm over the last dim of an NCHW map (W, not C)
        def __init__(self):
            super().__init__()
            self.c1, self.norm, self.c2 = cbr(3, 8), nn.LayerNorm(16), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c2(self.norm(self.c1(x))).mean((2, 3))

    class ScaleReused(nn.Module):  # a layer scale also used by another op
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = cbr(3, 8), nn.Conv2d(8, 4, 1)
            self.gamma = nn.Parameter(torch.ones(8, 1, 1))

        def forward(self, x):
            return self.c2(self.c1(x) * self.gamma).mean((2, 3)) + self.gamma.sum()

    class NormWeightReused(nn.Module):  # a LayerNorm's own weight also scales a tensor
        def __init__(self):
            super().__init__()
            self.c1, self.norm, self.c2 = cbr(3, 8), nn.LayerNorm(8), nn.Linear(8, 4)

        def forward(self, x):
            y = self.c1(x).permute(0, 2, 3, 1)
            z = self.norm(y) + y * self.norm.weight  # sliced twice, were it taken as a scale
            return self.c2(z.permute(0, 3, 1, 2).mean((2, 3)))

    class LiteralView(nn.Module):  # gamma.view(1, 8, 1, 1): the pruned view would fail
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = cbr(3, 8), nn.Conv2d(8, 4, 1)
            self.gamma = nn.Parameter(torch.ones(8))

        def forward(self, x):
            return self.c2(self.c1(x) * self.gamma.view(1, 8, 1, 1)).mean((2, 3))

    return [OverSpace, OverWidth, ScaleReused, NormWeightReused, LiteralView]


@pytest.mark.parametrize("make", _layer_norm_variants(), ids=lambda m: m.__name__)
def test_variants_that_are_not_per_channel_keep_their_channels(make, caplog):
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        _, groups = _groups(make())
    assert "c1" not in groups and "c1.0" not in groups
    assert "kept whole" in caplog.text


def test_grouped_convolutions_prune_whole_conv_groups():
    graph, groups = _groups(GroupedBottleneck())
    # was: the grouped convs' inputs and outputs (and the stream feeding grouped2) fixed
    assert {n: (g.size, g.step, g.interleaved) for n, g in groups.items()} == {
        "stem.0": (8, 2, True),
        "reduce.0": (12, 3, True),
        "grouped": (12, 3, True),
        "se_reduce": (4, 1, False),
        "grouped2": (16, 2, True),
    }
    assert groups["grouped"].producers == ["grouped", "se_expand"]
    pruned = graph.prune({"reduce.0": 6, "grouped": 9, "stem.0": 4})
    g = pruned.grouped
    assert (g.in_channels, g.out_channels, g.groups, tuple(g.weight.shape[:2])) == (6, 9, 3, (9, 2))
    assert (pruned.grouped2.in_channels, pruned.grouped2.weight.shape[1]) == (4, 2)
    with pytest.raises(ps.PrunesearchError, match=r"multiple of 3 \(whole conv groups\)"):
        graph.flops({"grouped": 10})


def test_a_spec_with_widths_that_cut_a_conv_group_is_refused():
    graph, _ = _groups(GroupedBottleneck())
    spec = ps.ArchSpec.from_graph(graph, {"grouped": 9}, model="toy")
    spec.check(graph)
    spec.widths["grouped"] = 10
    with pytest.raises(ps.SpecError, match=r"\$\.widths\.grouped: 10 is not a multiple of 3"):
        spec.check(graph)


def test_grouped_channels_keep_the_same_positions_in_every_conv_group():
    graph, _ = _groups(GroupedBottleneck())
    scores = {"reduce.0": torch.tensor([9.0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 9])}
    # runs of 4: positions 0 (9), 1 (9), 3 (9) by their sums; two kept per run
    kept = graph.keep_indices({"reduce.0": 6}, scores)["reduce.0"]
    assert kept.tolist() == [0, 1, 4, 5, 8, 9]


@pytest.mark.parametrize("round_to", [1, 2])
def test_budget_projection_gives_whole_conv_groups(round_to):
    graph, groups = _groups(GroupedBottleneck())
    target = graph.flops() // 2
    widths = project(graph, {}, "flops", target, min_ratio=0.1, round_to=round_to)
    assert 0.9 * target <= graph.flops(widths) <= target
    for name, w in widths.items():
        g = groups[name]
        assert w % g.step == 0 and (w % round_to == 0 or w == g.size), (name, w)


def test_group_norms_lose_whole_groups():
    graph, groups = _groups(GroupNorms())
    # gn0 has groups of 2 channels, gn2 of 4: the stream keeps whole runs of 4
    assert {n: (g.step, g.interleaved) for n, g in groups.items()} == {
        "stem": (4, False),
        "c1": (4, False),
    }
    assert groups["stem"].followers == ["gn0", "gn2"]
    pruned = graph.prune({"stem": 4, "c1": 8})
    assert (pruned.gn0.num_groups, pruned.gn0.num_channels) == (2, 4)
    assert (pruned.gn2.num_groups, pruned.gn1.num_groups) == (1, 2)
    with pytest.raises(ps.PrunesearchError, match=r"multiple of 4 \(whole norm groups\)"):
        graph.prune({"c1": 6})


def test_a_functional_group_norm_on_its_modules_tensors_loses_whole_groups():
    graph, groups = _groups(StandardisedGroupNormed())
    assert graph.fixed_ops == []  # was: F.group_norm kept every channel whole
    assert groups["stem"].step == 4 and groups["c1"].step == 4  # lcm(8/4, 8/2); 12/3
    assert groups["stem"].followers == ["gn0", "gn2"]
    pruned = graph.prune({"stem": 4, "c1": 8})
    assert [pruned.get_submodule(f"gn{i}").num_groups for i in range(3)] == [2, 2, 1]


def test_a_functional_group_norm_with_a_literal_group_count_keeps_channels_whole():
    class LiteralGroups(nn.GroupNorm):  # the pruned module would still make 4 groups
        def forward(self, x):
            return F.group_norm(x, 4, self.weight, self.bias, self.eps)

    model = nn.Sequential(nn.Conv2d(3, 8, 1), LiteralGroups(4, 8), nn.Conv2d(8, 4, 1))
    graph, groups = _groups(model)
    assert "0" not in groups and "function 'group_norm' at node 'group_norm'" in graph.fixed_ops


def test_a_group_norm_of_one_group_or_uneven_cuts_keeps_channels_whole():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.GroupNorm(1, 8),
        nn.ReLU(),  # one group
        nn.Conv2d(8, 6, 3),
        nn.GroupNorm(3, 6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    _, groups = _groups(model)
    assert set(groups) == {"3", "6"}  # GroupNorm(3, 6) prunes by pairs, GroupNorm(1, 8) not
    assert groups["3"].step == 2


class _CatGrouped(nn.Module):
    """A grouped conv fed by a concatenation: its groups would straddle two spaces."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.g(torch.cat([self.a(x), self.b(x)], 1))).mean((2, 3)))


def test_a_grouped_conv_over_a_concatenation_keeps_its_input_whole():
    graph, groups = _groups(_CatGrouped())
    assert set(groups) == {"g"}
    assert any("groups=2" in op for op in graph.fixed_ops)
    widths = random_widths(graph, 0)
    assert graph.flops(widths) == ps.count_flops(graph.prune(widths), X[:1])
