"""Proxy scoring of candidate architectures: prune the trained base, recalibrate BN, measure
accuracy on the held-out validation split.

BN recalibration (Liu et al.'s and EagleEye's observation): a pruned network's BN running
statistics are stale, and a few forward passes in train mode, with a cumulative average
(``momentum=None``), restore them. Every candidate sees the same fixed calibration batches (no
augmentation) and the same validation images, so scores are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .data import ImageData
from .errors import PrunesearchError
from .graph import ChannelGraph
from .importance import Importance
from .loader import BatchLoader
from .memory_format import to_device
from .train import evaluate

__all__ = ["ProxyScorer", "recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Recomputes every BatchNorm's running statistics as the average over ``batches``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight for every batch
    model.train()
    for x in batches:
        model(x)
    for m, momentum in saved:
        m.momentum = momentum
    model.eval()


class ProxyScorer:
    """Scores widths of a traced, trained base model by recalibrated validation accuracy.

    Args:
        graph: the trained base model, traced.
        train: training images for BN calibration (the first ``calib_batches`` batches of a
            fixed permutation).
        val: the held-out validation split.
        importance: channel selection used to prune (signal name or explicit scores).
    """

    def __init__(self, graph: ChannelGraph, train: ImageData, val: ImageData, *,
                 importance: Importance, calib_batches: int, batch_size: int,
                 eval_batch_size: int, device: torch.device, channels_last: bool = True,
                 seed: int = 0, finetune_lr: float = 0.01) -> None:
        self.graph, self.importance, self.device = graph, importance, device
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self.channels_last, self.finetune_lr = channels_last, finetune_lr
        calib = BatchLoader(train, batch_size, train=True, augment=False, device=device,
                            seed=seed, channels_last=channels_last)
        self.calib = [x for _, (x, _) in zip(range(calib_batches), calib, strict=False)]
        self.val = BatchLoader(val, eval_batch_size, train=False, device=device,
                               channels_last=channels_last)

    def model(self, widths: Mapping[str, int], importance: Importance | None = None
              ) -> nn.Module:
        """The pruned base with recalibrated BN, in eval mode."""
        model = self.graph.prune(widths, self.importance if importance is None else importance)
        model = to_device(model, self.device, self.channels_last)
        recalibrate_bn(model, self.calib)
        return model.eval()

    def score(self, widths: Mapping[str, int], importance: Importance | None = None) -> float:
        """Validation accuracy of the pruned, recalibrated base.

        Raises:
            PrunesearchError: the candidate's outputs are not finite (NaN/inf loss).
        """
        loss, acc = evaluate(self.model(widths, importance), self.val)
        if not math.isfinite(loss):
            raise PrunesearchError(f"candidate diverged: validation loss is {loss}")
        return acc

    def score_finetuned(self, widths: Mapping[str, int], steps: int, trial=None) -> float:
        """Validation accuracy after ``steps`` SGD steps of fine-tuning the recalibrated model.

        With an Optuna ``trial``, the accuracy is reported four times on the way and a poor
        trial is stopped early (``optuna.TrialPruned``: Optuna's name; ours is early stopping).
        """
        import optuna

        model = self.model(widths)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.finetune_lr, momentum=0.9,
                                    weight_decay=1e-4)
        loader = BatchLoader(self.train, self.batch_size, train=True, device=self.device,
                             seed=self.seed, channels_last=self.channels_last)
        every = max(1, steps // 4)
        step, epoch, acc = 0, 0, 0.0
        while step < steps:
            loader.set_epoch(epoch)
            for x, y in loader:
                model.train()
                loss = nn.functional.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    raise PrunesearchError(f"candidate diverged: fine-tuning loss is {loss.item()}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % every == 0 or step == steps:
                    _, acc = evaluate(model, self.val)
                    if trial is not None:
                        trial.report(acc, step)
                        if trial.should_prune():
                            raise optuna.TrialPruned()
                if step == steps:
                    break
            epoch += 1
        return acc
