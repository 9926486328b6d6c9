import logging

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunesearch as ps

from ..helpers import assert_equivalent_after_pruning, random_widths
from ..toy_models import (
    CONSTRUCTS,
    AuxHead,
    DynamicGate,
    FunctionalConvs,
    FunctionalNorms,
    GhostModule,
    StdConv2d,
    StochasticDepthResidual,
    Untraceable,
    WeightStandardised,
    weight_normed,
)

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def groups_of(model):
    graph = ps.trace(model, X[:1])
    return graph, {g.name: g for g in graph.groups}


def test_plain_groups_and_flatten_into_linear():
    graph, groups = groups_of(CONSTRUCTS["plain"]())
    assert list(groups) == ["c1.0", "c2", "fc1"]  # fc2 feeds the output: fixed
    assert groups["c1.0"].size == 8 and groups["c1.0"].consumers == ["c2"]
    assert groups["c1.0"].norms == [("c1.1", 0, 1)]
    assert groups["c2"].consumers == ["fc1"]
    assert groups["c2"].norms == [("bn2", 0, 1)]
    pruned = graph.prune({"c2": 5})
    assert pruned.fc1.in_features == 5 * 16  # each channel of a 4x4 map is 16 features


def test_residual_sums_unite_producers():
    _, groups = groups_of(CONSTRUCTS["postact_residual"]())
    assert groups["stem"].producers == ["stem", "a1"]
    assert groups["b1"].producers == ["b1", "proj"]
    assert groups["stem"].consumers == ["a1", "b1", "proj"]
    assert "fc" not in groups


def test_preactivation_residual():
    _, groups = groups_of(CONSTRUCTS["preact_residual"]())
    assert groups["stem"].producers == ["stem", "conv2"]
    assert [n for n, _, _ in groups["stem"].norms] == ["bn1", "bn_out"]
    assert groups["conv1"].norms == [("bn2", 0, 1)]


def test_concat_offsets():
    _, groups = groups_of(CONSTRUCTS["concat"]())
    assert set(groups) == {"stem", "l1.2", "l2.2", "trans"}
    assert groups["stem"].norms == [("l1.0", 0, 1), ("l2.0", 0, 1), ("bn", 0, 1)]
    assert groups["l1.2"].norms == [("l2.0", 6, 1), ("bn", 6, 1)]
    assert groups["l2.2"].norms == [("bn", 10, 1)]
    assert groups["l1.2"].consumers == ["l2.2", "trans"]


def test_squeeze_excite_gate_and_depthwise():
    graph, groups = groups_of(CONSTRUCTS["squeeze_excite"]())
    assert set(groups) == {"expand", "se_reduce", "project"}
    assert groups["expand"].producers == ["expand", "dw", "se_expand"]
    pruned = graph.prune({"expand": 5})
    assert pruned.dw.groups == pruned.dw.in_channels == pruned.dw.out_channels == 5
    assert pruned.se_expand.out_channels == 5 and pruned.se_reduce.in_channels == 5


@pytest.mark.parametrize(
    "construct, fixed_group, op_text",
    [
        ("unknown_op", "c1", "roll"),
        ("chunk_shuffle", "stem.0", "view()"),
    ],
)
def test_unsupported_ops_fix_channels_and_warn_once(construct, fixed_group, op_text, caplog):
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph, groups = groups_of(CONSTRUCTS[construct]())
    assert fixed_group not in groups
    assert len(groups) >= 1
    warnings = [r for r in caplog.records if "kept whole" in r.getMessage()]
    assert len(warnings) == 1 and op_text in warnings[0].getMessage()  # one for all ops
    assert any(op_text in op for op in graph.fixed_ops)


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dead_channels_removed_without_changing_outputs(construct, seed):
    torch.manual_seed(seed)
    assert_equivalent_after_pruning(CONSTRUCTS[construct](), X, seed)


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_analytic_costs_are_exact(construct):
    model = CONSTRUCTS[construct]()
    graph = ps.trace(model, X[:1])
    for seed in range(3):
        widths = random_widths(graph, seed)
        pruned = graph.prune(widths)
        assert graph.flops(widths) == ps.count_flops(pruned, X[:1])
        assert graph.params(widths) == sum(p.numel() for p in pruned.parameters())


def test_a_ghost_output_added_to_one_space_cuts_that_space_in_halves():
    graph, groups = groups_of(CONSTRUCTS["ghost_bottlenecks"]())
    assert graph.fixed_ops == []  # was: the residual adds kept every channel whole
    (group,) = groups.values()  # the stem's halves, each ghost's x1 and its depthwise copy
    assert group.size == 4 and group.producers[:2] == ["stem.0", "g1.primary.0"]
    pruned = graph.prune({"stem.0": 3})
    assert pruned.stem[0].out_channels == 6 and pruned.g1.primary[0].out_channels == 3
    with torch.no_grad():
        assert pruned.eval()(X).shape == (3, 4)


