"""``prunesearch compare``: the paper's experiment on one space and budget.

Is the architecture a search finds worth more than the weights pruning keeps? Each row is one
way of getting a network at the budget, trained with several seeds, scored on the test set:

==================  ============================================================================
base                the unpruned model (the paper's baseline row)
searched/fine-tune  the searched spec with the base's weights, pruned by the signal, fine-tuned
searched/scratch-e  the searched spec trained from scratch for the base's epochs
searched/scratch-b  ... for the base's compute (epochs x base FLOPs / spec FLOPs)
uniform/scratch-b   every group at the same keep ratio, at equal FLOPs (the paper's section-5
                    control: is the searched *architecture* better than a predefined one?)
slimming/scratch-b  network slimming's single global threshold on BN |gamma|, at equal FLOPs
l1/scratch-b        L1 filter pruning with a per-layer uniform ratio, at equal FLOPs
NAME/scratch-b      each spec given with ``extra=(NAME, path)`` (``--extra NAME=SPEC``): an
                    architecture from elsewhere (another tool, a paper, a hand design) trained
                    like the others; ``benchmarks/torch_pruning_spec.py`` writes one
==================  ============================================================================

Every cell (row x seed) is its own resumable run folder, so rerunning the command after a kill,
or with more seeds, reuses everything already trained. Cells whose architecture and schedule are
identical are trained once: L1 with a uniform per-layer ratio has the uniform architecture
(trained from scratch, which channels L1 kept does not matter), so that row reuses the uniform
cells and says so.
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

from .budget import parse_budgets
from .errors import PrunesearchError
from .fileio import atomic_write_json, atomic_write_text
from .find import FindOptions, find, input_shape
from .progress import Reporter
from .runs import DataOptions, load_splits, train_arch, train_base
from .space import Space
from .spec import ArchSpec
from .train import RunOptions, load_weights

__all__ = ["ROWS", "CompareOptions", "compare", "markdown_table"]

logger = logging.getLogger(__name__)

# (row name, architecture, how it is trained)
ROWS = (
    ("base", "base", "base"),
    ("searched / fine-tuned", "searched", "finetune"),
    ("searched / Scratch-E", "searched", "scratch-e"),
    ("searched / Scratch-B", "searched", "scratch-b"),
    ("uniform / Scratch-B", "uniform", "scratch-b"),
    ("slimming threshold / Scratch-B", "slimming", "scratch-b"),
    ("L1 per-layer / Scratch-B", "l1", "scratch-b"),
)


@dataclass(frozen=True)
class CompareOptions:
    budget: str
    seeds: int = 3
    trials: int | None = None
    base: str | None = None
    signal: str | None = None
    max_epoch_factor: float | None = None
    extra: tuple[tuple[str, str], ...] = ()  # (row name, spec path): more Scratch-B rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _arch_key(spec: ArchSpec) -> str:
    return hashlib.sha256(json.dumps(spec.widths, sort_keys=True).encode()).hexdigest()[:12]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _load_extra(space: Space, extra: tuple[tuple[str, str], ...]
                ) -> dict[str, tuple[str, ArchSpec]]:
    """The extra specs as ``{arch: (row name, spec)}`` (``arch`` names the run folder), each
    checked to prune the space's model, before anything is trained or written."""
    specs: dict[str, tuple[str, ArchSpec]] = {}
    taken = {arch for _, arch, _ in ROWS}
    for name, path in extra:
        slug = _slug(name)
        arch = f"extra-{slug}"
        if not slug or arch in taken:
            raise PrunesearchError(f"--extra {name}={path}: the row name must be non-empty "
                                   "and differ from the other rows'")
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
        raise PrunesearchError(f"the spec prunes {spec.model} {spec.model_args}, not the "
                               f"space's {space.model.name} {space.model.args}")
    if spec.input_shape != input_shape(space):
        raise PrunesearchError(f"the spec is for inputs {spec.input_shape}, the space's are "
                               f"{input_shape(space)}")
    spec.allow_import = True
    spec.check(spec.graph())
    return spec


