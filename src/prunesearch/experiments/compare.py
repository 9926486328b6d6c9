"""``prunesearch compare``: the paper's experiment on one space and budget.

Is the architecture a search finds worth more than the weights pruning keeps? Each row is one
way of getting a network at the budget, trained with several seeds, scored on the test set:

==================  ============================================================================
base                the unpruned model (the paper's baseline row)
searched/fine-tune  the searched spec with the base's weights, pruned by the signal, fine-tuned
searched/scratch-e  the searched spec trained from scratch for the base's epochs
searched/scratch-b  ... for the base's compute (epochs x base FLOPs / spec FLOPs)
searched/finetune-  the family's cheap recipes (``--rows``, not by default): the searched spec
cosine, /distill    from the base pruned, SGD cosine from ``train.family_lr`` for
                    ``train.family_epochs`` of the base's epochs; ``distill`` with the base as
                    teacher (its forward pass counted in the row's compute)
uniform/scratch-b   every group at the same keep ratio, at equal FLOPs (the paper's section-5
                    control: is the searched *architecture* better than a predefined one?)
slimming/scratch-b  network slimming's single global threshold on BN |gamma|, at equal FLOPs
global/scratch-b    the signal divided by each group's mean, one global threshold (Torch-Pruning's
                    global pruning with mean normalisation), at equal FLOPs
l1/scratch-b        L1 filter pruning with a per-layer uniform ratio, at equal FLOPs
NAME/scratch-b      each spec given with ``extra=(NAME, path)`` (``--extra NAME=SPEC``): an
                    architecture from elsewhere (another tool, a paper, a hand design) trained
                    like the others; ``benchmarks/torch_pruning_spec.py`` writes one
==================  ============================================================================

Every cell (row x seed) is a resumable run folder in the cell store (``cells.py``), so
rerunning the command after a kill, or with more seeds, or a ``fidelity`` run that trains the
same architecture the same way, reuses everything already trained. Cells whose architecture and
schedule are identical are trained once: L1 with a uniform per-layer ratio has the uniform
architecture (trained from scratch, which channels L1 kept does not matter), so that row reuses
the uniform cells and says so.

Every row is trained with the same seeds, so rows are compared by paired differences: the
searched Scratch-B row minus each other Scratch-B row, seed by seed, mean with a 95% t interval
(``stats.paired_difference``). A difference whose interval contains zero is a tie.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunesearch.engine.budget import parse_budgets
from prunesearch.errors import PrunesearchError
from prunesearch.experiments.run_store import ArchCell, Experiment, Setting, start_experiment
from prunesearch.experiments.stats import paired_difference
from prunesearch.fileio import atomic_write_json, atomic_write_text, read_json
from prunesearch.find.candidates import input_shape
from prunesearch.find.find import FindOptions, find
from prunesearch.latency.budgets import resolve_threads, spec_ms
from prunesearch.paths import METRICS
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.spec import ArchSpec
from prunesearch.training.loop import RunOptions, resolve_device
from prunesearch.training.runs import DataOptions, load_splits, resolve_space
from prunesearch.vocab import RECIPE_KINDS, TRAIN_ARCH_KINDS, TRAINING_KINDS

__all__ = [
    "ROWS",
    "TRAININGS",
    "CompareOptions",
    "compare",
    "compare_markdown",
    "parse_extra",
    "parse_rows",
]

logger = logging.getLogger(__name__)

# (row name, architecture, how it is trained)
ROWS = (
    ("base", "base", "base"),
    ("searched / fine-tuned", "searched", "finetune"),
    ("searched / Scratch-E", "searched", "scratch-e"),
    ("searched / Scratch-B", "searched", "scratch-b"),
    ("searched / fine-tuned (cosine)", "searched", "finetune-cosine"),
    ("searched / distilled", "searched", "distill"),
    ("uniform / Scratch-B", "uniform", "scratch-b"),
    ("slimming threshold / Scratch-B", "slimming", "scratch-b"),
    ("global threshold / Scratch-B", "global", "scratch-b"),
    ("L1 per-layer / Scratch-B", "l1", "scratch-b"),
)


TRAININGS = TRAINING_KINDS  # the kinds of rows compare trains
DEFAULT_TRAININGS = ("base", *TRAIN_ARCH_KINDS)  # without --rows: the paper's rows


@dataclass(frozen=True)
class CompareOptions:
    budget: str
    seeds: int = 3
    trials: int | None = None
    base: str | None = None
    signal: str | None = None
    max_epoch_factor: float | None = None
    extra: tuple[tuple[str, str], ...] = ()  # (row name, spec path): more Scratch-B rows
    objective: str | None = None  # the search's objective [default: the space's]
    cells: str | None = None  # the cell store [default: cells.default_root]
    trainings: tuple[str, ...] = DEFAULT_TRAININGS  # which rows to train, by how they train
    base_epochs: int | None = None  # the epochs a base trained elsewhere was trained for


def parse_extra(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--extra NAME=SPEC.json`` (repeatable) as ``(name, path)`` pairs."""
    pairs = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise PrunesearchError(f"--extra {item}: expected NAME=SPEC.json")
        pairs.append((name.strip(), path))
    return tuple(pairs)


