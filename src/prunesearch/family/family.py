"""``prunesearch family``: a finished find run -> trained, exported, verified members with
model cards, a family report (``family.json``, ``family.md``, ``family.png``) and the bill.

1. :func:`~prunesearch.family.inputs.read_find_run` checks the find run, its specs and base
   (and the options) before anything is written.
2. :class:`~prunesearch.family.members.Trainer` trains each member in its own resumable run
   folder ``<out>/members/<slug>/`` (default out: ``<find run>/family-<recipe>-s<seed>``), then
   any ``--baselines`` controls (the find run's baseline specs at every budget, same recipe) in
   ``<out>/members/<slug>-<baseline>/``: not members, costed apart from the family's total.
3. Each member's cost (:mod:`~prunesearch.family.costs`) is reckoned from its run, and the
   member is exported and verified as ``prunesearch export`` does, its card with the cost.
4. The report: the table, the figure (with the base and any Scratch-B family of the same find
   run), the family's total against the base's training and against Scratch-B.

Rerunning the command resumes: finished members and exports are reused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.deploy.export import ExportOptions, export_run, require_extra
from prunesearch.errors import PrunesearchError
from prunesearch.family.costs import base_cost, family_total, images_seen, member_cost
from prunesearch.family.inputs import FindRun, Member, control_members, read_find_run
from prunesearch.family.members import Trainer, member_dir
from prunesearch.family.report import (
    FAMILY_RUN_FORMAT,
    draw_figure,
    figure_data,
    latency_ms,
    markdown,
    member_row,
    scratch_b_points,
)
from prunesearch.family.workers import train_in_workers, work_units
from prunesearch.fileio import atomic_write_json, atomic_write_text, read_json
from prunesearch.progress import Reporter
from prunesearch.training.loop import RunOptions
from prunesearch.training.recipes import MemberRecipe, member_epochs, member_recipe
from prunesearch.training.runs import DataOptions

if TYPE_CHECKING:
    from prunesearch.find.find import FindOptions

__all__ = ["FamilyOptions", "family_out", "search_family", "train_family"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyOptions:
    """What ``prunesearch family`` was asked for.

    Attributes:
        recipe: how members train (:data:`~prunesearch.training.recipes.RECIPES`).
        out: the family's folder (default: ``<find run>/family-<recipe>-s<seed>``).
        space: ``--space``, overriding the find run's space.
        format: the export format (``onnx``, ``pt2``), or None: no export.
        latency: measure each export's latency (1 thread, as ``export``).
        repeats: timed repeats of each latency measurement.
        baselines: the find run's baselines (``uniform``, ``global``...) whose specs at every
            budget train beside the members by the same recipe, as controls.
        jobs: local processes training members at once (:mod:`~prunesearch.family.workers`).
    """

    recipe: str = "finetune"
    out: str | Path | None = None
    space: str | None = None
    format: str | None = "pt2"
    latency: bool = True
    repeats: int = 30
    data: DataOptions = field(default_factory=DataOptions)
    baselines: tuple[str, ...] = ()
    jobs: int = 1


def family_out(find_run: str | Path, recipe: str, seed: int, out: str | Path | None) -> Path:
    """Where a family is written: ``out``, else ``<find run>/family-<recipe>-s<seed>``."""
    return Path(out) if out else Path(find_run) / f"family-{recipe}-s{seed}"


def train_family(
    find_run: str | Path,
    options: FamilyOptions = FamilyOptions(),
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Trains, exports and reports a family from a finished find run (and, with
    ``options.baselines``, those baselines' specs at every budget beside the members, as
    controls); returns the report (also written to ``family.json``), with ``out`` its folder.

    Raises:
        PrunesearchError: bad input (no family.json, a missing spec or base, an unknown
            recipe, format or baseline), before anything is written.
    """
    recipe = _checked_recipe(options)
    run = read_find_run(find_run, options.space, options.data)
    controls = control_members(run, options.baselines)
    out = family_out(find_run, recipe.name, opts.seed, options.out)
    if out.exists() and not out.is_dir():
        raise PrunesearchError(f"--out {out}: exists and is not a folder")
    trainer = Trainer(run, recipe, out, options.data, opts, reporter)
    groups = [run.members, *controls.values()]
    trainer.check([m for g in groups for m in g])
    if options.jobs > 1:
        train_in_workers(trainer, work_units(groups, recipe.init == "previous"), options.jobs)
    metrics = trainer.train_all()
    base = _base(run, metrics)
    rows, cards = _rows(run.members, metrics, out, options, base, recipe.teacher, run.base_flops)
    control_rows = []
    for members in controls.values():
        done = trainer.train_all(members)
        control_rows += _rows(members, done, out, options, base, recipe.teacher, run.base_flops)[0]
    base["latency_ms"] = next(
        (ms for ms in (latency_ms(c, "base") for c in cards) if ms is not None), None
    )
    report = _report(run, recipe, out, opts, rows, base)
    if control_rows:
        report["controls"] = control_rows
        report["controls_total"] = family_total([r["cost"] for r in control_rows], base["cost"])
    return _write(report, out)


