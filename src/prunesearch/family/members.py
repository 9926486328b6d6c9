"""Training the members of a family, one resumable run folder each (``<out>/members/<slug>``).

A member's weights start from the base pruned to its spec (``finetune``, ``distill``), from the
next larger member once that one is trained (``chain``, largest first), or fresh (``scratch-e``
and ``scratch-b``, trained by :func:`~prunesearch.training.runs.train_arch`). A finished member
is reused; an interrupted one continues from its last checkpoint (the loop's exact resume).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunesearch.engine.graph import trace
from prunesearch.family.inputs import FindRun, Member
from prunesearch.family.recipes import MemberRecipe, training_recipe
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.progress import Reporter
from prunesearch.spec import build, package_versions
from prunesearch.training.base_weights import load_space_base
from prunesearch.training.loop import (
    Progress,
    Recipe,
    RunOptions,
    Splits,
    Teacher,
    fit,
    load_weights,
)
from prunesearch.training.runs import DataOptions, inherit_weights, load_splits, train_arch

__all__ = ["Trainer", "chain_start", "member_dir", "training_order"]

logger = logging.getLogger(__name__)


def member_dir(out: Path, member: Member) -> Path:
    """A member's run folder: ``<out>/members/<budget slug>``."""
    return out / "members" / member.slug


def training_order(run: FindRun, recipe: MemberRecipe) -> list[Member]:
    """The members in the order they train: largest first for a chain (each starts from the
    one before), else as the find run lists them."""
    if recipe.init == "previous":
        return sorted(run.members, key=lambda m: -m.spec.flops)
    return list(run.members)


def _finished(run_dir: Path) -> dict[str, Any] | None:
    if (run_dir / "metrics.json").is_file() and (run_dir / "model.safetensors").is_file():
        return read_json(run_dir / "metrics.json", "metrics")
    return None


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
    _previous: Member | None = None

    def train_all(self) -> dict[str, dict[str, Any]]:
        """Every member trained (or reused); their metrics by slug."""
        done = {}
        for member in training_order(self.run, self.recipe):
            done[member.slug] = self.train(member)
            self._previous = member
        return done

    def train(self, member: Member) -> dict[str, Any]:
        """One member's metrics: reused when its run finished, else trained (resumed)."""
        run_dir = member_dir(self.out, member)
        if self.recipe.schedule in ("scratch-e", "scratch-b"):
            return train_arch(
                member.spec,
                self.run.space,
                schedule=self.recipe.schedule,
                init="scratch",
                out=run_dir,
                base_epochs=self.run.base_epochs,
                spec_name=member.slug,
                data=self.data,
                opts=replace(self.opts, resume=True),
                reporter=self.reporter,
            )
        finished = _finished(run_dir)
        if finished is not None:
            logger.info("member %s: reusing the finished run %s", member.budget, run_dir)
            return finished
        model, init = self._start(member)
        recipe = training_recipe(self.recipe, self.run.space, self.run.base_epochs)
        sp = self.run.space
        meta = {
            "kind": self.recipe.name,
            "space": sp.name,
            "model": member.spec.model,
            "model_args": member.spec.model_args,
            "input_shape": list(member.spec.input_shape),
            "flops": member.spec.flops,
            "spec": member.spec.to_dict(),
            "family": {"recipe": self.recipe.name, "budget": member.budget, "init": init},
        }
        self._write_config(run_dir, recipe, meta["family"])
        return fit(
            model,
            self.splits(),
            recipe,
            replace(self.opts, resume=True),
            run_dir,
            metadata=meta,
            progress=Progress(self.reporter, f"family {member.budget} ({self.recipe.name})"),
            teacher=self.teacher(),
        )

    def _write_config(self, run_dir: Path, recipe: Recipe, family: dict[str, Any]) -> None:
        """The member run's config.json: the resolved space, recipe, options, data, versions."""
        sp = self.run.space
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            run_dir / "config.json",
            {
                "space": sp.to_dict(),
                "space_path": sp.path,
                "recipe": asdict(recipe),
                "options": asdict(self.opts),
                "data": asdict(self.data),
                "versions": package_versions(),
                "command": sys.argv,
                "kind": self.recipe.name,
                "family": family | {"find_run": str(self.run.run_dir)},
            },
        )

    def splits(self) -> Splits:
        """The space's data, loaded once for all the members that train."""
        if self._splits is None:
            self._splits = load_splits(self.run.space, self.data)
        return self._splits

    def teacher(self) -> Teacher | None:
        """The base as teacher (distill), with the space's temperature and weight."""
        if not self.recipe.teacher:
            return None
        sp = self.run.space
        model = sp.create_model()
        model.load_state_dict(load_space_base(self.run.base_path, sp).state)
        return Teacher(model, sp.train.distill_temperature, sp.train.distill_weight)

    def _start(self, member: Member) -> tuple[nn.Module, dict[str, Any]]:
        """The member's starting weights, seeded, and where they came from."""
        torch.manual_seed(self.opts.seed)
        signal = self.run.signal
        prev = self._previous
        if self.recipe.init == "previous" and prev is not None:
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
        return inherit_weights(member.spec, self.run.base_path, signal), {
            "from": "base",
            "signal": signal,
        }
