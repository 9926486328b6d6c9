"""Training an architecture from a trained base by a recipe: each recipe as data, and the
training of one model by it (what ``prunesearch family`` trains its members with, and what
``compare``'s ``finetune-cosine`` and ``distill`` rows train).

A recipe says where a member's weights start (``init``: the base pruned to the member's spec,
the next larger member once trained, or fresh), how long and how fast it trains, and whether
the base teaches it. The inherited recipes read their numbers from the space's ``train``
section (``family_epochs``, ``family_lr``, ``distill_temperature``, ``distill_weight``); the
from-scratch ones are the paper's references, trained as ``train-arch`` trains them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunesearch.fileio import read_json
from prunesearch.paths import METRICS, WEIGHTS
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.spec import ArchSpec
from prunesearch.training.base_weights import load_space_base
from prunesearch.training.loop import Progress, Recipe, RunOptions, Splits, Teacher, fit
from prunesearch.training.runs import (
    ArchTraining,
    DataOptions,
    inherit_weights,
    load_splits,
    prepare_run_dir,
    recipe_from_space,
    train_arch,
    write_config,
)
from prunesearch.vocab import FAMILY_RECIPES, RECIPE_KINDS, require

__all__ = [
    "KIND_RECIPES",
    "RECIPES",
    "FromBase",
    "MemberRecipe",
    "RecipeJob",
    "finished_run",
    "member_epochs",
    "member_recipe",
    "recipe_teacher",
    "share_epochs",
    "train_by_recipe",
    "training_recipe",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemberRecipe:
    """How a member is trained.

    Attributes:
        name: the recipe's name (``prunesearch family --recipe``).
        init: ``base`` (the base's weights pruned to the spec by the search's signal),
            ``previous`` (pruned from the next larger member once it is trained; largest
            member first) or ``scratch`` (fresh weights).
        teacher: whether the base's logits are soft targets (knowledge distillation).
        schedule: ``scratch-e``/``scratch-b`` for the references (train-arch's epoch budgets),
            else the lr schedule of the short training: ``cosine`` from the space's
            ``train.family_lr`` over ``train.family_epochs`` of the base's epochs.
    """

    name: str
    init: str
    teacher: bool = False
    schedule: str = "cosine"

    @property
    def inherits(self) -> bool:
        return self.init != "scratch"


RECIPES = {
    "finetune": MemberRecipe("finetune", init="base"),
    "distill": MemberRecipe("distill", init="base", teacher=True),
    "chain": MemberRecipe("chain", init="previous"),
    "scratch-e": MemberRecipe("scratch-e", init="scratch", schedule="scratch-e"),
    "scratch-b": MemberRecipe("scratch-b", init="scratch", schedule="scratch-b"),
}


# compare's rows of the cheap recipes (vocab.RECIPE_KINDS) -> the recipe each trains by
KIND_RECIPES = dict(zip(RECIPE_KINDS, ("finetune", "distill"), strict=True))


def member_recipe(name: str) -> MemberRecipe:
    """The recipe called ``name``; an unknown name is one error naming the choices."""
    return RECIPES[require("recipe", name, FAMILY_RECIPES)]


def member_epochs(fraction: float, base_epochs: int) -> int:
    """A short training's epochs: ``fraction`` of the base's, rounded up, at least 1 (the
    default space's 2-epoch base at 0.25 gives 1 epoch; a 160-epoch base, 40)."""
    return max(1, math.ceil(fraction * base_epochs - 1e-9))


def share_epochs(compute: float, members: int, flops_ratio: float, base_epochs: int) -> int:
    """A member's epochs when a family of ``members`` shares ``compute`` (a fraction of the
    base's training compute) evenly: ``base_epochs x compute / (members x flops_ratio)``,
    rounded down so that the family stays within it, at least 1, at most the base's epochs (a
    member never costs more than its Scratch-E). The default space's 2-epoch base, 3 members,
    compute 1: 2 epochs at 25% FLOPs, 1 at 50% and 75%, 0.875 of the base's compute."""
    share = math.floor(base_epochs * compute / (members * flops_ratio) + 1e-9)
    return max(1, min(base_epochs, share))


def training_recipe(
    recipe: MemberRecipe, space: Space, base_epochs: int, epochs: int | None = None
) -> Recipe:
    """The optimisation recipe of an inherited member: the space's SGD settings and batches, no
    sparsity, ``train.family_lr`` cosine-annealed to 0 over ``epochs`` (default:
    ``member_epochs`` of the space's ``train.family_epochs``)."""
    t = space.train
    start = recipe_from_space(space, epochs=base_epochs, sparsity=0.0)
    return Recipe(
        **asdict(start)
        | {
            "epochs": epochs or member_epochs(t.family_epochs, base_epochs),
            "lr": t.family_lr,
            "schedule": recipe.schedule,
        }
    )


@dataclass(frozen=True)
class FromBase:
    """The trained base a model is trained from: its weights, the epochs it trained (a short
    training's epochs are a fraction of them; Scratch-E/B start from them) and the signal that
    prunes it to a spec."""

    path: Path
    epochs: int
    signal: str


Start = Callable[[], tuple[nn.Module, dict[str, Any]]]


@dataclass(frozen=True)
class RecipeJob:
    """One model to train by a recipe.

    Attributes:
        spec: the architecture.
        recipe: how it trains (:data:`RECIPES`).
        base: the base it is trained from (:class:`FromBase`).
        name: its name in logs and progress.
        start: its starting weights and where they came from, when not the base pruned to the
            spec (a chain's member: the previous member pruned); called only when it trains.
        meta: more fields of its metrics.json and config.json (a family member's budget...).
        epochs: a short training's epochs, when not the space's ``train.family_epochs`` of the
            base's (a family sharing ``train.family_compute``: :func:`share_epochs`).
    """

    spec: ArchSpec
    recipe: MemberRecipe
    base: FromBase
    name: str = "spec"
    start: Start | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's metrics (its weights and metrics.json written), else None."""
    if (run_dir / METRICS).is_file() and (run_dir / WEIGHTS).is_file():
        return read_json(run_dir / METRICS, "metrics")
    return None


def recipe_teacher(recipe: MemberRecipe, space: Space, base_path: Path) -> Teacher | None:
    """The base as teacher (a recipe with ``teacher``), with the space's temperature and
    weight; None for the others."""
    if not recipe.teacher:
        return None
    model = space.create_model()
    model.load_state_dict(load_space_base(base_path, space).state)
    return Teacher(model, space.train.distill_temperature, space.train.distill_weight)


def _scratch(job: RecipeJob, space: Space, run_dir: Path, data: DataOptions, opts: RunOptions):
    how = ArchTraining(job.recipe.schedule, "scratch", base_epochs=job.base.epochs)
    return train_arch(job.spec, space, how, out=run_dir, spec_name=job.name, data=data, opts=opts)


def train_by_recipe(
    job: RecipeJob,
    space: Space,
    run_dir: Path,
    data: DataOptions = DataOptions(),  # noqa: B008
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
    splits: Splits | None = None,
) -> dict[str, Any]:
    """Trains ``job`` into ``run_dir`` (resumable: a finished run is reused, an interrupted one
    continues from its checkpoint); returns its metrics. ``splits``: the data, when already
    loaded (else the space's, loaded here)."""
    opts = replace(opts, resume=True)
    if not job.recipe.inherits:  # the references: as train-arch trains them
        return _scratch(job, space, run_dir, data, opts)
    finished = prepare_run_dir(run_dir, opts, data)
    if finished is not None:
        logger.info("%s: reusing the finished run %s", job.name, run_dir)
        return finished
    torch.manual_seed(opts.seed)
    if job.start is not None:
        model, init = job.start()
    else:
        model = inherit_weights(job.spec, job.base.path, job.base.signal)
        init = {"from": "base", "signal": job.base.signal}
    recipe = training_recipe(job.recipe, space, job.base.epochs, job.epochs)
    spec = job.spec
    meta = {
        "kind": job.recipe.name,
        "space": space.name,
        "model": spec.model,
        "model_args": spec.model_args,
        "input_shape": list(spec.input_shape),
        "flops": spec.flops,
        "spec": spec.to_dict(),
        "init": init,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    sections = {"recipe": asdict(recipe), "kind": job.recipe.name, "init": init}
    write_config(run_dir, space, opts, data, **sections, **job.meta)
    return fit(
        model,
        splits or load_splits(space, data, reporter),
        recipe,
        opts,
        run_dir,
        metadata=meta | job.meta,
        progress=Progress(reporter, f"{job.name} ({job.recipe.name})"),
        teacher=recipe_teacher(job.recipe, space, job.base.path),
    )
