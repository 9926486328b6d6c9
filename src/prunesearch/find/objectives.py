"""Search objectives: how a candidate architecture (its widths) is scored on the held-out
validation split of the training data. Higher is better; the test set is never seen.

``inherit`` (:class:`InheritScorer`): prune the trained base to the widths, recalibrate BN,
measure accuracy; optionally after a few fine-tuning steps. It ranks what *survives pruning*,
which predicts the fine-tuned result (EagleEye), not necessarily training from scratch.

``scratch`` (:class:`ScratchScorer`): a short from-scratch training of the candidate, with the
same initialisation seed and the same data order for every candidate, scored at rungs of
training images (successive halving stops weak candidates at the early rungs). The learning
rate is constant along the run (the *trunk*); at each rung a copy of the model is cooled down
(learning rate linearly to 0 over ``cooldown`` x the rung's images, on its own batches) and
evaluated, so each rung's score is that of a schedule completed within its own budget
(warmup-stable-decay, Hägele et al. 2024) while the trunk goes on untouched.

BN recalibration (Liu et al.'s and EagleEye's observation): a pruned network's BN running
statistics are stale, and a few forward passes in train mode, with a cumulative average
(``momentum=None``), restore them. Every candidate sees the same fixed calibration batches (no
augmentation) and the same validation images, so scores are comparable.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from prunesearch.data.datasets import ImageData
from prunesearch.data.loader import BatchLoader
from prunesearch.device import to_device
from prunesearch.engine.graph import ChannelGraph
from prunesearch.engine.importance import Importance
from prunesearch.errors import PrunesearchError
from prunesearch.spec import reinitialize
from prunesearch.training.loop import evaluate
from prunesearch.vocab import OBJECTIVES

__all__ = ["OBJECTIVES", "Feed", "InheritScorer", "Rungs", "ScratchScorer", "recalibrate_bn"]


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


def batches_forever(
    data: ImageData,
    batch_size: int,
    *,
    augment: bool,
    device: torch.device,
    seed: int,
    channels_last: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches without end: epoch after epoch of one loader's fixed order."""
    loader = BatchLoader(
        data,
        batch_size,
        train=True,
        augment=augment,
        device=device,
        seed=seed,
        channels_last=channels_last,
    )
    if len(loader) == 0:
        raise PrunesearchError(f"{len(data)} training images make no batch of {batch_size}")
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def sgd_steps(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    n: int,
    lr_at=None,
) -> None:
    """``n`` SGD steps on the next ``n`` batches (``lr_at(i)``: learning rate of step i).

    Raises:
        PrunesearchError: the loss is not finite (the candidate diverged).
    """
    model.train()
    for i, (x, y) in zip(range(n), batches, strict=False):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(i)
        loss = nn.functional.cross_entropy(model(x), y)
        if not torch.isfinite(loss):
            raise PrunesearchError(f"candidate diverged: loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@dataclass(frozen=True)
class Feed:
    """How a scorer feeds its candidates: batch sizes, device, memory format, the seed of the
    data order (and of a from-scratch candidate's initialisation), and augmentation."""

    batch_size: int
    eval_batch_size: int
    device: torch.device
    channels_last: bool = True
    seed: int = 0
    augment: bool = False


class InheritScorer:
    """Scores widths of a traced, trained base model by recalibrated validation accuracy.

    Args:
        graph: the trained base model, traced.
        train: training images for BN calibration (the first ``calib_batches`` batches of a
            fixed permutation).
        val: the held-out validation split.
        importance: channel selection used to prune (signal name or explicit scores).
    """

    def __init__(
        self,
        graph: ChannelGraph,
        train: ImageData,
        val: ImageData,
        *,
        importance: Importance,
        calib_batches: int,
        feed: Feed,
        finetune_lr: float = 0.01,
    ) -> None:
        self.graph, self.importance, self.device = graph, importance, feed.device
        self.train, self.batch_size, self.seed = train, feed.batch_size, feed.seed
        self.channels_last, self.finetune_lr = feed.channels_last, finetune_lr
        batch_size, eval_batch_size = feed.batch_size, feed.eval_batch_size
        device, seed, channels_last = feed.device, feed.seed, feed.channels_last
        calib = BatchLoader(
            train,
            batch_size,
            train=True,
            augment=False,
            device=device,
            seed=seed,
            channels_last=channels_last,
        )
        self.calib = [x for _, (x, _) in zip(range(calib_batches), calib, strict=False)]
        self.val = BatchLoader(
            val, eval_batch_size, train=False, device=device, channels_last=channels_last
        )

    def model(self, widths: Mapping[str, int], importance: Importance | None = None) -> nn.Module:
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
        optimizer = torch.optim.SGD(
            model.parameters(), lr=self.finetune_lr, momentum=0.9, weight_decay=1e-4
        )
        batches = batches_forever(
            self.train,
            self.batch_size,
            augment=True,
            device=self.device,
            seed=self.seed,
            channels_last=self.channels_last,
        )
        every, step, acc = max(1, steps // 4), 0, 0.0
        while step < steps:
            n = min(every, steps - step)
            sgd_steps(batches, model, optimizer, n)
            step += n
            _, acc = evaluate(model, self.val)
            if trial is not None:
                trial.report(acc, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return acc


@dataclass(frozen=True)
class Rungs:
    """The scratch objective's fidelities: rung ``k`` trains on ``images * reduction**k``
    training images (``count`` rungs); successive halving keeps the best ``1/reduction`` of the
    candidates at each rung. ``cooldown``: the decay branch's length, a fraction of the rung."""

    images: int = 2000
    count: int = 3
    reduction: int = 3
    cooldown: float = 0.25

    @property
    def sizes(self) -> list[int]:
        return [self.images * self.reduction**k for k in range(self.count)]

    def fitted(self, n_train: int, batch_size: int) -> Rungs:
        """These rungs, scaled down (when they exceed it) so that the last rung is one pass
        over the ``n_train`` training images, the first at least one batch: a candidate is not
        trained for dozens of epochs of a small training split (2 rungs of x3: 33% then 100%).
        """
        if self.sizes[-1] <= n_train:
            return self
        images = max(batch_size, n_train // self.reduction ** (self.count - 1))
        return dataclasses.replace(self, images=images)

    def pruner(self) -> object:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.images, reduction_factor=self.reduction, min_early_stopping_rate=0
        )


@dataclass(frozen=True)
class SGD:
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4


class ScratchScorer:
    """Scores widths by validation accuracy after a short from-scratch training.

    Args:
        graph: the traced model (its weights are not used: every candidate starts fresh).
        train, val: training images (the trunk and the cool-downs draw from them) and the
            held-out validation split.
        rungs: the fidelities; the last rung's score is the candidate's value.
        sgd: the optimiser settings (the space's training recipe).
        seed: one initialisation seed and one data order for every candidate.
    """

    def __init__(
        self,
        graph: ChannelGraph,
        train: ImageData,
        val: ImageData,
        *,
        rungs: Rungs,
        sgd: SGD,
        feed: Feed,
    ) -> None:
        self.graph, self.rungs, self.sgd, self.device = graph, rungs, sgd, feed.device
        self.train, self.batch_size, self.augment = train, feed.batch_size, feed.augment
        self.seed, self.channels_last = feed.seed, feed.channels_last
        # (seed, widths) -> every rung's score (None: a rung not scored, see :meth:`score`)
        self._memo: dict[tuple, list[float | None]] = {}
        self.trainings = 0  # fresh trainings (replays from the memo are not counted)
        self.val = BatchLoader(
            val,
            feed.eval_batch_size,
            train=False,
            device=feed.device,
            channels_last=feed.channels_last,
        )

    def _stream(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batches_forever(
            self.train,
            self.batch_size,
            augment=self.augment,
            device=self.device,
            seed=seed,
            channels_last=self.channels_last,
        )

    def _cooled(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, images: int, rung: int, seed: int
    ) -> float:
        """Validation accuracy of a copy of the trunk after a linear decay to lr 0."""
        branch, branch_opt = copy.deepcopy((model, optimizer))
        n = max(1, round(self.rungs.cooldown * images / self.batch_size))
        lr = self.sgd.lr
        sgd_steps(
            self._stream(seed + 7919 * (rung + 1)),
            branch,
            branch_opt,
            n,
            lr_at=lambda i: lr * (1 - i / n),
        )
        loss, acc = evaluate(branch, self.val)
        if not math.isfinite(loss):
            raise PrunesearchError(f"candidate diverged: validation loss is {loss}")
        return acc

    def score(self, widths: Mapping[str, int], trial=None, seed: int | None = None) -> float:
        """Validation accuracy at the last rung. With an Optuna ``trial`` every rung is reported
        (step = training images) and a weak candidate is stopped early
        (``optuna.TrialPruned``: Optuna's name; ours is early stopping). The score is the same
        with or without a trial (the cool-down branches leave the trunk untouched). ``seed``
        replaces the shared initialisation seed and data order (a second opinion on a
        finalist). Widths already trained through every rung with the same seed (a baseline the
        search proposes again, two ratios that project to the same widths, a finalist of
        another budget) are not trained again: their rung scores are replayed.

        Under another ``seed`` and without a trial, no trial will ever see the earlier rungs:
        only the last rung is cooled down and evaluated (the same last score, less work)."""
        seed = self.seed if seed is None else seed
        key = (seed, tuple(sorted(widths.items())))
        accs = self._memo.get(key)
        if accs is None or (trial is not None and None in accs):
            every_rung = trial is not None or seed == self.seed
            accs = self._train(widths, seed, trial, every_rung)
            self._memo[key] = accs
        else:
            self._report(accs, trial)
        return accs[-1]

    def memo(self) -> list[dict]:
        """The scores trained so far, as JSON-ready records (``seed``, ``widths``, ``rungs``)."""
        return [
            {"seed": seed, "widths": dict(widths), "rungs": accs}
            for (seed, widths), accs in self._memo.items()
        ]

    def remember(self, records: list[dict]) -> None:
        """Takes scores of :meth:`memo` (an earlier run's, with the same settings) as if
        trained here; records of another rung count are ignored."""
        for r in records:
            if isinstance(r.get("rungs"), list) and len(r["rungs"]) == self.rungs.count:
                key = (int(r["seed"]), tuple(sorted((k, int(v)) for k, v in r["widths"].items())))
                self._memo.setdefault(key, list(r["rungs"]))

    def _report(self, accs: list[float], trial, first: int = 0) -> None:
        """Reports the scores of rungs ``first``, ``first + 1``, ... to ``trial`` and stops a
        weak candidate early (``optuna.TrialPruned``)."""
        import optuna

        if trial is None:
            return
        sizes = self.rungs.sizes
        for k, acc in enumerate(accs, start=first):
            trial.report(acc, sizes[k])
            if k < len(sizes) - 1 and trial.should_prune():
                raise optuna.TrialPruned()

    def _train(
        self, widths: Mapping[str, int], seed: int, trial, every_rung: bool = True
    ) -> list[float | None]:
        """Every rung's score of a fresh training of ``widths``, reported as it comes (only the
        last rung's unless ``every_rung``: the others are None)."""
        self.trainings += 1
        torch.manual_seed(seed)
        model = reinitialize(self.graph.prune(widths))
        model = to_device(model, self.device, self.channels_last)
        s = self.sgd
        optimizer = torch.optim.SGD(
            model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
        trunk = self._stream(seed)
        done, accs = 0, []
        last = len(self.rungs.sizes) - 1
        for k, images in enumerate(self.rungs.sizes):
            steps = images // self.batch_size - done
            sgd_steps(trunk, model, optimizer, steps)
            done += steps
            if not every_rung and k < last:
                accs.append(None)
                continue
            accs.append(self._cooled(model, optimizer, images, k, seed))
            self._report(accs[-1:], trial, first=k)
        return accs