def test_a_slice_inside_a_ghost_concatenation_keeps_its_channels():
    class OddGhost(nn.Module):  # [:, :7] of 8 channels: the pruned model would cut elsewhere
        def __init__(self):
            super().__init__()
            self.stem, self.g = nn.Conv2d(3, 7, 1), GhostModule(7, 8)
            self.g.out = 7

        def forward(self, x):
            x = self.stem(x)
            return (x + self.g(x)).mean((2, 3))

    _, groups = groups_of(OddGhost().eval())
    assert "g.primary.0" not in groups


def test_a_split_by_an_attribute_list_of_sizes_prunes_each_part():
    graph, groups = groups_of(CONSTRUCTS["mixed_kernels"]())
    assert graph.fixed_ops == []  # was: the split by a list kept its input whole
    # the stem's halves (pw's chunks) prune apart; dw's chunks [5, 7] cut pw.0's output at 5
    assert [(g.name, g.size) for g in graph.groups] == [
        ("stem.0", 4),
        ("stem.0@4", 4),
        ("pw.0", 5),
        ("pw.0@5", 1),
        ("pw.1", 6),
    ]
    assert groups["stem.0@4"].producers == ["stem.0", "proj"]
    assert groups["pw.0@5"].producers == ["pw.0", "dw.1"]
    pruned = graph.prune({"stem.0": 3, "stem.0@4": 2, "pw.0": 2, "pw.1": 5})
    assert pruned.pw.splits == [3, 2] and pruned.dw.splits == [2, 1 + 5]
    assert graph.model.pw.splits == [4, 4]  # the original is untouched


def test_a_split_by_a_literal_list_of_sizes_keeps_its_channels():
    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 1), nn.Conv2d(5, 4, 1)

        def forward(self, x):
            a, _ = torch.split(self.c1(x), [5, 3], 1)  # the pruned model would still cut at 5
            return self.c2(a)

    graph, groups = groups_of(Literal().eval())
    assert "c1" not in groups and graph.fixed_ops


def test_resized_streams_fuse_by_addition():
    graph, groups = groups_of(CONSTRUCTS["multi_resolution_fusion"]())
    assert graph.fixed_ops == []  # was: nn.Upsample / F.interpolate kept the streams whole
    assert groups["high.0"].producers == ["high.0", "up.0"]
    assert groups["low.0"].producers == ["low.0", "down.0"]
    _exact_everywhere(graph, X[:1])