def _checked_recipe(options: FamilyOptions) -> MemberRecipe:
    """The options' recipe, once the options that need no find run are checked (an unknown
    recipe, an export format whose package is missing, --repeats or --jobs below 1)."""
    recipe = member_recipe(options.recipe)
    if options.format is not None:
        require_extra(options.format)
    if options.repeats < 1:
        raise PrunesearchError(f"--repeats must be >= 1, got {options.repeats}")
    if options.jobs < 1:
        raise PrunesearchError(f"--jobs must be >= 1, got {options.jobs}")
    return recipe


def search_family(
    find_opts: FindOptions,
    options: FamilyOptions = FamilyOptions(),
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """``family --budget``: searches the budgets as ``find`` does (``options.out`` is the find
    run's folder; its base trained first when none is given; an interrupted search resumes),
    then trains the family from that run as :func:`train_family` does, inside its folder."""
    from prunesearch.find.find import find
    from prunesearch.space import load_space

    _checked_recipe(options)  # bad options refused before the search
    found = find(
        load_space(options.space), find_opts, out=options.out, data=options.data, opts=opts,
        reporter=reporter,
    )  # fmt: skip
    return train_family(found["run_dir"], replace(options, out=None), opts, reporter)


def _rows(
    members: list[Member],
    metrics: dict[str, dict[str, Any]],
    out: Path,
    options: FamilyOptions,
    base: dict[str, Any],
    taught: bool,
    base_flops: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """The trained members' rows (costed, exported) in the order given, and their cards."""
    rows, cards = [], []
    for member in members:
        m = metrics[member.slug]
        cost = member_cost(m, base_flops if taught else None, base["cost"])
        cards.append(_export(member_dir(out, member), options, cost))
        row = member_row(m, cost, cards[-1], member_dir(out, member))
        if member.control:
            row |= {"budget": member.budget, "control": member.control, "of": member.of}
        rows.append(row)
    return rows, cards


def _base(run: FindRun, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base's point of the report: its size, accuracy (its run's metrics.json, when it is
    a prunesearch base folder) and training cost."""
    base_metrics_path = run.base_path.parent / "metrics.json"
    base_metrics = (
        read_json(base_metrics_path, "base metrics") if base_metrics_path.is_file() else None
    )
    first = next(iter(metrics.values()))
    per_epoch = (images_seen(first) or 0) // max(int(first["epochs"]), 1)
    summary = run.members[0].spec.summary()
    return {
        "path": str(run.base_path),
        "flops": summary["base_flops"],
        "params": summary["base_params"],
        "epochs": run.base_epochs,
        "test_accuracy": (base_metrics or {}).get("test_accuracy"),
        "val_accuracy": (run.family.get("base_info") or {}).get("val_accuracy"),
        "latency_ms": None,
        "cost": base_cost(summary["base_flops"], run.base_epochs, base_metrics, per_epoch),
    }


def _export(run_dir: Path, options: FamilyOptions, cost: dict[str, Any]) -> dict[str, Any] | None:
    """The member exported, verified and its card written (reused when already done); None
    without a format (``--no-export``)."""
    if options.format is None:
        return None
    export = ExportOptions(
        options.format,
        data_dir=options.data.data_dir,
        repeats=options.repeats,
        latency=options.latency,
    )
    folder = run_dir / f"export-{options.format}"
    card_path, model_path = folder / "model.json", folder / f"model.{options.format}"
    if card_path.is_file() and model_path.is_file():
        card = read_json(card_path, "model card")
        return card | {"path": str(model_path), "card": str(folder / "MODEL.md")}
    logger.info("exporting %s (%s) and verifying it", run_dir.name, options.format)
    return export_run(run_dir, export, training_cost=cost)


def _report(
    run: FindRun,
    recipe: MemberRecipe,
    out: Path,
    opts: RunOptions,
    rows: list[dict[str, Any]],
    base: dict[str, Any],
) -> dict[str, Any]:
    t = run.space.train
    settings: dict[str, Any] = {"init": recipe.init, "schedule": recipe.schedule}
    if recipe.inherits and t.family_compute:
        settings |= {"lr": t.family_lr, "compute": t.family_compute}
        settings["epochs"] = {m["member"]: m["cost"]["epochs"] for m in rows}
    elif recipe.inherits:
        settings |= {
            "lr": t.family_lr,
            "epochs_fraction": t.family_epochs,
            "epochs": member_epochs(t.family_epochs, run.base_epochs),
        }
    if recipe.teacher:
        settings |= {"temperature": t.distill_temperature, "weight": t.distill_weight}
    return {
        "format": FAMILY_RUN_FORMAT,
        "find_run": str(run.run_dir),
        "space": run.space.name,
        "recipe": recipe.name,
        "recipe_settings": settings,
        "seed": opts.seed,
        "signal": run.signal,
        "base": base,
        "members": rows,
        "total": family_total([r["cost"] for r in rows], base["cost"]),
        "scratch_b": scratch_b_points([run.run_dir, out.parent], out),
        "figure": "family.png",
    }


def _write(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """family.png, family.md, then family.json (last: it says the family is complete)."""
    draw_figure(figure_data(report), out / "family.png")
    atomic_write_text(out / "family.md", markdown(report))
    atomic_write_json(out / "family.json", report)
    return report | {"out": str(out)}