def compare(space: Space, options: CompareOptions, *, out: str | Path | None = None,
            epochs: int | None = None, data: DataOptions = DataOptions(),  # noqa: B008
            opts: RunOptions = RunOptions(), reporter: Reporter | None = None  # noqa: B008
            ) -> dict[str, Any]:
    """Runs (or reuses) every cell and writes compare.json / compare.md; returns the summary.

    Seeds are ``opts.seed`` .. ``opts.seed + seeds - 1``. The base of the first seed is the one
    the search prunes; ``epochs`` overrides the space's epochs everywhere (base, Scratch-E/B).
    """
    budgets = parse_budgets(options.budget)
    if len(budgets) != 1:
        raise PrunesearchError(f"--budget {options.budget}: compare takes one budget, not a "
                               "family")
    if options.seeds < 1:
        raise PrunesearchError(f"--seeds must be >= 1, got {options.seeds}")
    if epochs is not None and epochs < 1:
        raise PrunesearchError(f"--epochs must be >= 1, got {epochs}")
    budget = budgets[0]
    extra = _load_extra(space, options.extra)
    run_dir = Path(out) if out else Path("outputs") / space.name / f"compare-{budget.slug}"
    seeds = [opts.seed + k for k in range(options.seeds)]
    resume = dataclasses.replace(opts, resume=True)

    # the base of the first seed: given, or trained in the run folder
    if options.base:
        base_path = Path(options.base)
        base_path = base_path / "model.safetensors" if base_path.is_dir() else base_path
        if not base_path.is_file():
            raise PrunesearchError(f"--base {options.base}: no such weights file")
    else:
        train_base(space, out=run_dir / "base" / f"s{seeds[0]}", epochs=epochs, data=data,
                   opts=resume, reporter=reporter)
        base_path = run_dir / "base" / f"s{seeds[0]}" / "model.safetensors"
    _, base_meta = load_weights(base_path)
    base_epochs = epochs or int((base_meta.get("recipe") or {}).get("epochs") or
                                space.train.epochs)
    # the search: its specs are the architectures compared
    family = find(space, FindOptions(options.budget, base=str(base_path), signal=options.signal,
                                     trials=options.trials), out=run_dir / "find", data=data,
                  opts=dataclasses.replace(opts, resume=False), reporter=reporter)
    member = family["members"][0]
    specs = {"searched": _load_spec(space, member["spec"])} | {
        name: _load_spec(space, path) for name, path in member["baseline_specs"].items()}
    rows_def = list(ROWS)
    for arch, (name, spec) in extra.items():
        if abs(spec.flops / specs["searched"].flops - 1) > 0.02:
            logger.warning("--extra %s: %.2fM FLOPs, the searched spec has %.2fM: not an "
                           "equal-FLOPs comparison", name, spec.flops / 1e6,
                           specs["searched"].flops / 1e6)
        specs[arch] = spec
        rows_def.append((f"{name} / Scratch-B", arch, "scratch-b"))
    n_train = len(load_splits(space, data).train)

    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    trained: dict[tuple[str, str, int], tuple[str, dict[str, Any]]] = {}
    plan = [(row, arch, how, seed) for row, arch, how in rows_def for seed in seeds
            if arch == "base" or arch in specs]
    for i, (row, arch, how, seed) in enumerate(plan, 1):
        logger.info("compare cell %d/%d: %s, seed %d", i, len(plan), row, seed)
        seeded = dataclasses.replace(resume, seed=seed)
        if arch == "base":
            if seed == seeds[0] and options.base:
                metrics = json.loads((base_path.parent / "metrics.json").read_text()) \
                    if (base_path.parent / "metrics.json").is_file() else None
                if metrics is None:
                    raise PrunesearchError(f"--base {base_path}: no metrics.json beside it "
                                           "(its test accuracy is a row of the table)")
            else:
                metrics = train_base(space, out=run_dir / "base" / f"s{seed}",
                                     epochs=base_epochs, data=data, opts=seeded,
                                     reporter=reporter)
            cells[(row, arch, seed)] = metrics
            continue
        spec = specs[arch]
        key = (_arch_key(spec), how, seed)
        if key in trained:  # the same architecture trained the same way: reuse the cell
            cells[(row, arch, seed)] = trained[key][1] | {"same_as": trained[key][0]}
            continue
        metrics = train_arch(
            spec, space, schedule="scratch-e" if how == "finetune" else how,
            init="inherit" if how == "finetune" else "scratch",
            base=base_path if how == "finetune" else None,
            max_epoch_factor=options.max_epoch_factor,
            out=run_dir / arch / f"{how}-s{seed}",
            epochs=None if how == "finetune" else base_epochs, spec_name=arch,
            data=data, opts=seeded, reporter=reporter)
        trained[key] = (row, metrics)
        cells[(row, arch, seed)] = metrics

    base_flops = specs["searched"].base_flops
    rows = []
    for row, arch, how in rows_def:
        runs = [cells[(row, arch, s)] for s in seeds if (row, arch, s) in cells]
        if not runs:
            continue
        accs = [r["test_accuracy"] for r in runs]
        mean, std = _mean_std(accs)
        flops = base_flops if arch == "base" else specs[arch].flops
        params = specs["searched"].graph().params() if arch == "base" else specs[arch].params
        run_epochs = runs[0]["epochs"]
        rows.append({
            "row": row, "architecture": arch, "training": how, "seeds": len(runs),
            "test_accuracy": accs, "mean": mean, "std": std, "flops": flops, "params": params,
            "epochs": run_epochs,
            # training compute: forward+backward ~ 3 forwards, in fvcore MACs
            "train_macs": 3 * flops * run_epochs * n_train,
            "compute_vs_base": round(flops * run_epochs / (base_flops * base_epochs), 3),
            "train_seconds": round(sum(r.get("train_seconds") or 0 for r in runs), 1),
            "proxy_accuracy": None if arch == "base" else
            (specs[arch].search or {}).get("proxy_accuracy"),
            "same_as": runs[0].get("same_as"),
        })
    result = {"space": space.name, "budget": budget.text, "seeds": seeds,
              "base_epochs": base_epochs, "n_train": n_train, "signal": family["signal"],
              "trials": family["trials"], "base": str(base_path), "rows": rows,
              "run_dir": str(run_dir)}
    atomic_write_json(run_dir / "compare.json", result)
    atomic_write_text(run_dir / "compare.md", markdown_table(result))
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The comparison as a markdown table (what BENCHMARKS.md and the README quote)."""
    lines = [f"{result['space']} at {result['budget']}, {len(result['seeds'])} seed(s) "
             f"{result['seeds']}, base {result['base_epochs']} epochs, signal "
             f"{result['signal']}, {result['trials']} search trials; test accuracy mean ± std.",
             "",
             "| row | test accuracy | FLOPs | params | epochs | compute vs base | proxy acc |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        proxy = "" if r["proxy_accuracy"] is None else f"{r['proxy_accuracy']:.4f}"
        note = f" (= {r['same_as']})" if r["same_as"] else ""
        lines.append(f"| {r['row']}{note} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                     f"{r['flops'] / 1e6:.2f}M | {r['params'] / 1e6:.3f}M | {r['epochs']} | "
                     f"{r['compute_vs_base']:.2f} | {proxy} |")
    return "\n".join(lines) + "\n"
