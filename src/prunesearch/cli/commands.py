"""The commands: each parses its flags, calls one library function and renders the result.

Library imports stay inside the commands, so ``prunesearch --help`` and a malformed budget are
answered before torch and Optuna load. typer reads the options from each signature (their types
are declared once, in :mod:`prunesearch.cli.options`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunesearch.cli import render
from prunesearch.cli.options import (
    AllowImportOpt,
    AmpOpt,
    BaseEpochsOpt,
    BaseOpt,
    BudgetBatchOpt,
    BudgetOpt,
    CellsOpt,
    CompileOpt,
    DataDirOpt,
    DeviceOpt,
    DownloadOpt,
    EpochsOpt,
    FamilyFormatOpt,
    FamilyRecipeOpt,
    JsonOpt,
    LatencyBatchOpt,
    LimitOpt,
    MaxEpochFactorOpt,
    NoExportOpt,
    ObjectiveOpt,
    OneBudgetOpt,
    OutOpt,
    RepeatsOpt,
    ResumeOpt,
    SeedOpt,
    SignalOpt,
    SpaceOpt,
    SpecArg,
    ThreadsOpt,
    TrialsOpt,
)
from prunesearch.cli.runtime import (
    interruptible,
    rank,
    resume_hint,
    setup_logging,
    silence_optuna,
    user_errors,
)
from prunesearch.errors import PrunesearchError

__all__ = ["COMMANDS"]


def _reporter():
    from prunesearch.progress import make_reporter

    return make_reporter(rank())


def _run_options(seed: int, device: str, amp=False, compile_=False, resume=False):
    from prunesearch.training.loop import RunOptions

    return RunOptions(seed, device, amp, compile_, resume)


def _data_options(data_dir: str | None, limit_train: int | None, download: bool):
    from prunesearch.training.runs import DataOptions

    return DataOptions(data_dir, limit_train, download)


@user_errors
def train_base(
    sparsity: Annotated[
        float | None,
        typer.Option("--sparsity", help="Network-slimming L1 on BN gamma (default: the space's)."),
    ] = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    limit_train: LimitOpt = None,
    resume: ResumeOpt = False,
    amp: AmpOpt = False,
    compile_: CompileOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the space's base model; writes outputs/<space>/base/."""
    from prunesearch.space import load_space
    from prunesearch.training.runs import base_run_dir
    from prunesearch.training.runs import train_base as run

    setup_logging()
    sp = load_space(space)
    run_dir = base_run_dir(sp, out)
    with interruptible(lambda: resume_hint(run_dir)):
        metrics = run(
            sp,
            out=run_dir,
            epochs=epochs,
            sparsity=sparsity,
            data=_data_options(data_dir, limit_train, download),
            opts=_run_options(seed, device, amp, compile_, resume),
            reporter=_reporter(),
        )
    if rank() == 0:
        render.print_run(metrics, run_dir, json_out)


@user_errors
def train_arch(
    spec_path: SpecArg,
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule", help="scratch-e: the base's epochs; scratch-b: the base's compute."
        ),
    ] = "scratch-e",
    init: Annotated[
        str,
        typer.Option("--init", help="scratch: fresh weights; inherit: fine-tune the pruned base."),
    ] = "scratch",
    base: Annotated[
        Path | None,
        typer.Option(
            "--base", help="Base weights for --init inherit (default: outputs/<space>/base/)."
        ),
    ] = None,
    base_epochs: BaseEpochsOpt = None,
    max_epoch_factor: MaxEpochFactorOpt = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    limit_train: LimitOpt = None,
    resume: ResumeOpt = False,
    amp: AmpOpt = False,
    compile_: CompileOpt = False,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a spec from scratch (Scratch-E/B) or fine-tune inherited weights."""
    from prunesearch.space import space_for_spec
    from prunesearch.spec import ArchSpec
    from prunesearch.training.runs import ArchTraining, arch_kind, arch_run_dir
    from prunesearch.training.runs import train_arch as run

    setup_logging()
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    spec.require_code()  # before the space (whose model may be the same code) is loaded
    sp = space_for_spec(spec.search, space)
    run_dir = arch_run_dir(sp, spec_path.stem, arch_kind(init, schedule), seed, out)
    with interruptible(lambda: resume_hint(run_dir)):
        metrics = run(
            spec,
            sp,
            ArchTraining(schedule, init, base, max_epoch_factor, epochs, base_epochs),
            out=run_dir,
            spec_name=spec_path.stem,
            data=_data_options(data_dir, limit_train, download),
            opts=_run_options(seed, device, amp, compile_, resume),
            reporter=_reporter(),
        )
    if rank() == 0:
        render.print_run(metrics, run_dir, json_out)


@user_errors
def find(
    budget: BudgetOpt,
    base: BaseOpt = None,
    base_epochs: BaseEpochsOpt = None,
    signal: SignalOpt = None,
    trials: TrialsOpt = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="sqlite:///F, postgresql://..., mysql://..., journal:FILE "
            "(default: SQLite in the run folder).",
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name prefix (one study per budget).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Local worker processes.")] = 1,
    finetune_steps: Annotated[
        int,
        typer.Option(
            "--finetune-steps",
            help="Score candidates after N fine-tuning steps, stopping poor trials early.",
        ),
    ] = 0,
    objective: ObjectiveOpt = None,
    latency_batch: BudgetBatchOpt = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    limit_train: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the architecture(s) that fit a budget; export one spec per budget."""
    from prunesearch.engine.budget import parse_budgets
    from prunesearch.space import load_space

    setup_logging()
    sp = load_space(space).with_latency_batch(latency_batch)
    parse_budgets(budget)  # a malformed budget is refused before torch and optuna load
    silence_optuna()
    from prunesearch.find.find import FindOptions
    from prunesearch.find.find import find as run

    options = FindOptions(
        budget, base, signal, trials, storage, study, jobs, finetune_steps, objective, base_epochs
    )
    kept = "the finished trials are kept in the study: run the same command to go on"
    with interruptible(lambda: kept):
        result = run(
            sp,
            options,
            out=out,
            epochs=epochs,
            data=_data_options(data_dir, limit_train, download),
            opts=_run_options(seed, device),
            reporter=_reporter(),
        )
    render.find_table(result, sp.name)
    if json_out:
        render.emit_json(result)


