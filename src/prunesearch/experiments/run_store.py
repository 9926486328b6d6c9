"""Trained cells: one (architecture, training, seed) run each, stored under a folder named by
what defines it, so that ``compare`` and ``fidelity`` never train the same cell twice.

A cell's identity is everything that changes what it learns: the model and its widths, how it
is trained (``base``, ``scratch-e``, ``scratch-b``, ``finetune``, the cheap recipes
``finetune-cosine`` and ``distill`` with the recipe itself and, for every training from the base,
the sha256 of the base checkpoint it inherits from, which for ``distill`` is also its teacher's),
the space's training and data settings, the epochs it starts
from, ``--limit-train`` and the seed. The folder is ``<kind>-s<seed>-<hash>`` with ``cell.json``
holding those fields; it is an ordinary resumable run folder (``train-arch --resume``).

The store's root is ``--cells DIR``; by default ``<run folder>/cells`` when ``--out`` is given,
else ``outputs/<space>/cells``, which ``compare`` and ``fidelity`` runs of a space share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_json, file_digest
from prunesearch.paths import WEIGHTS, run_folder
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.spec import ArchSpec
from prunesearch.training.base_weights import base_epochs as base_epochs_of
from prunesearch.training.base_weights import load_space_base
from prunesearch.training.loop import RunOptions
from prunesearch.training.recipes import (
    KIND_RECIPES,
    FromBase,
    RecipeJob,
    member_recipe,
    train_by_recipe,
)
from prunesearch.training.runs import (
    ArchTraining,
    DataOptions,
    arch_training,
    train_arch,
    train_base,
)
from prunesearch.vocab import ARCH_KINDS, RECIPE_KINDS

__all__ = ["ArchCell", "CellStore", "Experiment", "Setting", "default_root", "start_experiment"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """Where and how an experiment's cells train: the space, the data and run options, the
    command's epochs override (None: the space's) and the progress reporter."""

    space: Space
    data: DataOptions = field(default_factory=DataOptions)
    opts: RunOptions = field(default_factory=RunOptions)
    epochs: int | None = None
    reporter: Reporter | None = None


@dataclass(frozen=True)
class ArchCell:
    """One architecture cell: ``spec`` trained as ``kind`` (``scratch-e``, ``scratch-b``, or
    from ``base``: ``finetune``, ``finetune-cosine``, ``distill``) with ``seed``; ``epochs``: the
    base epochs Scratch-E/B and the cheap recipes start from (None: the space's); ``name``: the
    spec's name in logs and metrics."""

    spec: ArchSpec
    kind: str
    seed: int
    epochs: int | None = None
    base: Path | None = None
    max_epoch_factor: float | None = None
    name: str = "spec"


def default_root(space: Space, out: str | Path | None) -> Path:
    return Path(out) / "cells" if out else run_folder(space.name, "cells")


class CellStore:
    """A folder of trained cells keyed by what defines them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _identity(
        self,
        space: Space,
        kind: str,
        widths: dict[str, int] | None,
        seed: int,
        epochs: int | None,
        data: DataOptions,
        **extra: Any,
    ) -> dict[str, Any]:
        d = space.to_dict()
        if d["train"]["channels_last"] == "auto":  # keyed as True was, the default before it
            d["train"]["channels_last"] = True  # (stores of earlier runs keep their cells)
        return {
            "kind": kind,
            "model": d["model"],
            "widths": widths,
            "train": d["train"],
            "data": d["data"],
            "epochs": epochs,
            "seed": seed,
            "limit_train": data.limit_train,
        } | extra

    def folder(self, identity: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return self.root / f"{identity['kind']}-s{identity['seed']}-{digest[:12]}"

    def _run(self, identity: dict[str, Any]) -> Path:
        path = self.folder(identity)
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "cell.json").is_file():
            atomic_write_json(path / "cell.json", identity)
        return path

    @staticmethod
    @contextlib.contextmanager
    def _owned(path: Path, wait: bool = True) -> Iterator[bool]:
        """Holds the cell's lock while it trains: a second process wanting the same cell (a
        compare and a fidelity run sharing a store) waits, then finds it trained. With
        ``wait=False`` it yields False at once instead (the cell is busy: do another first)."""
        with open(path / ".lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                logger.info("waiting for another process training %s", path)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def busy(self, path: Path) -> bool:
        """Whether another process is training the cell in ``path`` right now."""
        if not path.is_dir():
            return False
        with self._owned(path, wait=False) as free:
            return not free

    def base(
        self,
        space: Space,
        *,
        seed: int,
        epochs: int | None,
        data: DataOptions,
        opts: RunOptions,
        reporter: Reporter | None = None,
    ) -> tuple[dict[str, Any], Path]:
        """The space's base model trained with ``seed`` (reused when already trained):
        (metrics, weights path)."""
        identity = self._identity(space, "base", None, seed, epochs, data)
        path = self._run(identity)
        with self._owned(path):
            metrics = train_base(
                space,
                out=path,
                epochs=epochs,
                data=data,
                reporter=reporter,
                opts=dataclasses.replace(opts, seed=seed, resume=True),
            )
        return metrics | {"cell": str(path)}, path / WEIGHTS

    def _arch_identity(self, cell: ArchCell, space: Space, data: DataOptions) -> dict[str, Any]:
        extra: dict[str, Any] = {"max_epoch_factor": cell.max_epoch_factor}
        if cell.kind in ("finetune", *RECIPE_KINDS):
            extra["base_sha256"] = file_digest(cell.base) if cell.base else None
            extra["signal"] = (cell.spec.search or {}).get("signal")
        if cell.kind in RECIPE_KINDS:
            recipe = member_recipe(KIND_RECIPES[cell.kind])
            extra["recipe"] = dataclasses.asdict(recipe)
            if recipe.teacher:
                extra["teacher_sha256"] = extra["base_sha256"]
        widths, epochs = cell.spec.widths, cell.epochs
        return self._identity(space, cell.kind, widths, cell.seed, epochs, data, **extra)

    def arch_folder(self, cell: ArchCell, space: Space, data: DataOptions) -> Path:
        """Where :meth:`arch` keeps that cell (trained or not)."""
        return self.folder(self._arch_identity(cell, space, data))

    def arch(
        self,
        cell: ArchCell,
        space: Space,
        *,
        data: DataOptions,
        opts: RunOptions,
        reporter: Reporter | None = None,
    ) -> dict[str, Any]:
        """The cell's spec trained, or reused when already trained; its metrics with ``cell``
        (the folder)."""
        if cell.kind not in ARCH_KINDS:
            raise ValueError(f"unknown cell kind {cell.kind!r}")
        path = self._run(self._arch_identity(cell, space, data))
        if cell.kind in RECIPE_KINDS:
            with self._owned(path):
                metrics = self._by_recipe(cell, space, path, data, opts, reporter)
            return metrics | {"cell": str(path)}
        schedule, init = arch_training(cell.kind)
        with self._owned(path):
            how = ArchTraining(
                schedule,
                init,
                base=cell.base if init == "inherit" else None,
                max_epoch_factor=cell.max_epoch_factor,
                epochs=None if init == "inherit" else cell.epochs,
            )
            metrics = train_arch(
                cell.spec,
                space,
                how,
                out=path,
                spec_name=cell.name,
                data=data,
                opts=dataclasses.replace(opts, seed=cell.seed, resume=True),
                reporter=reporter,
            )
        return metrics | {"cell": str(path)}

    @staticmethod
    def _by_recipe(
        cell: ArchCell,
        space: Space,
        path: Path,
        data: DataOptions,
        opts: RunOptions,
        reporter: Reporter | None,
    ) -> dict[str, Any]:
        """A cheap recipe's cell: the spec trained from the base by the family's recipe."""
        if cell.base is None:
            raise PrunesearchError(f"a {cell.kind} cell needs the base it trains from")
        signal = (cell.spec.search or {}).get("signal") or space.search.signal
        epochs = cell.epochs or base_epochs_of(load_space_base(cell.base, space), None, space)[0]
        job = RecipeJob(
            cell.spec,
            member_recipe(KIND_RECIPES[cell.kind]),
            FromBase(Path(cell.base), epochs, signal),
            name=cell.name,
        )
        run = dataclasses.replace(opts, seed=cell.seed, resume=True)
        return train_by_recipe(job, space, path, data, run, reporter)


@dataclass(frozen=True)
class Experiment:
    """What a seeded experiment over cells (compare, fidelity) starts from."""

    run_dir: Path
    store: CellStore
    seeds: list[int]
    base_path: Path  # the base the search prunes (seed 0's)
    base_meta: dict[str, Any]
    base_epochs: int  # the epochs Scratch-E/B start from
    setting: Setting


def start_experiment(
    setting: Setting,
    name: str,
    *,
    out: str | Path | None,
    cells: str | None,
    n_seeds: int,
    base: str | None,
    base_epochs: int | None = None,
) -> Experiment:
    """The run folder (``out`` or ``outputs/<space>/<name>``), the cell store, the seeds
    ``opts.seed ..``, and the base: ``base`` (a weights file or a run folder), or the store's
    base cell of the first seed (trained when missing). The epochs Scratch-E/B start from:
    the setting's ``epochs``, else ``base_epochs`` (``--base-epochs``), else the base's own,
    else the space's."""
    space, epochs = setting.space, setting.epochs
    store = CellStore(cells or default_root(space, out))
    seeds = [setting.opts.seed + k for k in range(n_seeds)]
    if base:
        path = Path(base)
        path = path / WEIGHTS if path.is_dir() else path
        if not path.is_file():
            raise PrunesearchError(f"--base {base}: no such weights file")
    else:
        path = store.base(
            space,
            seed=seeds[0],
            epochs=epochs,
            data=setting.data,
            opts=setting.opts,
            reporter=setting.reporter,
        )[1]
    weights = load_space_base(path, space)
    n_epochs = epochs or base_epochs_of(weights, base_epochs, space)[0]
    run_dir = Path(out) if out else run_folder(space.name, name)
    return Experiment(run_dir, store, seeds, path, weights.meta, n_epochs, setting)
