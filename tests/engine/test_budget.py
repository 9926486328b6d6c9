import random

import pytest
import torch

import prunesearch as ps
from prunesearch.engine.budget import ON_BUDGET, Budget, min_widths, parse_budgets, project


def test_parse_forms():
    assert parse_budgets("50%FLOPs") == [Budget("flops", 0.5, True, "50%FLOPs")]
    assert parse_budgets("30%params") == [Budget("params", 0.3, True, "30%params")]
    assert parse_budgets("20MFLOPs")[0].value == 20e6
    assert parse_budgets("1.5GFLOPs")[0].value == 1.5e9
    assert parse_budgets("2.2Mparams")[0] == Budget("params", 2.2e6, False, "2.2Mparams")
    assert parse_budgets("50%flops")[0].kind == "flops"
    family = parse_budgets("25%,50%,75%FLOPs")
    assert [b.value for b in family] == [0.25, 0.5, 0.75]
    assert [b.text for b in family] == ["25%FLOPs", "50%FLOPs", "75%FLOPs"]
    assert [b.slug for b in family] == ["25pct-flops", "50pct-flops", "75pct-flops"]
    assert parse_budgets("20MFLOPs")[0].slug == "20M-flops"


@pytest.mark.parametrize(
    "text, message",
    [
        ("150%FLOPs", r"percentage must be in \(0, 100\]"),
        ("0%FLOPs", r"percentage must be in \(0, 100\]"),
        ("-5%FLOPs", r"percentage must be in \(0, 100\]"),
        ("abc", "not understood"),
        ("50%foo", "not understood"),
        ("50%", "names no unit"),
        ("", "budget is empty"),
        ("50%FLOPs,30%params", "mixes FLOPs and params"),
        ("50%,50%FLOPs", "same budget twice"),
        ("50%,50.00001%FLOPs", "too close to tell apart: both would be 50pct-flops"),
        ("20M,20.000001MFLOPs", "both would be 20M-flops"),
        ("5%MFLOPs", "percentage takes no K/M/G"),
        ("0.5FLOPs", "must be positive"),
        ("0ms", "a latency must be positive"),
        ("-3ms", "a latency must be positive"),
        ("4min", "not understood"),
        ("4 parsecs", "not understood"),
        ("50%ms", "a percentage takes no K/M/G or time unit"),
        ("4ms,50%FLOPs", "mixes FLOPs and latency"),
        ("4Mlatency", "a latency is a percentage .* or a time"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ps.PrunesearchError, match=message):
        parse_budgets(text)


@pytest.fixture(scope="module")
def graph():
    return ps.trace(ps.create_model("resnet20"), torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("kind", ["flops", "params"])
def test_projection_lands_on_budget(graph, kind):
    rng = random.Random(0)
    base = graph.flops() if kind == "flops" else graph.params()
    for fraction in (0.2, 0.5, 0.8):
        target = int(base * fraction)
        for _ in range(5):
            ratios = {g.name: rng.uniform(0.1, 1) for g in graph.groups}
            widths = project(graph, ratios, kind, target, min_ratio=0.1)
            cost = graph.flops(widths) if kind == "flops" else graph.params(widths)
            assert ON_BUDGET * target <= cost <= target
    widths = project(graph, {}, "flops", graph.flops() // 2)
    pruned = graph.prune(widths)
    assert ps.count_flops(pruned, torch.zeros(1, 3, 32, 32)) <= graph.flops() // 2


def test_projection_keeps_the_shape_of_the_ratios(graph):
    ratios = {g.name: (1.0 if i % 2 else 0.3) for i, g in enumerate(graph.groups)}
    widths = project(graph, ratios, "flops", int(graph.flops() * 0.5))
    keep = [widths[g.name] / g.size for g in graph.groups]
    assert sum(keep[1::2]) / len(keep[1::2]) > 2 * sum(keep[::2]) / len(keep[::2])


def test_round_to_and_min_ratio(graph):
    widths = project(graph, {}, "flops", int(graph.flops() * 0.4), round_to=8, min_ratio=0.25)
    assert all(w % 8 == 0 for w in widths.values())
    floors = min_widths(graph, 0.25, 8)
    assert all(widths[k] >= floors[k] for k in widths)


def test_unreachable_budget_is_an_error(graph):
    with pytest.raises(ps.PrunesearchError, match=r"budget unreachable: .*min_ratio 0\.5"):
        project(graph, {}, "flops", int(graph.flops() * 0.1), min_ratio=0.5)


def test_global_threshold_normalises_each_group_by_its_mean():
    """A group whose scores are on a 100x smaller scale is starved by one raw threshold
    (network slimming) but keeps a comparable share once each group is mean-normalised."""
    from prunesearch.engine.budget import global_ratios, threshold_ratios

    graph = ps.trace(ps.create_model("vgg11", num_classes=4), torch.zeros(1, 3, 32, 32))
    gen = torch.Generator().manual_seed(0)
    scores = {
        g.name: torch.rand(g.size, generator=gen, dtype=torch.float64) + 0.5 for g in graph.groups
    }
    small = graph.groups[3].name
    scores[small] = scores[small] / 100
    target = graph.flops() // 2
    raw = threshold_ratios(graph, scores, "flops", target, 0.1)
    norm = global_ratios(graph, scores, "flops", target, 0.1)
    assert raw[small] == 0.1  # starved: only the floor survives
    others = [v for k, v in norm.items() if k != small]
    assert min(others) - 0.1 <= norm[small] <= max(others) + 0.1
    widths = project(graph, norm, "flops", target, min_ratio=0.1)
    assert ON_BUDGET * target <= graph.flops(widths) <= target


def test_latency_budgets_parse():
    assert parse_budgets("4ms") == [Budget("latency", 4e6, False, "4ms")]
    assert parse_budgets("50%latency") == [Budget("latency", 0.5, True, "50%latency")]
    assert parse_budgets("800us")[0].value == 800e3
    assert parse_budgets("0.5MS")[0].value == 0.5e6
    family = parse_budgets("2,4ms")
    assert [b.value for b in family] == [2e6, 4e6] and [b.text for b in family] == ["2ms", "4ms"]
    assert [b.slug for b in family] == ["2ms-latency", "4ms-latency"]
    assert [b.slug for b in parse_budgets("25%,50%latency")] == ["25pct-latency", "50pct-latency"]
    assert parse_budgets("250us")[0].slug == "250us-latency"


def test_a_latency_cost_needs_a_model_on_the_graph(graph):
    from prunesearch.engine.budget import cost

    with pytest.raises(ps.PrunesearchError, match="latency budget needs a latency model"):
        cost(graph, "latency")
    graph.cost_models["latency"] = lambda widths: graph.flops(widths) // 1000  # a fake device
    try:
        target = graph.flops() // 2000
        widths = project(graph, {}, "latency", target)
        assert ON_BUDGET * target <= cost(graph, "latency", widths) <= target
    finally:
        del graph.cost_models["latency"]
