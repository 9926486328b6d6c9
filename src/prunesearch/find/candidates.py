"""The candidates of one search: what a worker needs to project and score trial widths.

:class:`Candidates` holds the base traced into its channel graph, the search's
parameterisation (``granularity.py``), the objective's scorer (``objectives.py``) and, under a
latency budget, the latency models (``latency_search.py``); :class:`Job` is one budget's study as
every process working on it sees it (pickled to ``--jobs`` workers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from prunesearch.data.datasets import DATASETS, SYNTHETIC
from prunesearch.engine.budget import Budget, cost, project
from prunesearch.engine.graph import ChannelGraph, trace
from prunesearch.errors import PrunesearchError, shown
from prunesearch.find.granularity import Parameterization
from prunesearch.find.objectives import SGD, Feed, InheritScorer, Rungs, ScratchScorer
from prunesearch.latency.budgets import attach_latency, fastest
from prunesearch.latency.predictor import LatencyModel
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.training.base_weights import load_space_base
from prunesearch.training.loop import RunOptions, resolve_device
from prunesearch.training.runs import DataOptions, load_splits
from prunesearch.vocab import SIGNALS, require

__all__ = [
    "Candidates",
    "Job",
    "input_shape",
    "objective_settings",
    "resolve_signal",
    "space_rungs",
]

logger = logging.getLogger(__name__)


def input_shape(space: Space) -> list[int]:
    """(C, H, W) of the space's dataset, without loading it (the user's own data: of a space
    resolved by :func:`~prunesearch.training.runs.resolve_space`)."""
    d = space.data
    if isinstance(d.dataset, dict):
        if d.image_size is None or d.channels is None:
            raise PrunesearchError(
                f"space {space.name}: the image size of {shown(d.dataset)} is known once it is "
                "loaded (resolve_space)"
            )
        h, w = (d.image_size, d.image_size) if isinstance(d.image_size, int) else d.image_size
        return [d.channels, h, w]
    if space.data.dataset == SYNTHETIC:
        syn = space.data.synthetic
        size = syn.get("image_size", 16)
        return [syn.get("in_channels", 3), size, size]
    info = DATASETS.get(space.data.dataset)
    if info is None:
        raise PrunesearchError(f"space {space.name}: unknown dataset {space.data.dataset!r}")
    return [info.in_channels, info.image_size, info.image_size]


def space_rungs(space: Space, n_train: int | None = None) -> Rungs:
    """The scratch objective's rungs of the space, fitted to ``n_train`` training images."""
    s = space.search
    rungs = Rungs(s.scratch_images, s.scratch_rungs, s.scratch_reduction, s.scratch_cooldown)
    return rungs if n_train is None else rungs.fitted(n_train, space.data.batch_size)


def objective_settings(
    space: Space, objective: str, finetune_steps: int = 0, rungs: Rungs | None = None
) -> dict[str, Any]:
    """What defines an objective's scores (recorded in specs; a cached score is reused only
    when these are unchanged). ``rungs``: the scratch objective's, fitted to the data."""
    s = space.search
    if objective == "scratch":
        return {
            "objective": "scratch",
            "rung_images": (rungs or space_rungs(space)).sizes,
            "reduction": s.scratch_reduction,
            "cooldown": s.scratch_cooldown,
            "lr": space.train.lr,
            "batch_size": space.data.batch_size,
            "seed": 0,
        }
    return {
        "objective": "inherit",
        "calib_batches": s.calib_batches,
        "finetune_steps": finetune_steps,
    }


def resolve_signal(space: Space, requested: str | None, base_meta: dict[str, Any]) -> str:
    if requested is not None:
        return require("signal", requested, SIGNALS)
    sparsity = (base_meta.get("recipe") or {}).get("sparsity")
    if space.search.signal == "slimming" and sparsity == 0:
        logger.info("the base was trained without sparsity: using the l1 signal")
        return "l1"
    if space.search.signal == "slimming" and not base_meta:
        logger.info(
            "the base was trained elsewhere (its sparsity is unknown): the slimming signal is "
            "weak on a base trained without sparsity; --signal l1 does not depend on it"
        )
    return space.search.signal


