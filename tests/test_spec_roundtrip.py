"""What ``ArchSpec.save`` writes, ``ArchSpec.load`` reads: every optional field, and specs of
models that are not registered (an import reference, or a name the registry does not know)."""

import json

import pytest
import torch

import prunesearch as ps

from .toy_models import Plain

BUDGETS = [
    None,
    {"kind": "flops", "target": 5000},
    {"kind": "params", "target": 900, "text": "900params"},
    {
        "kind": "latency",
        "target": 1_000_000,
        "text": "1ms",
        "latency": {"target_ms": 1.0, "predicted_ms": 0.8, "measured_ms": 0.9, "rounds": 5},
    },
    {"kind": "latency", "target": 2_000_000, "latency": {"target_ms": 2}},
]


@pytest.fixture(scope="module")
def graph():
    return ps.trace(Plain(), torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("model", ["tests.toy_models:Plain", "my_unregistered_net"])
def test_every_optional_field_round_trips(graph, tmp_path, budget, model):
    spec = ps.ArchSpec.from_graph(
        graph,
        {"c1.0": 4, "fc1": 7},
        model=model,
        model_args={"depth": 3, "names": ["a", "b"], "nested": {"x": 1.5, "y": None}},
        budget=budget,
        search={"signal": "l1", "score": 0.5, "trial": 3, "baselines": {"uniform": {"s": 1}}},
    )
    spec.versions = {"prunesearch": "9.9", "torch": "x"}
    path = spec.save(tmp_path / "spec.json")
    loaded = ps.ArchSpec.load(path)
    assert loaded.to_dict() == spec.to_dict() == json.loads(path.read_text())
    assert ps.ArchSpec.load(loaded.save(tmp_path / "again.json")).to_dict() == spec.to_dict()


def test_the_defaults_round_trip(graph, tmp_path):
    spec = ps.ArchSpec.from_graph(graph, {}, model="tests.toy_models:Plain")
    loaded = ps.ArchSpec.load(spec.save(tmp_path / "spec.json"))
    assert loaded == spec and loaded.budget is None and loaded.search is None


def test_a_spec_of_allowed_code_is_checked_and_builds(graph, tmp_path):
    spec = ps.ArchSpec.from_graph(graph, {"c2": 5}, model="tests.toy_models:Plain")
    path = spec.save(tmp_path / "spec.json")
    data = json.loads(path.read_text())
    data["flops"] += 1
    path.write_text(json.dumps(data))
    ps.ArchSpec.load(path)  # the code is not allowed: the counts cannot be checked
    with pytest.raises(ps.SpecError, match=r"\$\.flops: .* does not match"):
        ps.ArchSpec.load(path, allow_import="tests")
    spec.save(path)
    model = ps.build(ps.ArchSpec.load(path, allow_import="tests"))
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    assert model.c2.out_channels == 5


@pytest.mark.parametrize(
    "budget, message",
    [
        ({"kind": "flops", "target": 10.5}, r"\$\.budget\.target: must be an integer"),
        ({"kind": "watts", "target": 3}, r"\$\.budget\.kind"),
        ({"kind": "latency", "target": 3, "latency": {"target_ms": -1}}, r"target_ms"),
        ("50%FLOPs", r"\$\.budget: must be an object"),
    ],
)
def test_from_graph_refuses_a_budget_load_would_refuse(graph, budget, message):
    with pytest.raises(ps.SpecError, match=message):
        ps.ArchSpec.from_graph(graph, {}, model="tests.toy_models:Plain", budget=budget)