def parse_rows(text: str | None) -> tuple[str, ...]:
    """``--rows base,scratch-b,distill``: the kinds of rows to train (None: the paper's rows,
    :data:`DEFAULT_TRAININGS`)."""
    return tuple(t.strip() for t in text.split(",")) if text else DEFAULT_TRAININGS


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _arch_key(spec: ArchSpec) -> str:
    return hashlib.sha256(json.dumps(spec.widths, sort_keys=True).encode()).hexdigest()[:12]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _load_extra(
    space: Space, extra: tuple[tuple[str, str], ...]
) -> dict[str, tuple[str, ArchSpec]]:
    """The extra specs as ``{arch: (row name, spec)}`` (``arch`` names the run folder), each
    checked to prune the space's model, before anything is trained or written."""
    specs: dict[str, tuple[str, ArchSpec]] = {}
    taken = {arch for _, arch, _ in ROWS}
    for name, path in extra:
        slug = _slug(name)
        arch = f"extra-{slug}"
        if not slug or arch in taken:
            raise PrunesearchError(
                f"--extra {name}={path}: the row name must be non-empty "
                "and differ from the other rows'"
            )
        taken.add(arch)
        try:
            specs[arch] = (name, _load_spec(space, path))
        except PrunesearchError as exc:
            raise PrunesearchError(f"--extra {name}={path}: {exc}") from None
    return specs


def _load_spec(space: Space, path: str | Path) -> ArchSpec:
    """A spec of the space's model at its input shape. The space is the user's own file, so
    the model it names is imported as for ``find`` (``Space.create_model``); a spec of another
    model is refused."""
    spec = ArchSpec.load(path, check_model=False)
    if spec.model != space.model.name or spec.model_args != space.model.args:
        raise PrunesearchError(
            f"the spec prunes {spec.model} {spec.model_args}, not the "
            f"space's {space.model.name} {space.model.args}"
        )
    if spec.input_shape != input_shape(space):
        raise PrunesearchError(
            f"the spec is for inputs {spec.input_shape}, the space's are {input_shape(space)}"
        )
    spec.allow_import = True
    spec.check(spec.graph())
    return spec


def _check(options: CompareOptions, epochs: int | None) -> None:
    if options.seeds < 1:
        raise PrunesearchError(f"--seeds must be >= 1, got {options.seeds}")
    unknown = [t for t in options.trainings if t not in TRAININGS]
    if unknown or not options.trainings:
        raise PrunesearchError(
            f"--rows {','.join(options.trainings)}: choose from {', '.join(TRAININGS)}"
        )
    if "scratch-b" not in options.trainings:
        raise PrunesearchError(
            "--rows must include scratch-b (the rows the searched spec is compared with)"
        )
    if epochs is not None and epochs < 1:
        raise PrunesearchError(f"--epochs must be >= 1, got {epochs}")


def _given_base_metrics(base_path: Path) -> dict[str, Any]:
    metrics = base_path.parent / METRICS
    if not metrics.is_file():
        raise PrunesearchError(
            f"--base {base_path}: no metrics.json beside it (its test "
            "accuracy is a row of the table)"
        )
    return read_json(metrics, "metrics")


def _rows_and_specs(
    space: Space, member: dict[str, Any], extra: dict[str, tuple[str, ArchSpec]]
) -> tuple[list[tuple[str, str, str]], dict[str, ArchSpec]]:
    """The rows to train and the spec of every architecture they name."""
    specs = {"searched": _load_spec(space, member["spec"])} | {
        name: _load_spec(space, path) for name, path in member["baseline_specs"].items()
    }
    rows = [r for r in ROWS if r[1] == "base" or r[1] in specs]
    for arch, (name, spec) in extra.items():
        if abs(spec.flops / specs["searched"].flops - 1) > 0.02:
            logger.warning(
                "--extra %s: %.2fM FLOPs, the searched spec has %.2fM: not an "
                "equal-FLOPs comparison",
                name,
                spec.flops / 1e6,
                specs["searched"].flops / 1e6,
            )
        specs[arch] = spec
        rows.append((f"{name} / Scratch-B", arch, "scratch-b"))
    return rows, specs


