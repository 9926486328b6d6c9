import pytest
import torch

import prunesearch as ps
from prunesearch.errors import PrunesearchError
from prunesearch.find.granularity import Parameterization


@pytest.fixture(scope="module")
def resnet():
    return ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))


def test_group_parameters_round_trip(resnet):
    p = Parameterization(resnet, "group", 0.1)
    ratios = {g.name: 0.1 + 0.9 * i / len(resnet.groups) for i, g in enumerate(resnet.groups)}
    assert p.ratios(p.params(ratios)) == pytest.approx(ratios)
    assert len(p.names) == len(resnet.groups)


def test_stage_parameters_share_one_ratio_per_stage(resnet):
    p = Parameterization(resnet, "stage", 0.1)
    assert p.names == ["r:s0", "r:s1", "r:s2"]
    r = p.ratios({"r:s0": 0.3, "r:s1": 0.6, "r:s2": 0.9})
    stages = resnet.stages()
    assert {r[g] for g in r if stages[g] == 1} == {0.6}


def test_profile_is_monotone_in_depth_with_inner_blocks_scaled(resnet):
    p = Parameterization(resnet, "profile", 0.1)
    assert p.names == ["p:start", "p:end", "p:shape", "p:inner"]
    r = p.ratios({"p:start": 0.3, "p:end": 0.9, "p:shape": 1.0, "p:inner": 0.5})
    streams = [g.name for g in resnet.groups if len(g.producers) > 1]
    inner = [g.name for g in resnet.groups if len(g.producers) == 1]
    assert len(streams) == 3 and inner
    assert [r[g] for g in streams] == sorted(r[g] for g in streams)  # grows with depth
    assert r[streams[0]] == pytest.approx(0.3)
    for g in inner:  # half the stream line at the same depth
        line = 0.3 + 0.6 * p.depth[g]
        assert r[g] == pytest.approx(max(0.1, 0.5 * line))


def test_profile_fit_recovers_a_linear_profile(resnet):
    p = Parameterization(resnet, "profile", 0.1)
    params = {"p:start": 0.4, "p:end": 0.8, "p:shape": 1.0, "p:inner": 0.75}
    fitted = p.params(p.ratios(params))
    assert fitted == pytest.approx(params, abs=1e-6)


def test_networks_without_residual_streams_have_no_inner_parameter():
    graph = ps.trace(ps.create_model("vgg11", num_classes=4), torch.zeros(1, 3, 32, 32))
    p = Parameterization(graph, "profile", 0.1)
    assert p.names == ["p:start", "p:end", "p:shape"]
    r = p.ratios({"p:start": 1.0, "p:end": 0.2, "p:shape": 1.0})
    values = [r[g.name] for g in graph.groups]
    assert values == sorted(values, reverse=True)


def test_unknown_granularity_is_refused(resnet):
    with pytest.raises(PrunesearchError, match="unknown granularity 'layer'"):
        Parameterization(resnet, "layer", 0.1)
