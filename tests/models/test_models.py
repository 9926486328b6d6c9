import pytest
import torch

import prunesearch as ps

from ..helpers import random_widths

ZOO = [
    "densenet40",
    "mobilenetv2",
    "preresnet164",
    "resnet110",
    "resnet20",
    "resnet32",
    "resnet56",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
]

# (params, fvcore MACs) of the CIFAR-10 models at 32x32, batch 1. Published figures: ResNet-56
# 0.85M / 125M, ResNet-110 1.7M / 253M (Li et al. 2017, option-A shortcuts: ours add 1x1
# projections and count BN), VGG-16 15.0M / 313M, VGG-19 20.04M, DenseNet-40 1.0M,
# PreResNet-164 1.7M (Liu et al. 2017), MobileNetV2 (CIFAR) 2.3M.
PUBLISHED = {
    "resnet56": (0.85e6, 126e6),
    "resnet110": (1.73e6, 253e6),
    "vgg16": (14.7e6, 313e6),
    "vgg19": (20.04e6, 398e6),
    "densenet40": (1.06e6, 287e6),
    "preresnet164": (1.70e6, 254e6),
    "mobilenetv2": (2.30e6, 94e6),
}


def test_registry_lists_the_zoo():
    assert sorted(ZOO) == [m for m in ps.list_models() if m in ZOO]
    with pytest.raises(ps.PrunesearchError, match="unknown model 'resnet57'"):
        ps.create_model("resnet57")
    with pytest.raises(ps.PrunesearchError, match="bad arguments"):
        ps.create_model("resnet20", depth=3)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_trace_prune_forward_exact_costs(name):
    model = ps.create_model(name)
    x = torch.randn(3, 3, 32, 32)
    graph = ps.trace(model, x[:1])
    assert graph.groups and graph.fixed_ops == []
    widths = random_widths(graph, seed=len(name))
    pruned = graph.prune(widths, "slimming").eval()
    with torch.no_grad():
        assert pruned(x[:1]).shape == (1, 10)
        assert pruned(x).shape == (3, 10)
    assert graph.flops(widths) == ps.count_flops(pruned, x[:1])
    assert graph.params(widths) == sum(p.numel() for p in pruned.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_zoo_runs_at_28x28_grayscale(name):
    model = ps.create_model(name, num_classes=7, in_channels=1)
    graph = ps.trace(model, torch.zeros(1, 1, 28, 28))
    pruned = graph.prune({g.name: max(1, g.size // 2) for g in graph.groups})
    with torch.no_grad():
        assert pruned.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_costs_match_published_figures(name):
    params, macs = PUBLISHED[name]
    model = ps.create_model(name)
    assert ps.count_params(model) == pytest.approx(params, rel=0.02)
    assert ps.count_flops(model, torch.zeros(1, 3, 32, 32)) == pytest.approx(macs, rel=0.02)


def test_register_model_and_import_refs():
    @ps.register_model
    def tiny_test_net(num_classes: int = 10, in_channels: int = 3):
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(num_classes)
        )

    assert "tiny_test_net" in ps.list_models()
    assert isinstance(ps.create_model("tiny_test_net"), torch.nn.Sequential)
    ref = "prunesearch.models.resnet:ResNet"
    with pytest.raises(ps.PrunesearchError, match="--allow-import"):
        ps.create_model(ref, depth=20)
    assert ps.create_model(ref, allow_import=True, depth=20) is not None
    # a registered callable named by import path needs no permission
    assert ps.create_model("prunesearch.models.resnet:resnet20") is not None