@user_errors
def show(
    spec_path: SpecArg,
    latency: Annotated[
        bool,
        typer.Option(
            "--latency",
            help="Also measure the spec's and the base's latency (ms per image at "
            "batch 1 and a throughput batch, both memory formats).",
        ),
    ] = False,
    latency_batch: LatencyBatchOpt = 64,
    threads: ThreadsOpt = None,
    repeats: RepeatsOpt = 30,
    device: DeviceOpt = "auto",
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Table of a spec's per-group widths against the base model, with FLOPs and params."""
    from prunesearch.spec import ArchSpec

    setup_logging()  # an import the spec asks for is said before it runs
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    summary = spec.summary()
    render.show_table(summary, spec_path.name)
    if latency:
        from prunesearch.latency.measure import Timing, spec_latency

        summary["latency"] = spec_latency(
            spec,
            batches=(1, latency_batch),
            device=device,
            n_threads=threads,
            timing=Timing(repeats=repeats),
        )
        render.print_latency(summary["latency"])
    if json_out:
        render.emit_json(summary)


@user_errors
def compare(
    budget: OneBudgetOpt,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per row.")] = 3,
    trials: Annotated[
        int | None, typer.Option("--trials", help="Search trials (default: the space's).")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Reuse this trained base (with metrics.json beside it) as seed 0's."
        ),
    ] = None,
    base_epochs: BaseEpochsOpt = None,
    signal: SignalOpt = None,
    max_epoch_factor: MaxEpochFactorOpt = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra",
            metavar="NAME=SPEC",
            help="Also train this spec (e.g. another tool's "
            "architecture) from scratch as row NAME; repeatable.",
        ),
    ] = None,
    objective: ObjectiveOpt = None,
    cells: CellsOpt = None,
    rows: Annotated[
        str | None,
        typer.Option(
            "--rows",
            help="Train only these kinds of rows, comma-separated: base, finetune, "
            "scratch-e, scratch-b (default: these four), and the family's cheap recipes "
            "finetune-cosine and distill.",
        ),
    ] = None,
    latency_batch: BudgetBatchOpt = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    limit_train: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The paper's experiment: searched spec fine-tuned / Scratch-E / Scratch-B vs uniform,
    slimming and L1 architectures at equal FLOPs, and the base, over several seeds."""
    from prunesearch.engine.budget import parse_budgets
    from prunesearch.space import load_space

    setup_logging()
    sp = load_space(space).with_latency_batch(latency_batch)
    parse_budgets(budget)  # a malformed budget is refused before torch and optuna load
    silence_optuna()
    from prunesearch.experiments.compare import CompareOptions, parse_extra, parse_rows
    from prunesearch.experiments.compare import compare as run

    options = CompareOptions(
        budget, seeds, trials, base, signal, max_epoch_factor, parse_extra(extra), objective,
        cells, parse_rows(rows), base_epochs,
    )  # fmt: skip
    kept = "the finished cells and trials are kept: run the same command to go on"
    with interruptible(lambda: kept):
        result = run(
            sp,
            options,
            out=out,
            epochs=epochs,
            data=_data_options(data_dir, limit_train, download),
            opts=_run_options(seed, device),
            reporter=_reporter(),
        )
    render.compare_table(result, sp.name)
    if json_out:
        render.emit_json(result)


@user_errors
def fidelity(
    budget: OneBudgetOpt,
    archs: Annotated[int, typer.Option("--archs", help="Architectures to rank (>= 3).")] = 30,
    seeds: Annotated[int, typer.Option("--seeds", help="From-scratch seeds per architecture.")] = 2,
    objective: Annotated[
        list[str] | None,
        typer.Option("--objective", help="Objective to measure; repeatable (default: all)."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Trained base weights (default: the cell store's, trained if absent)."
        ),
    ] = None,
    base_epochs: BaseEpochsOpt = None,
    signal: SignalOpt = None,
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule", help="How each architecture is trained: scratch-b or scratch-e."
        ),
    ] = "scratch-b",
    cells: CellsOpt = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = None,
    limit_train: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """How well each search objective ranks architectures by their from-scratch accuracy."""
    from prunesearch.space import load_space

    setup_logging()
    sp = load_space(space)
    silence_optuna()
    from prunesearch.experiments.fidelity import FidelityOptions, check_options
    from prunesearch.experiments.fidelity import fidelity as run
    from prunesearch.vocab import OBJECTIVES

    options = FidelityOptions(
        budget, archs, seeds, tuple(objective or OBJECTIVES), base, signal, schedule,
        cells=cells, base_epochs=base_epochs,
    )  # fmt: skip
    check_options(options)
    kept = "the finished cells and scores are kept: run the same command to go on"
    with interruptible(lambda: kept):
        result = run(
            sp,
            options,
            out=out,
            epochs=epochs,
            data=_data_options(data_dir, limit_train, download),
            opts=_run_options(seed, device),
            reporter=_reporter(),
        )
    render.fidelity_table(result, sp.name)
    if json_out:
        render.emit_json(result)


@user_errors
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A find, compare, fidelity, family or training run folder."
        ),
    ],
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Figures (PNG) and a markdown summary of a search, compare, fidelity, family or training
    run."""
    from prunesearch.experiments.report import render_report
    from prunesearch.family.report import render_family_report, trained_family

    trained = trained_family(run_dir) if run_dir.is_dir() else None
    result = (render_family_report if trained else render_report)(run_dir, out)
    render.report_lines(result)
    if json_out:
        render.emit_json(result)


