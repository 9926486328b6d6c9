"""CIFAR-style VGG with batch norm (the network-slimming / "Rethinking" variant).

3x3 convs without bias, BN, ReLU, 2x2 max-pools; a global average pool and one linear
classifier. Works at 28x28 and 32x32 input.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._init import CifarNet
from .registry import register_model

_CFG: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
    ],
}


class VGG(CifarNet):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [
                    nn.Conv2d(c, int(v), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x))  # (N, C, 1, 1)
        return self.classifier(x.flatten(1))


@register_model
def vgg11(num_classes: int = 10, in_channels: int = 3) -> VGG:
    return VGG(11, num_classes, in_channels)


@register_model
def vgg13(num_classes: int = 10, in_channels: int = 3) -> VGG:
    return VGG(13, num_classes, in_channels)


@register_model
def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    return VGG(16, num_classes, in_channels)


@register_model
def vgg19(num_classes: int = 10, in_channels: int = 3) -> VGG:
    return VGG(19, num_classes, in_channels)