def test_a_resize_fvcore_does_not_count_keeps_its_channels():
    class Bicubic(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c2(F.interpolate(self.c1(x), scale_factor=2.0, mode="bicubic"))

    graph, groups = groups_of(Bicubic().eval())
    assert "c1" not in groups and "function 'interpolate' at node 'interpolate'" in graph.fixed_ops


def test_prune_keeps_names_classes_and_leaves_original_untouched():
    model = CONSTRUCTS["squeeze_excite"]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = ps.trace(model, X[:1])
    pruned = graph.prune(random_widths(graph, 3))
    assert [(n, type(m)) for n, m in pruned.named_modules()] == [
        (n, type(m)) for n, m in model.named_modules()
    ]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # trace restores modes


def test_kept_channels_keep_their_weights():
    model = CONSTRUCTS["plain"]()
    graph = ps.trace(model, X[:1])
    kept = graph.keep_indices({"c1.0": 3}, "l1")["c1.0"]
    norms = model.c1[0].weight.abs().flatten(1).sum(1)
    assert set(kept.tolist()) == set(norms.topk(3).indices.tolist())
    pruned = graph.prune({"c1.0": 3})
    assert torch.equal(pruned.c1[0].weight, model.c1[0].weight[kept])
    assert torch.equal(pruned.c1[1].running_var, model.c1[1].running_var[kept])
    assert torch.equal(pruned.c2.weight, model.c2.weight[:, kept])


def test_slimming_and_explicit_importance():
    model = CONSTRUCTS["plain"]()
    with torch.no_grad():
        model.bn2.weight.copy_(torch.arange(12.0) - 5.5)  # |gamma| largest at 0 and 11
    graph = ps.trace(model, X[:1])
    assert graph.keep_indices({"c2": 2}, "slimming")["c2"].tolist() == [0, 11]
    scores = {"c2": torch.arange(12.0)}
    assert graph.keep_indices({"c2": 3}, scores)["c2"].tolist() == [9, 10, 11]
    with pytest.raises(ps.PrunesearchError, match=r"no scores for group 'c1\.0'"):
        graph.keep_indices({"c1.0": 2}, scores)
    with pytest.raises(ps.PrunesearchError, match="unknown importance signal"):
        graph.prune({"c2": 2}, "taylor")


@pytest.mark.parametrize(
    "widths, message",
    [
        ({"nope": 2}, "unknown group 'nope'"),
        ({"c2": 0}, r"must be in 1\.\.12, got 0"),
        ({"c2": 13}, r"must be in 1\.\.12, got 13"),
        ({"c2": 2.5}, "must be an integer"),
        ({"c2": True}, "must be an integer"),
        ([("c2", 3)], "must be a mapping"),
    ],
)
def test_bad_widths_are_user_errors(widths, message):
    graph = ps.trace(CONSTRUCTS["plain"](), X[:1])
    with pytest.raises(ps.PrunesearchError, match=message):
        graph.prune(widths)
    with pytest.raises(ps.PrunesearchError, match=message):
        graph.flops(widths)


def test_untraceable_model_names_the_module():
    with pytest.raises(ps.TraceError, match=r"gate \(DynamicGate\).*leaf_modules"):
        ps.trace(Untraceable(), X[:1])


def test_leaf_modules_keep_untraceable_parts_whole():
    graph = ps.trace(Untraceable(), X[:1], leaf_modules=[DynamicGate])
    assert graph.groups == []  # c1 feeds the opaque leaf: kept whole
    assert ps.trace(Untraceable(), X[:1], leaf_modules=["gate"]).groups == []


def test_networkx_view_and_flops_reference():
    graph = ps.trace(CONSTRUCTS["concat"](), X[:1])
    g = graph.nx
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    cats = [n for n, d in g.nodes(data=True) if "cat" in d["target"]]
    assert g.nodes[cats[-1]]["groups"] == ["stem", "l1.2", "l2.2"]
    assert graph.flops() == ps.count_flops(graph.model, X[:1])


def test_trace_rejects_non_modules_and_bad_inputs():
    with pytest.raises(ps.PrunesearchError, match=r"nn\.Module"):
        ps.trace(lambda x: x, X[:1])
    with pytest.raises(ps.TraceError, match="example input"):
        ps.trace(CONSTRUCTS["plain"](), torch.zeros(1, 5, 16, 16))


@pytest.mark.parametrize("construct", ["postact_residual", "concat", "squeeze_excite"])
def test_widths_of_reads_back_a_pruned_copy(construct):
    graph = ps.trace(CONSTRUCTS[construct](), X[:1])
    widths = random_widths(graph, 5)
    assert graph.widths_of(graph.prune(widths)) == graph.base_widths | widths
    assert graph.widths_of(graph.model) == graph.base_widths


def test_widths_of_refuses_shapes_the_groups_cannot_give():
    model = CONSTRUCTS["postact_residual"]()
    graph = ps.trace(model, X[:1])
    name = next(g for g in graph.groups if len(g.producers) > 1)  # a residual group
    pruned = graph.prune({name.name: name.size - 2})
    # another tool cutting one producer of the coupled group apart from the others
    other = name.producers[1]
    conv = pruned.get_submodule(other)
    parent, _, attr = other.rpartition(".")
    setattr(
        pruned.get_submodule(parent) if parent else pruned,
        attr,
        torch.nn.Conv2d(
            conv.in_channels,
            name.size - 1,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            bias=conv.bias is not None,
        ),
    )
    with pytest.raises(ps.PrunesearchError, match=f"{other}.weight has shape"):
        graph.widths_of(pruned)


def _exact_everywhere(graph, x, seeds=3):
    """Pruned copies at random widths: analytic FLOPs/params equal fvcore's and the model's."""
    for seed in range(seeds):
        widths = random_widths(graph, seed)
        pruned = graph.prune(widths).eval()
        assert graph.flops(widths) == ps.count_flops(pruned, x)
        assert graph.params(widths) == sum(p.numel() for p in pruned.parameters())
        with torch.no_grad():
            pruned(x)  # and it runs


def test_a_weight_standardised_conv_prunes_with_stated_semantics_on_its_inputs(caplog):
    model = WeightStandardised().eval()
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(model, X[:1])
    assert {g.name for g in graph.groups} == {"c1.0", "ws", "c3.0", "c4.0"}  # were kept whole
    assert graph.fixed_ops == [] and graph.standardised == ["ws"]
    assert "weight-standardised convs prunable on their input channels (not exact" in caplog.text
    _exact_everywhere(graph, X[:1])
    pruned = graph.prune({"c1.0": 5, "ws": 7}).eval()
    kept_in, kept_out = graph.kept_slices({"c1.0": 5, "ws": 7})["ws"]
    x = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    w = model.ws.weight[kept_out][:, kept_in]  # each filter standardised over the kept inputs
    w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
    with torch.no_grad():
        expected = F.conv2d(x[:, kept_in], w, model.ws.bias[kept_out], padding=1)
        assert torch.allclose(pruned.ws(x[:, kept_in]), expected, atol=1e-5)
        assert torch.allclose(pruned.ws.weight, model.ws.weight[kept_out][:, kept_in])


def test_a_weight_standardised_conv_on_the_network_input_prunes_exactly(caplog):
    model = nn.Sequential(StdConv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(model, X[:1])
    assert [g.name for g in graph.groups] == ["0"] and graph.standardised == []
    assert "weight-standardised" not in caplog.text  # its inputs are not pruned: exact
    assert_equivalent_after_pruning(model, X, 0)


class ScaledConv(nn.Conv2d):  # its own forward, not a standardisation: output scales with w
    def forward(self, x):
        return super().forward(x) * self.weight.norm()


@pytest.mark.parametrize("leaf", [False, True])
def test_a_conv_subclass_with_another_forward_keeps_its_channels(leaf, caplog):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), ScaledConv(8, 12, 3), nn.Conv2d(12, 6, 1), nn.ReLU(), nn.Conv2d(6, 4, 1)
    ).eval()
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(model, X[:1], leaf_modules=[ScaledConv] if leaf else ())
    assert {g.name for g in graph.groups} == {"2"}  # its input and output stay whole
    assert "module '1' (ScaledConv, groups=1): its own forward (ScaledConv)" in graph.fixed_ops
    assert "kept whole" in caplog.text
    _exact_everywhere(graph, X[:1])