def compare(
    space: Space,
    options: CompareOptions,
    *,
    out: str | Path | None = None,
    epochs: int | None = None,
    data: DataOptions = DataOptions(),  # noqa: B008
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Runs (or reuses) every cell and writes compare.json / compare.md; returns the summary.

    Seeds are ``opts.seed`` .. ``opts.seed + seeds - 1``. The base of the first seed is the one
    the search prunes; ``epochs`` overrides the space's epochs everywhere (base, Scratch-E/B).
    """
    space = resolve_space(space, data, reporter)  # the user's own data: its classes and size
    budgets = parse_budgets(options.budget)
    if len(budgets) != 1:
        raise PrunesearchError(f"--budget {options.budget}: compare takes one budget, not a family")
    _check(options, epochs)
    budget = budgets[0]
    extra = _load_extra(space, options.extra)
    exp = start_experiment(
        Setting(space, data, opts, epochs, reporter),
        f"compare-{budget.slug}",
        out=out,
        cells=options.cells,
        n_seeds=options.seeds,
        base=options.base,
        base_epochs=options.base_epochs,
    )
    run_dir, store, seeds = exp.run_dir, exp.store, exp.seeds
    base_path, base_epochs = exp.base_path, exp.base_epochs
    # the search: its specs are the architectures compared
    family = find(
        space,
        FindOptions(
            options.budget,
            base=str(base_path),
            signal=options.signal,
            trials=options.trials,
            objective=options.objective,
            base_epochs=exp.base_epochs,
        ),
        out=run_dir / "find",
        data=data,
        opts=dataclasses.replace(opts, resume=False),
        reporter=reporter,
    )
    rows_def, specs = _rows_and_specs(space, family["members"][0], extra)
    rows_def = [r for r in rows_def if r[2] in options.trainings]
    cells = _train_rows(exp, rows_def, specs, options)
    result = {
        "space": space.name,
        "budget": budget.text,
        "seeds": seeds,
        "base_epochs": base_epochs,
        "n_train": len(load_splits(space, data).train),
        "signal": family["signal"],
        "objective": family["objective"],
        "trials": family["trials"],
        "base": str(base_path),
        "cells": str(store.root),
        "run_dir": str(run_dir),
    }
    result["rows"] = _row_results(rows_def, specs, cells, seeds, result, base_epochs)
    if budget.kind == "latency":
        _time_rows(result["rows"], specs, space, opts.device)
    result["paired"] = paired_rows(result["rows"])
    atomic_write_json(run_dir / "compare.json", result)
    atomic_write_text(run_dir / "compare.md", compare_markdown(result))
    return result


def _time_rows(
    rows: list[dict[str, Any]], specs: dict[str, ArchSpec], space: Space, device: str
) -> None:
    """Every architecture's measured latency into its rows, timed alike with the space's
    settings (a latency budget's compare)."""
    timed = resolve_threads(space)
    device = resolve_device(device).type
    ms = {arch: spec_ms(spec, timed, device=device) for arch, spec in specs.items()}
    for r in rows:
        if r["architecture"] in ms:
            r["latency"] = ms[r["architecture"]]


def _train_rows(
    exp: Experiment, rows_def, specs: dict[str, ArchSpec], options: CompareOptions
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every (row, architecture, seed) cell's metrics; a cell another row already trained is
    marked ``same_as`` that row."""
    store, seeds, base_path, base_epochs = exp.store, exp.seeds, exp.base_path, exp.base_epochs
    s = exp.setting
    space, epochs, data, opts, reporter = s.space, s.epochs, s.data, s.opts, s.reporter
    # the other seeds' bases: trained like the first (a given base: for its epochs)
    base_cell_epochs = base_epochs if options.base else epochs
    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    owner: dict[str, str] = {}  # cell folder -> the first row that used it
    # seed by seed: a run cut short leaves complete, paired seeds (rerun with fewer --seeds)
    plan = [(row, arch, how, seed) for seed in seeds for row, arch, how in rows_def]
    for i, (row, arch, how, seed) in enumerate(plan, 1):
        logger.info("compare cell %d/%d: %s, seed %d", i, len(plan), row, seed)
        if arch == "base":
            if seed == seeds[0] and options.base:
                cells[(row, arch, seed)] = _given_base_metrics(base_path)
            else:
                cells[(row, arch, seed)] = store.base(
                    space,
                    seed=seed,
                    epochs=base_cell_epochs,
                    data=data,
                    opts=opts,
                    reporter=reporter,
                )[0]
            continue
        from_base = how in ("finetune", *RECIPE_KINDS)
        cell = ArchCell(
            specs[arch],
            how,
            seed,
            epochs=None if how == "finetune" else base_epochs,
            base=base_path if from_base else None,
            max_epoch_factor=options.max_epoch_factor,
            name=arch,
        )
        metrics = store.arch(cell, space, data=data, opts=opts, reporter=reporter)
        first = owner.setdefault(metrics["cell"], row)
        cells[(row, arch, seed)] = metrics | ({"same_as": first} if first != row else {})
    return cells


def _row_results(
    rows_def,
    specs: dict[str, ArchSpec],
    cells,
    seeds: list[int],
    result: dict[str, Any],
    base_epochs: int,
) -> list[dict[str, Any]]:
    base_flops = specs["searched"].base_flops
    base_params = specs["searched"].graph().params()
    rows = []
    for row, arch, how in rows_def:
        runs = [cells[(row, arch, s)] for s in seeds if (row, arch, s) in cells]
        if not runs:
            continue
        accs = [r["test_accuracy"] for r in runs]
        mean, std = _mean_std(accs)
        flops = base_flops if arch == "base" else specs[arch].flops
        params = base_params if arch == "base" else specs[arch].params
        run_epochs = runs[0]["epochs"]
        # distillation: the base's forward per image seen, a third of its training step
        taught = base_flops * run_epochs if how == "distill" else 0
        search = {} if arch == "base" else (specs[arch].search or {})
        rows.append(
            {
                "row": row,
                "architecture": arch,
                "training": how,
                "seeds": len(runs),
                "test_accuracy": accs,
                "mean": mean,
                "std": std,
                "flops": flops,
                "params": params,
                "epochs": run_epochs,
                # training compute: forward+backward ~ 3 forwards, in fvcore MACs
                "train_macs": (3 * flops * run_epochs + taught) * result["n_train"],
                "teacher_macs": taught * result["n_train"],
                "compute_vs_base": round(
                    (flops * run_epochs + taught / 3) / (base_flops * base_epochs), 3
                ),
                "train_seconds": round(sum(r.get("train_seconds") or 0 for r in runs), 1),
                "score": search.get("score") if arch != "base" else None,
                "same_as": runs[0].get("same_as"),
                "cells": [r.get("cell") for r in runs],
            }
        )
    return rows


def paired_rows(
    rows: list[dict[str, Any]], reference: str = "searched / Scratch-B"
) -> dict[str, Any]:
    """The reference row minus every other Scratch-B row, seed by seed (95% t intervals), and
    the headline: the reference minus the best other row by mean."""
    ref = next((r for r in rows if r["row"] == reference), None)
    if ref is None:
        return {}
    others = [
        r
        for r in rows
        if r["training"] == "scratch-b"
        and r["row"] != reference
        and r["seeds"] == ref["seeds"]
        and r["architecture"] != ref["architecture"]
    ]
    diffs = {
        r["row"]: paired_difference(ref["test_accuracy"], r["test_accuracy"]).to_dict()
        for r in others
    }
    out: dict[str, Any] = {"reference": reference, "minus": diffs}
    if others:
        best = max(others, key=lambda r: r["mean"])
        out["best_other"] = best["row"]
        out["vs_best_other"] = diffs[best["row"]]
    return out


def compare_markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table (what BENCHMARKS.md and the README quote)."""
    timed = any(r.get("latency") for r in result["rows"])
    lines = [
        f"{result['space']} at {result['budget']}, {len(result['seeds'])} seed(s) "
        f"{result['seeds']}, base {result['base_epochs']} epochs, signal "
        f"{result['signal']}, {result['trials']} search trials; test accuracy mean ± std.",
        "",
        "| row | test accuracy | FLOPs | params | epochs | compute vs base | search score |"
        + (" measured ms/image |" if timed else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if timed else ""),
    ]
    for r in result["rows"]:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        note = f" (= {r['same_as']})" if r["same_as"] else ""
        ms = (
            f" {r['latency']['ms']:.3f} ({r['latency']['memory_format']}) |"
            if r.get("latency")
            else (" |" if timed else "")
        )
        lines.append(
            f"| {r['row']}{note} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
            f"{r['flops'] / 1e6:.2f}M | {r['params'] / 1e6:.3f}M | {r['epochs']} | "
            f"{r['compute_vs_base']:.2f} | {score} |{ms}"
        )
    lines += [
        "",
        "Compute vs base: the row's training MACs (3 x forward MACs x images seen, plus the "
        "teacher's forward for distillation) over the base's.",
    ]
    paired = result.get("paired") or {}
    if paired.get("minus"):
        lines += [
            "",
            f"Paired differences, {paired['reference']} minus each row (same seeds), "
            "points, 95% t interval:",
            "",
            "| row | difference | 95% interval | verdict |",
            "| --- | ---: | ---: | --- |",
        ]
        for row, d in paired["minus"].items():
            verdict = (
                "tie"
                if d["low"] <= 0 <= d["high"]
                else "searched better"
                if d["low"] > 0
                else "searched worse"
            )
            lines.append(
                f"| {row} | {100 * d['value']:+.2f} | [{100 * d['low']:+.2f}, "
                f"{100 * d['high']:+.2f}] | {verdict} |"
            )
    return "\n".join(lines) + "\n"
