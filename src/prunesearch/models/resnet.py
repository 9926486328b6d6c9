"""CIFAR ResNets: post-activation basic blocks (resnet20..110) and pre-activation bottleneck
blocks (preresnet164), with 1x1-conv projection shortcuts where the shape changes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._init import CifarNet
from .registry import register_model


def _projection(c_in: int, c_out: int, stride: int, with_bn: bool) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out)) if with_bn else nn.Sequential(conv)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(c_in, planes, stride, with_bn=True)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class ResNet(CifarNet):
    """ResNet-(6n+2) for CIFAR: three stages of n basic blocks at 16, 32, 64 channels."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("ResNet depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(c, planes, stride if i == 0 else 1))
                c = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


class PreBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.shortcut = _projection(c_in, c_out, stride, with_bn=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + identity


class PreResNet(CifarNet):
    """Pre-activation ResNet-(9n+2) with bottlenecks at 16, 32, 64 planes (x4 outputs)."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError("PreResNet bottleneck depth must be 9n+2")
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        c = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(PreBottleneck(c, planes, stride if i == 0 else 1))
                c = planes * PreBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(self.pool(x).flatten(1))


def _resnet(depth: int):
    def make(num_classes: int = 10, in_channels: int = 3) -> ResNet:
        return ResNet(depth, num_classes, in_channels)

    make.__name__ = make.__qualname__ = f"resnet{depth}"
    make.__doc__ = f"ResNet-{depth} for CIFAR (basic blocks, projection shortcuts)."
    return register_model(make)


resnet20 = _resnet(20)
resnet32 = _resnet(32)
resnet56 = _resnet(56)
resnet110 = _resnet(110)


@register_model
def preresnet164(num_classes: int = 10, in_channels: int = 3) -> PreResNet:
    """Pre-activation ResNet-164 with bottleneck blocks (the paper's CIFAR model)."""
    return PreResNet(164, num_classes, in_channels)
