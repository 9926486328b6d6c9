"""MobileNetV2, CIFAR variant (stride 1 in the stem and the second stage)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._init import CifarNet
from .registry import register_model

# (expansion, out_channels, blocks, stride)
_CFG = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module | None = None
        if stride == 1 and c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
            )
        self.residual = stride == 1

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self.bn1(self.conv1(x)))
        out = F.relu6(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return out


class MobileNetV2(CifarNet):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers = []
        c = 32
        for expansion, c_out, n, stride in _CFG:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, expansion, stride if i == 0 else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(c, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.fc = nn.Linear(1280, num_classes)
        self.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(self.bn1(self.conv1(x)))
        x = F.relu6(self.bn2(self.conv2(self.layers(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model
def mobilenetv2(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    """MobileNetV2 for 32x32 input (about 2.2M parameters on CIFAR-10)."""
    return MobileNetV2(num_classes, in_channels)
