"""Training the members of a family, one resumable run folder each (``<out>/members/<slug>``).

A member's weights start from the base pruned to its spec (``finetune``, ``distill``), from the
next larger member once that one is trained (``chain``, largest first), or fresh (``scratch-e``
and ``scratch-b``, trained by :func:`~prunesearch.training.runs.train_arch`). A finished member
is reused; an interrupted one continues from its last checkpoint (the loop's exact resume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunesearch.engine.graph import trace
from prunesearch.family.inputs import FindRun, Member
from prunesearch.progress import Reporter
from prunesearch.spec import build
from prunesearch.training.loop import RunOptions, Splits, load_weights
from prunesearch.training.recipes import (
    FromBase,
    MemberRecipe,
    RecipeJob,
    finished_run,
    share_epochs,
    train_by_recipe,
)
from prunesearch.training.runs import (
    DataOptions,
    inherit_weights,
    load_splits,
    prepare_run_dir,
)

__all__ = ["Trainer", "chain_start", "member_dir", "training_order"]

logger = logging.getLogger(__name__)


def member_dir(out: Path, member: Member) -> Path:
    """A member's run folder: ``<out>/members/<budget slug>``."""
    return out / "members" / member.slug


def training_order(members: list[Member], recipe: MemberRecipe) -> list[Member]:
    """The members in the order they train: largest first for a chain (each starts from the
    one before), else as given."""
    if recipe.init == "previous":
        return sorted(members, key=lambda m: -m.spec.flops)
    return list(members)


def trained_model(run_dir: Path, member: Member) -> nn.Module:
    """A finished member's trained model (built from its spec, its weights loaded)."""
    state, _ = load_weights(run_dir / "model.safetensors")
    model = build(member.spec)
    model.load_state_dict(state)
    return model


def chain_start(
    previous: Member, previous_model: nn.Module, member: Member, signal: str
) -> tuple[nn.Module, dict[str, Any]] | None:
    """``member``'s starting weights pruned from the trained ``previous`` member by
    ``signal``: its graph has the same group names, and every width must fit in the previous
    member's (None when one does not: the caller prunes from the base instead)."""
    wider = [g for g, w in member.spec.widths.items() if w > previous.spec.widths.get(g, w)]
    if wider:
        return None
    graph = trace(previous_model, torch.zeros(1, *member.spec.input_shape))
    model = graph.prune(member.spec.widths, importance=signal)
    return model, {"from": "member", "member": previous.slug, "signal": signal}


@dataclass
class Trainer:
    """Trains the members of one family run, in order; what they share."""

    run: FindRun
    recipe: MemberRecipe
    out: Path
    data: DataOptions = field(default_factory=DataOptions)
    opts: RunOptions = field(default_factory=RunOptions)
    reporter: Reporter | None = None
    _splits: Splits | None = None

    def check(self, members: list[Member]) -> None:
        """Before any training: every member's folder that holds a run was trained with this
        seed and data (raises :class:`~prunesearch.errors.PrunesearchError` otherwise)."""
        opts = replace(self.opts, resume=True)
        for member in members:
            prepare_run_dir(member_dir(self.out, member), opts, self.data)

    def train_all(self, members: list[Member] | None = None) -> dict[str, dict[str, Any]]:
        """Every member (default: the find run's; or ``members``, e.g. one baseline's specs
        at every budget, chained among themselves) trained or reused; their metrics by slug."""
        done, previous = {}, None
        for member in training_order(members or self.run.members, self.recipe):
            done[member.slug] = self.train(member, previous)
            previous = member
        return done

    def train(self, member: Member, previous: Member | None = None) -> dict[str, Any]:
        """One member's metrics: reused when its run finished, else trained (resumed);
        ``previous``: the member a chain prunes it from."""
        base = FromBase(self.run.base_path, self.run.base_epochs, self.run.signal)
        chained = self.recipe.init == "previous" and previous is not None
        family = {"recipe": self.recipe.name, "budget": member.budget}
        job = RecipeJob(
            member.spec,
            self.recipe,
            base,
            name=f"family {member.slug}",
            start=(lambda: self._chain_start(member, previous)) if chained else None,
            meta={"family": family | {"find_run": str(self.run.run_dir)}},
        )
        job = replace(job, epochs=self.epochs(member))
        run_dir = member_dir(self.out, member)
        splits = None if not self.recipe.inherits or finished_run(run_dir) else self.splits()
        return train_by_recipe(
            job, self.run.space, run_dir, self.data, self.opts, self.reporter, splits
        )

    def epochs(self, member: Member) -> int | None:
        """A short training's epochs under ``train.family_compute`` (the family's compute
        shared evenly: :func:`~prunesearch.training.recipes.share_epochs`; a control as a
        member of its FLOPs); None: the space's ``train.family_epochs`` for every member."""
        compute = self.run.space.train.family_compute
        if not compute or not self.recipe.inherits:
            return None
        ratio = member.spec.flops / member.spec.base_flops
        return share_epochs(compute, len(self.run.members), ratio, self.run.base_epochs)

    def splits(self) -> Splits:
        """The space's data, loaded once for all the members that train."""
        if self._splits is None:
            self._splits = load_splits(self.run.space, self.data)
        return self._splits

    def _chain_start(self, member: Member, prev: Member) -> tuple[nn.Module, dict[str, Any]]:
        """The member pruned from the trained ``prev``; from the base when it is wider."""
        signal = self.run.signal
        prev_model = trained_model(member_dir(self.out, prev), prev)
        started = chain_start(prev, prev_model, member, signal)
        if started is not None:
            return started
        logger.warning(
            "member %s is wider than %s in some groups: pruned from the base instead",
            member.budget,
            prev.budget,
        )
        init = {"from": "base", "signal": signal, "note": f"wider than member {prev.slug}"}
        return inherit_weights(member.spec, self.run.base_path, signal), init
