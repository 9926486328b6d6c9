"""DenseNet-40 (growth rate 12, no bottleneck, no compression): the paper's CIFAR model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._init import CifarNet
from .registry import register_model


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 producing ``growth`` channels, concatenated to its input."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(CifarNet):
    def __init__(
        self, depth: int = 40, growth: int = 12, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        n = (depth - 4) // 3
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for stage in range(3):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            blocks.append(nn.Sequential(*layers))
            if stage < 2:
                blocks.append(Transition(c, c))
        self.dense1, self.trans1, self.dense2, self.trans2, self.dense3 = blocks
        self.bn = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.dense3(self.trans2(self.dense2(x)))
        x = F.relu(self.bn(x))
        return self.fc(self.pool(x).flatten(1))


@register_model
def densenet40(num_classes: int = 10, in_channels: int = 3) -> DenseNet:
    """DenseNet-40, growth rate 12 (about 1.06M parameters on CIFAR-10)."""
    return DenseNet(40, 12, num_classes, in_channels)