def test_treat_as_prunes_a_vouched_subclass_like_its_base():
    class CountingConv(nn.Conv2d):  # its own forward, computing exactly what Conv2d does
        def forward(self, x):
            return super().forward(x)

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        CountingConv(8, 6, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    assert {g.name for g in ps.trace(model, X[:1], leaf_modules=[CountingConv]).groups} == set()
    graph = ps.trace(model, X[:1], leaf_modules=[CountingConv], treat_as={CountingConv: nn.Conv2d})
    assert {g.name for g in graph.groups} == {"0", "2"}
    _exact_everywhere(graph, X[:1])


@pytest.mark.parametrize("legacy", [False, True], ids=["parametrization", "legacy"])
def test_a_weight_normalised_conv_keeps_its_channels_and_the_rest_prunes(legacy, caplog):
    model = weight_normed(legacy).eval()
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(model, X[:1])
    groups = {g.name for g in graph.groups}
    assert "0.0" not in groups and "1" not in groups and "4.0" in groups
    reason = "WeightNorm" if legacy else "a parametrized weight"
    assert any(reason in op for op in graph.fixed_ops), graph.fixed_ops
    _exact_everywhere(graph, X[:1])  # was a raw KeyError, or a model failing at forward


def test_a_model_with_no_understood_layer_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(FunctionalConvs(), X[:1])
    assert graph.groups == []
    [warning] = [r.getMessage() for r in caplog.records if "no prunable" in r.getMessage()]
    assert "no prunable channels in FunctionalConvs" in warning and "conv2d" in warning


def test_a_model_left_in_train_mode_is_traced_as_it_runs_in_eval():
    model = AuxHead()  # fresh: training mode, the aux head runs
    graph = ps.trace(model, X[:1])
    assert model.training and all(m.training for m in model.modules())  # restored
    assert all("aux" not in g.consumers and "aux" not in g.producers for g in graph.groups)
    widths = random_widths(graph, 0)
    pruned = graph.prune(widths)
    assert graph.flops(widths) == ps.count_flops(pruned, X[:1])
    assert not graph._fvcore_flops  # the analytic count, no fallback to fvcore (393 ms each)


def test_stochastic_depth_is_the_identity_in_eval_and_fixes_nothing(caplog):
    model = StochasticDepthResidual()  # train mode: traced as in eval
    with caplog.at_level(logging.WARNING, logger="prunesearch.engine.graph"):
        graph = ps.trace(model, X[:1])
    assert {g.name for g in graph.groups} == {"stem.0", "branch.0.0"}  # the stream prunes too
    assert graph.fixed_ops == [] and "kept whole" not in caplog.text
    _exact_everywhere(graph, X[:1])
    torch.manual_seed(1)
    assert_equivalent_after_pruning(StochasticDepthResidual(), X, 1)


def test_a_batchnorm_written_functionally_prunes_like_a_batchnorm():
    graph = ps.trace(FunctionalNorms().eval(), X[:1])
    groups = {g.name: g for g in graph.groups}
    assert set(groups) == {"c1", "c2"}  # was none: F.batch_norm fixed every channel
    assert [bn for bn, _, _ in groups["c1"].norms] == ["n1", "n3"]
    assert graph.fixed_ops == []
    _exact_everywhere(graph, X[:1])
    for seed in range(3):
        torch.manual_seed(seed)
        assert_equivalent_after_pruning(FunctionalNorms(), X, seed)


def test_chunks_prune_their_parts_alike_and_shuffles_stay_whole():
    graph, groups = groups_of(CONSTRUCTS["chunk_shuffle"]())
    # the stem's chunk in two is understood, but the channel shuffle (view, transpose, view)
    # keeps the stream whole; the chunk of cat([a, b]) cuts between a and b, pruned alike
    assert set(groups) == {"branch.0.0", "a.0"}
    assert groups["a.0"].producers == ["a.0", "b.0"]
    assert [op.split(" at ")[0] for op in graph.fixed_ops] == ["method '.view()'"]
    pruned = graph.prune({"a.0": 2})
    assert pruned.a[0].out_channels == pruned.b[0].out_channels == 2


def test_splits_slices_and_chunks_inside_one_convs_output():
    graph, groups = groups_of(CONSTRUCTS["cross_stage"]())
    assert graph.fixed_ops == []
    assert {n: (g.size, g.rows) for n, g in groups.items()} == {
        "stem.0": (8, [("stem.0", 0)]),
        "exp.0": (6, [("exp.0", 6), ("block.0", 0)]),  # split(6): the part after the cut
        "trans_b.0": (6, [("trans_b.0", 0)]),
        "trans.0": (3, [("trans.0", 5)]),  # x[:, 5:]: channels 5.. prune
        "halves.0": (4, [("halves.0", 0), ("halves.0", 4), ("a", 0)]),
    }  # chunk(2): alike
    assert groups["exp.0"].norms == [("exp.1", 6, 1), ("block.1", 0, 1)]
    widths = {"exp.0": 2, "trans.0": 1, "halves.0": 3}
    pruned = graph.prune(widths)
    assert (pruned.exp[0].out_channels, pruned.trans[0].out_channels) == (6 + 2, 5 + 1)
    assert (pruned.halves[0].out_channels, pruned.a.out_channels) == (6, 3)
    assert graph.widths_of(pruned) == graph.base_widths | widths


def test_a_depthwise_conv_over_a_concatenation_holds_each_group_at_its_offset():
    graph, groups = groups_of(CONSTRUCTS["depthwise_concat"]())
    assert groups["a.0"].rows == [("a.0", 0), ("dw", 0)]
    assert groups["b.0"].rows == [("b.0", 0), ("dw", 4)]
    pruned = graph.prune({"a.0": 2, "b.0": 3})  # l1 scores: was a RuntimeError (4 vs 9 rows)
    assert pruned.dw.groups == pruned.dw.out_channels == 5


class _TwoParts(torch.nn.Module):
    """A conv's output cut where the pruned model would cut elsewhere: ``chunk(2)`` of 7
    channels (unequal parts), ``split`` at a size computed from the traced shape, ``split``
    into sections (their sum must stay the channel count), a slice from the end."""

    def __init__(self, cut: str):
        super().__init__()
        self.cut, channels = cut, 7 if cut == "odd-chunk" else 8
        self.c1 = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.p = torch.nn.Conv2d(4, 2, 1)
        self.q = torch.nn.Conv2d(channels - 4, 2, 1)

    def forward(self, x):
        x = self.c1(x)
        if self.cut == "negative-slice":
            p, q = x[:, :4], x[:, -4:]
        elif self.cut == "odd-chunk":
            p, q = x.chunk(2, dim=1)
        else:
            p, q = x.split(x.size(1) // 2 if self.cut == "traced-split" else [4, 4], dim=1)
        return (self.p(p) + self.q(q)).mean((2, 3))


@pytest.mark.parametrize("cut", ["odd-chunk", "traced-split", "sections", "negative-slice"])
def test_cuts_the_pruned_model_would_make_elsewhere_keep_channels_whole(cut):
    graph, groups = groups_of(_TwoParts(cut))
    assert "c1" not in groups
    assert any(op in fixed for op in ("chunk", "split", "getitem") for fixed in graph.fixed_ops)