@user_errors
def transfer(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="A found spec.")],
    to: Annotated[str, typer.Option("--to", help="Target model (zoo name).")],
    model_args: Annotated[
        str | None,
        typer.Option("--model-args", help="Target model arguments as JSON (default: the spec's)."),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="C,H,W (default: the spec's).")
    ] = None,
    out: OutOpt = None,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply a spec's per-stage keep ratios to another model (the paper's guided pruning)."""
    from prunesearch.experiments.transfer import parse_input_shape, parse_model_args
    from prunesearch.experiments.transfer import transfer as run
    from prunesearch.spec import ArchSpec

    args, shape = parse_model_args(model_args), parse_input_shape(input_shape)
    setup_logging()  # an import the spec asks for is said before it runs
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    new = run(spec, to, model_args=args, input_shape=shape, allow_import=spec.allow_import)
    path = Path(out) if out else spec_path.with_name(f"{spec_path.stem}-to-{to}.json")
    new.save(path)
    render.transfer_line(new, to, path)
    if json_out:
        render.emit_json(
            {
                "spec": str(path),
                "model": to,
                "flops": new.flops,
                "base_flops": new.base_flops,
                "params": new.params,
                "stage_ratios": new.search["stage_ratios"],
            }
        )


@user_errors
def export(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="The folder of a finished train-arch or train-base run."
        ),
    ],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx (torch's exporter, opset 18; needs prunesearch[export]) or pt2 "
            "(torch.export).",
        ),
    ],
    out_file: Annotated[
        str | None,
        typer.Option(
            "--out",
            metavar="FILE|DIR",
            help="The file to write (FILE.onnx, FILE.pt2), or a folder for model.<ext>: a "
            "path that exists as a folder, ends with '/' or has no suffix (created if it does "
            "not exist yet); default: RUN_DIR/export-<format>/model.<ext>. The model card "
            "goes beside it.",
        ),
    ] = None,
    batch: Annotated[
        str, typer.Option("--batch", help="The batch size the export takes: N, or dynamic.")
    ] = "dynamic",
    verify_images: Annotated[
        int, typer.Option("--verify-images", help="Validation images the export is verified on.")
    ] = 256,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    latency_batch: LatencyBatchOpt = 64,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch threads for the latency measurement (default: 1, which cannot "
            "oversubscribe a busy machine; recorded in the card).",
        ),
    ] = None,
    repeats: RepeatsOpt = 30,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
    latency: Annotated[
        bool,
        typer.Option("--latency/--no-latency", help="Measure the latency (the card says if not)."),
    ] = True,
) -> None:
    """Export a trained model (ONNX or torch.export), verify it against PyTorch on validation
    images, and write its model card (MODEL.md, model.json) beside it."""
    from prunesearch.vocab import EXPORT_FORMATS, require

    require("format", format_, EXPORT_FORMATS)  # refused before torch loads
    from prunesearch.deploy.export import ExportOptions, export_run

    setup_logging()
    options = ExportOptions(
        format_, out_file, batch, data_dir, verify_images, device, threads, repeats,
        latency_batch, allow_import or False, latency,
    )  # fmt: skip
    card = export_run(run_dir, options)
    render.export_lines(card)
    if json_out:
        render.emit_json(card)


@user_errors
def family(
    find_run: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FIND_RUN_DIR]",
            help="The folder of a finished find run (or give --budget to search one first).",
        ),
    ] = None,
    recipe: FamilyRecipeOpt = "finetune",
    format_: FamilyFormatOpt = "pt2",
    no_export: NoExportOpt = False,
    baselines: Annotated[
        str | None,
        typer.Option(
            "--baselines",
            help="Also train these baselines of the find run (comma-separated, e.g. "
            "uniform,global) at every budget by the same recipe, as controls beside each "
            "member (members/<slug>-<baseline>/; costed apart from the family).",
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Without FIND_RUN_DIR: search these budgets first, as find does (e.g. "
            "25%,50%,75%FLOPs; --out is then the find run's folder, the family inside it).",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Local processes training members at once, each with its share of the cores "
            "(a chain trains whole in one).",
        ),
    ] = 1,
    base: BaseOpt = None,
    trials: TrialsOpt = None,
    objective: ObjectiveOpt = None,
    space: SpaceOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    limit_train: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train, export and verify every member of a find run's family from its base (or search
    the --budget family first); write the family report (family.md, family.png, family.json)
    with each member's training cost."""
    from prunesearch.vocab import EXPORT_FORMATS, FAMILY_RECIPES, require

    require("recipe", recipe, FAMILY_RECIPES)  # refused before torch loads
    require("format", format_, EXPORT_FORMATS)
    search = _family_search(find_run, budget, base, trials, objective)
    from prunesearch.family.family import FamilyOptions, search_family, train_family
    from prunesearch.family.inputs import parse_baselines

    setup_logging()
    options = FamilyOptions(
        recipe,
        out,
        space,
        None if no_export else format_,
        data=_data_options(data_dir, limit_train, download),
        baselines=parse_baselines(baselines),
        jobs=jobs,
    )
    kept = "finished members are kept: run the same command to go on from the interrupted one"
    with interruptible(lambda: kept):
        if search is None:
            result = train_family(find_run, options, _run_options(seed, device), _reporter())
        else:
            silence_optuna()
            result = search_family(search, options, _run_options(seed, device), _reporter())
    render.family_table(result)
    if json_out:
        render.emit_json(result)


