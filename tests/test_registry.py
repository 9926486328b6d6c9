"""The import rule: a spec imports the code it names only when registered or allowed."""

import pytest
import torch
from torch import nn

import prunesearch as ps


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


def spec_for(ref: str, tmp_path, allow: bool) -> str:
    model = ps.create_model(ref, allow_import=allow, num_classes=3)
    graph = ps.trace(model, torch.zeros(1, 3, 8, 8))
    return str(ps.ArchSpec.from_graph(graph, {"conv": 4}, model=ref,
                                      model_args={"num_classes": 3}).save(tmp_path / "s.json"))


def test_unregistered_code_needs_allow_import(tmp_path):
    ref = f"{__name__}:tiny_unregistered"
    path = spec_for(ref, tmp_path, allow=True)
    with pytest.raises(ps.SpecError, match="--allow-import"):
        ps.ArchSpec.load(path)
    spec = ps.ArchSpec.load(path, allow_import=True)
    assert ps.build(spec).conv.out_channels == 4  # the permission travels with the spec


def test_registered_code_needs_no_flag(tmp_path):
    ref = f"{__name__}:tiny_registered"
    path = spec_for(ref, tmp_path, allow=False)
    spec = ps.ArchSpec.load(path)
    assert ps.build(spec).conv.out_channels == 4
    assert "tiny_registered" in ps.list_models()
