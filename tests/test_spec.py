import json

import pytest
import torch

import prunesearch as ps
from prunesearch.spec import FORMAT

from .helpers import random_widths


@pytest.fixture(scope="module")
def spec():
    graph = ps.trace(ps.create_model("resnet20"), torch.zeros(1, 3, 32, 32))
    widths = random_widths(graph, seed=7)
    return ps.ArchSpec.from_graph(
        graph,
        widths,
        model="resnet20",
        budget={"kind": "flops", "target": graph.flops(widths), "text": "test"},
    )


def test_round_trip(spec, tmp_path):
    path = spec.save(tmp_path / "a.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["flop_counter"] == "fvcore-macs"
    assert set(data["versions"]) == {"prunesearch", "torch", "optuna", "fvcore"}
    loaded = ps.ArchSpec.load(path)
    assert loaded.to_dict() == spec.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp files left behind


def test_build_is_fresh_and_exact(spec):
    model = ps.build(spec)
    assert model.training
    x = torch.zeros(1, 3, 32, 32)
    assert ps.count_flops(model, x) == spec.flops
    assert ps.count_params(model) == spec.params
    assert model.layer1[0].conv1.out_channels == spec.widths["layer1.0.conv1"]
    assert torch.all(model.bn1.running_var == 1) and torch.all(model.bn1.weight == 1)
    again = ps.build(spec)
    assert not torch.equal(again.conv1.weight, model.conv1.weight)  # fresh random init


def _mutate(data, path, value):
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["format"], KeyError, r"\$\.format: missing"),
        (["format"], "prunesearch.arch/v9", r"\$\.format: unsupported format"),
        (["model"], 5, r"\$\.model: must be a non-empty string"),
        (["model_args"], [1], r"\$\.model_args: must be an object"),
        (["model_args"], {"num_classes": "ten"}, r"\$\.model_args: cannot build"),
        (["model_args"], {"depth": 3}, r"\$\.model_args: cannot build"),
        (["input_shape"], [3, 32], r"\$\.input_shape: \[3, 32\] does not fit"),
        (["input_shape"], [3, 0, 32], r"\$\.input_shape\[1\]: must be >= 1"),
        (["widths"], KeyError, r"\$\.widths: missing"),
        (["widths"], {}, r"\$\.widths: must name at least one group"),
        (["widths", "conv1"], 0, r"\$\.widths\.conv1: must be >= 1, got 0"),
        (["widths", "conv1"], -3, r"\$\.widths\.conv1: must be >= 1, got -3"),
        (["widths", "conv1"], 2.5, r"\$\.widths\.conv1: must be an integer, got 2.5"),
        (["widths", "conv1"], "8", r"\$\.widths\.conv1: must be an integer"),
        (["widths", "conv1"], 17, r"\$\.widths\.conv1: 17 exceeds the base width 16"),
        (["widths", "layer9.conv"], 3, r"\$\.widths\['layer9\.conv'\]: group missing from"),
        (["base_widths", "conv1"], 20, r"\$\.base_widths\.conv1: model 'resnet20' has 16"),
        (["base_widths", "ghost"], 4, r"\$\.base_widths\.ghost: no such group"),
        (["widths", "layer1.0.conv1"], KeyError, r"\$\.widths\['layer1\.0\.conv1'\]: missing"),
        (["flops"], 123, r"\$\.flops: 123 does not match the widths"),
        (["params"], -1, r"\$\.params: must be >= 0"),
        (["budget"], {"kind": "watts", "target": 3}, r"\$\.budget\.kind: must be one of"),
        (["colour"], "blue", r"\$\.colour: unknown field"),
    ],
)
def test_invalid_specs_name_the_field(spec, tmp_path, path, value, message):
    data = spec.to_dict()
    _mutate(data, path, value)
    if path == ["widths", "layer1.0.conv1"]:
        del data["base_widths"]["layer1.0.conv1"]
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(data))
    with pytest.raises(ps.SpecError, match=message):
        ps.ArchSpec.load(file)


@pytest.mark.parametrize(
    "model, message",
    [
        ("resnet57", r"\$\.model: unknown model 'resnet57'"),
        ("evil.module:boom", r"\$\.model: .*--allow-import"),
    ],
)
def test_a_spec_of_code_not_available_loads_and_build_says_why_not(spec, tmp_path, model, message):
    data = spec.to_dict() | {"model": model}
    file = tmp_path / "other.json"
    file.write_text(json.dumps(data))
    loaded = ps.ArchSpec.load(file)  # its fields are data, validated
    assert loaded.model == model and loaded.widths == spec.widths
    with pytest.raises(ps.SpecError, match=message):
        ps.build(loaded)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ('{"format": "prunesearch.arch/v1", "model": ', "not valid JSON"),
        ("[1, 2]", r"\$: must be an object"),
        ("42", r"\$: must be an object"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    file = tmp_path / "bad.json"
    file.write_text(text)
    with pytest.raises(ps.SpecError, match=message):
        ps.ArchSpec.load(file)
    with pytest.raises(ps.SpecError, match="not found"):
        ps.ArchSpec.load(tmp_path / "missing.json")
