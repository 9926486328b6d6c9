"""Weight initialisation shared by the zoo models (the schemes of the paper's CIFAR code)."""

from __future__ import annotations

from torch import nn


def init_cifar_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out), BN weight 1 / bias 0, small-normal linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class CifarNet(nn.Module):
    """Base class of the zoo models: ``init_weights`` is re-run by ``ps.build`` after pruning."""

    def init_weights(self) -> None:
        init_cifar_weights(self)