class Candidates:
    """Everything a worker needs to score trials of one budget (rebuilt in each process)."""

    def __init__(
        self,
        space: Space,
        base_path: Path,
        signal: str,
        data: DataOptions,
        opts: RunOptions,
        objective: str = "inherit",
        finetune_steps: int = 0,
    ) -> None:
        self.space, self.signal = space, signal
        self.objective, self.finetune_steps = objective, finetune_steps
        model = space.create_model()
        model.load_state_dict(load_space_base(base_path, space).state)
        self.graph = trace(model, torch.zeros(1, *input_shape(space)))
        splits = load_splits(space, data)
        if splits.val is None:
            raise PrunesearchError(
                f"space {space.name}: the search scores candidates on a "
                "validation split; set data.val_size > 0"
            )
        self.val = splits.val  # the base's own accuracy is measured on it too
        d, s, t = space.data, space.search, space.train
        self.device = resolve_device(opts.device)
        self.latency_models: dict[str, LatencyModel] = {}
        self.param = Parameterization(self.graph, s.granularity, s.min_ratio)
        self.rungs = space_rungs(space, len(splits.train))
        self.scorer: InheritScorer | ScratchScorer
        if objective == "scratch":
            # NCHW: pruned nets train up to 21% slower channels-last on CPU (BENCHMARKS.md)
            self.scorer = ScratchScorer(
                self.graph,
                splits.train,
                splits.val,
                rungs=self.rungs,
                sgd=SGD(t.lr, t.momentum, t.weight_decay),
                feed=Feed(d.batch_size, d.eval_batch_size, self.device, False, augment=d.augment),
            )
        else:
            self.scorer = InheritScorer(
                self.graph,
                splits.train,
                splits.val,
                importance=signal,
                calib_batches=s.calib_batches,
                # auto: channels-last, faster for evaluation even on
                # the pruned nets that train slower in it (BENCHMARKS)
                feed=Feed(
                    d.batch_size, d.eval_batch_size, self.device, t.channels_last is not False
                ),
                finetune_lr=t.finetune_lr,
            )

    @classmethod
    def on_graph(
        cls,
        space: Space,
        graph: ChannelGraph,
        scorer: Any,
        *,
        signal: str,
        objective: str,
        device: torch.device,
        rungs: Rungs | None = None,
    ) -> Candidates:
        """Candidates of a model already traced, scored by ``scorer`` (an objective's scorer,
        or any object with ``score(widths, importance=None, seed=None) -> float``): the Python
        API's seam, where the model and the score are the user's objects rather than a
        space's zoo model and dataset."""
        self = cls.__new__(cls)
        self.space, self.signal, self.objective, self.finetune_steps = space, signal, objective, 0
        self.graph, self.scorer, self.device = graph, scorer, device
        self.latency_models = {}
        self.param = Parameterization(graph, space.search.granularity, space.search.min_ratio)
        self.rungs = rungs or space_rungs(space)
        return self

    def use_budgets(
        self, budgets: list[Budget], device: str, reporter: Reporter | None = None
    ) -> None:
        """Latency budgets need the space's latency models on the graph (built or cached)."""
        if any(b.kind == "latency" for b in budgets) and not self.latency_models:
            self.latency_models = attach_latency(
                self.graph, self.space, device=device, reporter=reporter
            )

    def pruner(self) -> optuna.pruners.BasePruner | None:
        return self.rungs.pruner() if self.objective == "scratch" else None

    def score(
        self,
        widths: dict[str, int],
        importance: str | None = None,
        trial: optuna.Trial | None = None,
    ) -> float:
        """The objective's value of ``widths`` (``importance``: which channels an inherit
        score keeps; from-scratch scores do not depend on it)."""
        if isinstance(self.scorer, ScratchScorer):
            return self.scorer.score(widths, trial)
        if self.finetune_steps:
            return self.scorer.score_finetuned(widths, self.finetune_steps, trial)
        return self.scorer.score(widths, importance)

    def trial_attrs(self, widths: dict[str, int]) -> dict[str, Any]:
        """A candidate's user attributes in the study: its widths and costs, and what scored
        it (optuna-dashboard shows them beside each trial's parameters and value)."""
        flops = self.graph.flops(widths)
        attrs = {
            "widths": widths,
            "flops": flops,
            "params": self.graph.params(widths),
            "flops_ratio": round(flops / self.graph.flops(), 4),
            "objective": self.objective,
            "signal": self.signal,
        }
        if self.latency_models:  # a latency budget: the prediction and its faster format
            fmt, ns = fastest(self.latency_models, widths)
            attrs |= {"latency_ms": ns / 1e6, "memory_format": fmt}
        return attrs

    def objective_fn(self, budget: Budget, target: int):
        s = self.space.search

        def fn(trial: optuna.Trial) -> float:
            params = self.param.suggest(trial)
            round_to = s.round_to
            if budget.kind == "latency" and s.latency_round_to != s.round_to:
                # widths in whole SIMD blocks can be faster at fewer FLOPs: the search decides
                round_to = trial.suggest_categorical("round_to", [s.round_to, s.latency_round_to])
            widths = project(
                self.graph,
                self.param.ratios(params),
                budget.kind,
                target,
                min_ratio=s.min_ratio,
                round_to=round_to,
            )
            trial.set_constraint("budget", cost(self.graph, budget.kind, widths) - target)
            for key, value in self.trial_attrs(widths).items():  # what a dashboard lists
                trial.set_user_attr(key, value)
            return self.score(widths, trial=trial)

        return fn


@dataclass(frozen=True)
class Job:
    """One budget's study: what every process working on it needs (pickled to --jobs workers)."""

    space: Space
    base_path: Path
    signal: str
    objective: str
    finetune_steps: int
    data: DataOptions
    opts: RunOptions
    budget: Budget
    target: int
    storage_url: str
    run_dir: Path
    study_name: str
    n_trials: int
    n_startup: int
    base_info: dict[str, Any] = field(default_factory=dict)  # its format, accuracy, epochs
