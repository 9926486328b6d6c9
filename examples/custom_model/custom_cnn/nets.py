"""BranchySE: constructs beyond the zoo, two parallel branches concatenated, and a
squeeze-excitation gate multiplying the concatenated map, then a strided conv and a classifier.
"""

import torch
from torch import nn


class SEGate(nn.Module):
    """Squeeze-excitation: per-channel weights from global context, ``x * sigmoid(...)``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(1, channels // reduction), 1)
        self.fc2 = nn.Conv2d(max(1, channels // reduction), channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.fc2(self.fc1(s).relu()).sigmoid()


class BranchySE(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.branch3 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.branch1 = nn.Sequential(
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.se = SEGate(2 * width)
        self.down = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.se(torch.cat([self.branch3(x), self.branch1(x)], dim=1))
        x = self.down(x)
        return self.head(x.mean((2, 3)))


def branchy_se(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> BranchySE:
    return BranchySE(num_classes, in_channels, width)
