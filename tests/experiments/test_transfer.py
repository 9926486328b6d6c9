import json

import pytest
import torch

import prunesearch as ps
from prunesearch.experiments.transfer import stage_ratios, transfer

from ..helpers import run_cli


def make_spec(model: str, ratios: dict[int, float], shape=(3, 32, 32)) -> ps.ArchSpec:
    graph = ps.trace(ps.create_model(model), torch.zeros(1, *shape))
    stages = graph.stages()
    widths = {g.name: max(1, round(ratios[stages[g.name]] * g.size)) for g in graph.groups}
    return ps.ArchSpec.from_graph(
        graph, widths, model=model, model_args={"num_classes": 10, "in_channels": 3}
    )


def test_stages_follow_resolution():
    graph = ps.trace(ps.create_model("resnet20"), torch.zeros(1, 3, 32, 32))
    stages = graph.stages()
    assert stages["conv1"] == 0 and stages["layer1.0.conv1"] == 0
    assert stages["layer2.0.conv1"] == 1 and stages["layer3.2.conv1"] == 2
    assert set(stages.values()) == {0, 1, 2}


@pytest.mark.parametrize(
    "source, target", [("resnet56", "resnet110"), ("vgg16", "vgg19"), ("resnet20", "resnet56")]
)
def test_transfer_keeps_stage_ratios(source, target):
    ratios = {0: 0.75, 1: 0.5, 2: 0.25, 3: 0.5, 4: 0.25}
    spec = make_spec(source, ratios)
    new = transfer(spec, target)
    assert new.model == target and new.input_shape == [3, 32, 32]
    src, dst = stage_ratios(spec), stage_ratios(new)
    assert src.keys() == dst.keys()
    for s in src:
        assert abs(src[s] - dst[s]) < 0.03, (s, src[s], dst[s])
    model = ps.build(new)
    assert ps.count_flops(model, torch.zeros(1, 3, 32, 32)) == new.flops
    assert 0.1 < new.flops / new.base_flops < 0.6


def test_transfer_to_another_dataset_and_width():
    spec = make_spec("resnet20", {0: 0.5, 1: 0.5, 2: 0.5})
    new = transfer(
        spec, "resnet32", model_args={"num_classes": 100, "in_channels": 1}, input_shape=[1, 28, 28]
    )
    assert new.model_args["num_classes"] == 100 and new.input_shape == [1, 28, 28]
    assert all(abs(r - 0.5) < 0.05 for r in stage_ratios(new).values())


def test_transfer_cli(tmp_path):
    path = make_spec("resnet56", {0: 0.5, 1: 0.5, 2: 0.5}).save(tmp_path / "s.json")
    proc = run_cli("transfer", path, "--to", "resnet110", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    spec = ps.ArchSpec.load(out["spec"])
    assert spec.model == "resnet110" and spec.search["transferred_from"]["model"] == "resnet56"
    for args, message in [
        (["--to", "nonet"], "nonet"),
        (["--to", "resnet110", "--model-args", "[1]"], "JSON object"),
        (["--to", "resnet110", "--input-shape", "3,32"], "C,H,W"),
    ]:
        proc = run_cli("transfer", path, *args, "--out", tmp_path / "bad.json")
        assert (
            proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr
        ), proc.stderr
        assert not (tmp_path / "bad.json").exists()
