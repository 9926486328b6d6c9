"""The import rule: a spec imports the code it names only when registered or allowed."""

import os  # noqa: F401 - reachable as tests.models.test_registry:os.system, which must be refused

import pytest
import torch
from torch import nn

import prunesearch as ps
from prunesearch.spec import _cached_graph

from ..helpers import run_cli


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def tiny_unregistered(num_classes: int = 3) -> nn.Module:
    return TinyNet(num_classes)


@ps.register_model
def tiny_registered(num_classes: int = 3) -> nn.Module:
    return TinyNet(num_classes)


def spec_for(ref: str, tmp_path, allow) -> str:
    model = ps.create_model(ref, allow_import=allow, num_classes=3)
    graph = ps.trace(model, torch.zeros(1, 3, 8, 8))
    return str(
        ps.ArchSpec.from_graph(graph, {"conv": 4}, model=ref, model_args={"num_classes": 3}).save(
            tmp_path / "s.json"
        )
    )


def test_unregistered_code_needs_allow_import(tmp_path):
    ref = f"{__name__}:tiny_unregistered"
    path = spec_for(ref, tmp_path, allow=True)
    unallowed = ps.ArchSpec.load(path)  # a spec is data: it loads, its code is not imported
    with pytest.raises(ps.SpecError, match="--allow-import"):
        ps.build(unallowed)
    spec = ps.ArchSpec.load(path, allow_import=True)
    assert ps.build(spec).conv.out_channels == 4  # the permission travels with the spec


def test_registered_code_needs_no_flag(tmp_path):
    ref = f"{__name__}:tiny_registered"
    path = spec_for(ref, tmp_path, allow=False)
    spec = ps.ArchSpec.load(path)
    assert ps.build(spec).conv.out_channels == 4
    assert "tiny_registered" in ps.list_models()


def test_the_permission_names_the_packages_it_covers(tmp_path, caplog):
    ref = f"{__name__}:tiny_unregistered"  # this module is tests.models.test_registry
    path = spec_for(ref, tmp_path, allow="tests")
    with pytest.raises(ps.SpecError, match="--allow-import tests "):
        ps.build(ps.ArchSpec.load(path, allow_import=["numpy"]))  # another package: refused
    with pytest.raises(ps.SpecError, match="--allow-import tests "):
        ps.build(ps.ArchSpec.load(path, allow_import=["test"]))  # a prefix is not its package
    with caplog.at_level("INFO", logger="prunesearch"):
        for allowed in (["tests"], ["tests.models.test_registry"], "tests"):
            assert ps.build(ps.ArchSpec.load(path, allow_import=allowed)).conv.out_channels == 4
    assert f"importing model code {ref}" in caplog.text  # said before it is called


@pytest.mark.parametrize(
    "ref",
    [
        "os:system",
        "subprocess:run",
        "builtins:eval",
        "tests.models.test_registry:torch.nn.Conv2d",  # torch, via here
        f"{__name__}:os.system",
    ],
)
def test_code_outside_the_allowed_packages_is_never_called(ref):
    allow = "tests"
    with pytest.raises(ps.PrunesearchError, match=r"refused|not registered"):
        ps.create_model(ref, allow_import=allow, command="touch /tmp/pwned")
    with pytest.raises(ps.PrunesearchError, match=r"standard library|refused"):
        ps.create_model(ref.replace("tests.models.test_registry", "os"), allow_import=True)


@pytest.mark.parametrize("allow", ["os", "sys.x", "", "a b", ["ok", "subprocess"]])
def test_the_standard_library_cannot_be_allowed(allow):
    with pytest.raises(ps.PrunesearchError, match="--allow-import"):
        ps.create_model(f"{__name__}:tiny_unregistered", allow_import=allow)


@pytest.mark.parametrize("flag", [["--allow-import", "tests"], ["--allow-import"]])
def test_show_imports_from_the_named_package_or_the_specs_own(tmp_path, flag):
    path = spec_for(f"{__name__}:tiny_unregistered", tmp_path, allow=True)
    _cached_graph.cache_clear()  # a graph traced before would not import again
    refused = run_cli("show", path)
    assert refused.returncode == 2 and "--allow-import tests " in refused.stderr
    for argv in (["show", path, *flag], ["show", *flag, path]):  # either order
        _cached_graph.cache_clear()
        shown = run_cli(*argv)
        assert shown.returncode == 0, shown.stderr
        assert "importing model code tests.models.test_registry:tiny_unregistered" in shown.stderr


def test_show_refuses_to_allow_the_standard_library(tmp_path):
    path = spec_for(f"{__name__}:tiny_unregistered", tmp_path, allow=True)
    proc = run_cli("show", path, "--allow-import", "os")
    assert proc.returncode == 2
    assert (
        proc.stderr == "error: --allow-import 'os': a standard-library module; only "
        "packages that hold models can be allowed\n"
    )
