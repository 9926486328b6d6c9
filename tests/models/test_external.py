"""torchvision and timm models named in a space or spec: trusted, no weights fetched."""

import importlib.util
import sys

import pytest
import torch

import prunesearch as ps


def needs(package: str) -> None:
    """Skips unless ``package`` is installed. Not ``pytest.importorskip``: a torchvision whose
    compiled ops do not load against this torch fails on import, and prunesearch's own import
    of it (which stubs those ops) is what is tested."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _spec_round_trip(ref: str, args: dict, tmp_path) -> None:
    """trace -> prune -> spec save/load (no --allow-import) -> build: same shapes, exact FLOPs."""
    model = ps.create_model(ref, **args).eval()
    graph = ps.trace(model, X[:1])
    widths = {g.name: max(g.step, g.size // 2 // g.step * g.step) for g in graph.groups}
    pruned = graph.prune(widths).eval()
    spec = ps.ArchSpec.from_graph(graph, widths, model=ref, model_args=args)
    path = spec.save(tmp_path / "spec.json")
    loaded = ps.ArchSpec.load(path)  # a trusted reference needs no allow_import
    assert loaded.model == ref and loaded.model_args == args
    built = ps.build(loaded).eval()
    assert type(built) is type(model)
    with torch.no_grad():
        assert built(X).shape == pruned(X).shape == (2, args["num_classes"])
    assert ps.count_flops(built, X[:1]) == graph.flops(widths) == loaded.flops
    assert sum(p.numel() for p in built.parameters()) == graph.params(widths)


def test_a_torchvision_model_by_name_round_trips_through_a_spec(tmp_path):
    needs("torchvision")
    _spec_round_trip("torchvision.models:mobilenet_v3_small", {"num_classes": 3}, tmp_path)


def test_a_timm_model_by_name_round_trips_through_a_spec(tmp_path):
    needs("timm")
    _spec_round_trip("timm:test_resnet", {"num_classes": 3}, tmp_path)


def test_timm_takes_in_channels_as_its_in_chans():
    needs("timm")
    model = ps.create_model("timm:test_resnet", num_classes=3, in_channels=1).eval()
    assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 1
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    ("ref", "args", "match"),
    [
        ("torchvision.models:resnet18", {"pretrained": True}, "pretrained=True would fetch"),
        ("torchvision.models:resnet18", {"weights": "DEFAULT"}, "--base FILE"),
        ("timm:test_resnet", {"pretrained": True}, "never downloads"),
        ("timm:test_resnet", {"checkpoint_path": "w.pth"}, "--base FILE"),
        ("torchvision.models:resnet18", {"in_channels": 1}, "torchvision's models take no"),
    ],
)
def test_weights_and_unknown_arguments_are_refused_in_one_error(ref, args, match):
    needs(ref.partition(":")[0].split(".")[0])
    with pytest.raises(ps.PrunesearchError, match=match):
        ps.create_model(ref, num_classes=3, **args)


def test_no_weights_argument_asked_for_nothing_is_accepted():
    needs("torchvision")
    model = ps.create_model("torchvision.models:resnet18", num_classes=3, weights=None)
    assert model.fc.out_features == 3


def test_unknown_names_are_one_error():
    needs("timm")
    with pytest.raises(ps.PrunesearchError, match="timm has no model 'no_such_net'"):
        ps.create_model("timm:no_such_net")
    needs("torchvision")
    with pytest.raises(ps.PrunesearchError, match="no model constructor 'no_such_net'"):
        ps.create_model("torchvision.models:no_such_net")


@pytest.mark.parametrize(("ref", "package"), [("timm:resnet18", "timm")])
def test_a_missing_package_names_the_pip_command(ref, package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import of it fails as if not installed
    with pytest.raises(ps.PrunesearchError, match=rf'pip install "torch==.*" {package}'):
        ps.create_model(ref)


def test_a_missing_torchvision_names_the_pip_command(monkeypatch):
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ps.PrunesearchError, match=r'pip install "torch==.*" torchvision'):
        ps.create_model("torchvision.models:resnet18")