def _family_search(find_run, budget, base, trials, objective):
    """family's find options with --budget (None with FIND_RUN_DIR); bad combinations refused."""
    if find_run is not None:
        if budget is not None:
            raise PrunesearchError("give a finished find run folder or --budget, not both")
        given = [f for f, v in (("--base", base), ("--trials", trials), ("--objective", objective))
                 if v is not None]  # fmt: skip
        if given:
            raise PrunesearchError(f"{given[0]} is for a family searched first (with --budget)")
        return None
    if budget is None:
        raise PrunesearchError(
            "family needs the folder of a finished find run, or --budget (and --base) to search "
            "one first"
        )
    from prunesearch.engine.budget import parse_budgets

    parse_budgets(budget)  # a malformed budget is refused before torch and optuna load
    from prunesearch.find.find import FindOptions

    return FindOptions(budget, base, trials=trials, objective=objective)


@user_errors
def models(json_out: JsonOpt = False) -> None:
    """List the models of the zoo (and any registered ones)."""
    from prunesearch.models import list_models

    render.print_names("models", list_models(), json_out)


@user_errors
def spaces(json_out: JsonOpt = False) -> None:
    """List the search spaces --space NAME finds ($PRUNESEARCH_SPACES, bundled, ./search_spaces)."""
    from prunesearch.space import list_spaces

    render.print_names("spaces", list_spaces(), json_out)


# command name -> function, in the order of `prunesearch --help`
COMMANDS = {
    "train-base": train_base,
    "train-arch": train_arch,
    "find": find,
    "show": show,
    "compare": compare,
    "fidelity": fidelity,
    "report": report,
    "transfer": transfer,
    "export": export,
    "family": family,
    "models": models,
    "spaces": spaces,
}
