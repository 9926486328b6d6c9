"""Command-line interface: each command parses, calls one library function, renders.

Library errors (:class:`PrunesearchError`) become one ``error: ...`` line on stderr and exit
code 2; usage errors too. Anything else is a bug: exit code 1 with a traceback that shows no
local variables.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from prunesearch.compat import NoArgsIsHelpError, UsageError
from prunesearch.errors import PrunesearchError, keep_interrupts
from prunesearch.paths import run_folder

app = typer.Typer(
    name="prunesearch",
    help="Channel pruning as architecture search: find the CNN that fits a FLOP budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line.")]
SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space", help="Search space name or YAML path (default: search_spaces/default.yaml)."
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Run folder (default: outputs/<space>/...)."),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option("--data-dir", help="Folder holding the dataset files (the only place looked in)."),
]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Download a missing dataset.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
EpochsOpt = Annotated[
    int | None,
    typer.Option("--epochs", help="Override the space's epochs."),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit-train", help="Use only the first N training examples."),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision (bf16/fp16) on CUDA.")]

SignalOpt = Annotated[
    str | None,
    typer.Option(
        "--signal", help="slimming (BN |gamma|) or l1 (filter norm) (default: the space's)."
    ),
]
ObjectiveOpt = Annotated[
    str | None,
    typer.Option(
        "--objective",
        help="What scores a candidate: inherit (pruned base, BN recalibrated) or "
        "scratch (short from-scratch training) (default: the space's).",
    ),
]
CellsOpt = Annotated[
    str | None,
    typer.Option(
        "--cells",
        help="Store of trained cells shared by compare and fidelity runs (default: "
        "<out>/cells with --out, else outputs/<space>/cells).",
    ),
]
AllowImportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-import",
        metavar="PKG",
        help="Import the model code a spec names "
        "('PKG.module:callable') from package PKG (repeatable; with no PKG, the package the spec "
        "names; never the standard library).",
    ),
]


def _user_errors(fn):
    """Turns a PrunesearchError into one ``error:`` line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _check_out(kwargs.get("out"))
            return fn(*args, **kwargs)
        except PrunesearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the file system refused: a full disk, a read-only folder...
            typer.echo(f"error: {_os_error(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _check_out(out: Any) -> None:
    """``--out`` must be a folder or not exist yet: checked before any work."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise PrunesearchError(f"--out {out}: exists and is not a folder")


def _os_error(exc: OSError) -> str:
    """A file-system error in words: what was refused, where, and what is safe."""
    where = f" {exc.filename}" if exc.filename else ""
    text = f"cannot write or read{where}: {exc.strerror or exc}"
    if exc.errno == errno.ENOSPC:
        text += (
            " (files are written whole or not at all: a run folder holds its last "
            "complete checkpoint; free space and rerun with --resume)"
        )
    return text


def _emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging() -> None:
    logger = logging.getLogger("prunesearch")
    if logger.handlers:
        return
    if int(os.environ.get("RANK", "0")) != 0:
        logger.setLevel(logging.WARNING)
    else:
        logger.setLevel(logging.INFO)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, show_time=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


def _quiet_optuna() -> None:
    """Optuna's INFO lines off for the whole command: our progress reports the trials, and a
    Ctrl-C is reported once, by :func:`_interruptible`, not as Optuna's "trial failed"
    traceback. Here, not at import: importing prunesearch leaves Optuna's logging alone."""
    import optuna

    from prunesearch.find.studies import no_interrupt_tracebacks

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    no_interrupt_tracebacks()


@contextlib.contextmanager
def _interruptible(what: Callable[[], str]):
    """A Ctrl-C becomes one line saying what was kept and how to go on (``what()``, asked
    then), and exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"error: interrupted; {what()}", err=True)
        raise typer.Exit(130) from None


def _resume_hint(run_dir: Path) -> str:
    """What a training run interrupted at ``run_dir`` keeps."""
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return (
            f"{run_dir} holds the last finished epoch: run the same command with --resume "
            "to go on from it"
        )
    return f"no epoch had finished, nothing to resume in {run_dir}"


def _run_summary(metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    keys = (
        "kind",
        "space",
        "model",
        "epochs",
        "flops",
        "test_accuracy",
        "val_accuracy",
        "train_seconds",
        "images_per_s",
        "world_size",
        "device",
    )
    return {"run_dir": str(run_dir)} | {k: metrics.get(k) for k in keys}


def _print_run(metrics: dict[str, Any], run_dir: Path, json_out: bool) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    summary = _run_summary(metrics, run_dir)
    val = summary["val_accuracy"]
    console.print(
        f"[bold]{summary['kind']}[/] {summary['model']} on {summary['space']}: "
        f"test accuracy {summary['test_accuracy']:.4f}"
        + (f", val {val:.4f}" if val is not None else "")
        + f" after {summary['epochs']} epochs ({summary['train_seconds']:.0f}s "
        f"training, {summary['images_per_s']} img/s) -> {run_dir}"
    )
    if json_out:
        _emit_json(summary)


@app.command("train-base")
@_user_errors
def train_base_cmd(
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
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the space's base model; writes outputs/<space>/base/."""
    from prunesearch.progress import make_reporter
    from prunesearch.space import load_space
    from prunesearch.training.loop import RunOptions
    from prunesearch.training.runs import DataOptions, train_base

    _setup_logging()
    sp = load_space(space)
    run_dir = out or run_folder(sp.name, "base")
    with _interruptible(lambda: _resume_hint(run_dir)):
        metrics = train_base(
            sp,
            out=run_dir,
            epochs=epochs,
            sparsity=sparsity,
            data=DataOptions(data_dir, limit_train, download),
            opts=RunOptions(seed, device, amp, compile_, resume),
            reporter=make_reporter(_rank()),
        )
    _print_run(metrics, run_dir, json_out)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@app.command("train-arch")
@_user_errors
def train_arch_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="Architecture spec.")],
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
    max_epoch_factor: Annotated[
        float | None,
        typer.Option(
            "--max-epoch-factor", help="Cap Scratch-B at this many times the base epochs."
        ),
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
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a spec from scratch (Scratch-E/B) or fine-tune inherited weights."""
    from prunesearch.progress import make_reporter
    from prunesearch.space import load_space
    from prunesearch.spec import ArchSpec
    from prunesearch.training.loop import RunOptions
    from prunesearch.training.runs import DataOptions, train_arch

    _setup_logging()
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    search_info = spec.search or {}
    sp = load_space(
        space
        or (
            search_info.get("space_path")
            if search_info.get("space_path") and Path(search_info["space_path"]).is_file()
            else search_info.get("space")
        )
    )
    kind = "finetune" if init == "inherit" else schedule
    run_dir = out or run_folder(sp.name, "arch", spec_path.stem, f"{kind}-s{seed}")
    with _interruptible(lambda: _resume_hint(run_dir)):
        metrics = train_arch(
            spec,
            sp,
            schedule=schedule,
            init=init,
            base=base,
            max_epoch_factor=max_epoch_factor,
            out=run_dir,
            epochs=epochs,
            spec_name=spec_path.stem,
            data=DataOptions(data_dir, limit_train, download),
            opts=RunOptions(seed, device, amp, compile_, resume),
            reporter=make_reporter(_rank()),
        )
    _print_run(metrics, run_dir, json_out)


BudgetBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--latency-batch",
        help="Images per forward pass that a latency budget (4ms, 50%latency) "
        "is per image at (default: the space's search.latency_batch, 1).",
    ),
]


def _with_latency_batch(sp, latency_batch: int | None):
    """The space with ``--latency-batch`` applied (validated like the space's own key)."""
    if latency_batch is None:
        return sp
    if latency_batch < 1:
        raise PrunesearchError(f"--latency-batch must be >= 1, got {latency_batch}")
    return sp.replace("search", latency_batch=latency_batch)


@app.command()
@_user_errors
def find(
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            help="50%FLOPs, 30%params, 20MFLOPs, 2.2Mparams, 4ms (latency per image), "
            "50%latency; a family: 25%,50%,75%FLOPs.",
        ),
    ],
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Trained base weights (default: outputs/<space>/base/, trained if absent).",
        ),
    ] = None,
    signal: SignalOpt = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", help="Trials per budget, counted across restarts and workers."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="sqlite:///F, postgresql://..., mysql://..., journal:FILE "
            "(default: SQLite in the run folder).",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name prefix (one study per budget)."),
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

    _setup_logging()
    sp = _with_latency_batch(load_space(space), latency_batch)
    parse_budgets(budget)  # a malformed budget is refused before torch and optuna load
    _quiet_optuna()
    from prunesearch.find.find import FindOptions
    from prunesearch.find.find import find as run_find
    from prunesearch.progress import make_reporter
    from prunesearch.training.loop import RunOptions
    from prunesearch.training.runs import DataOptions

    with _interruptible(
        lambda: "the finished trials are kept in the study: run the same command to go on"
    ):
        result = run_find(
            sp,
            FindOptions(
                budget, base, signal, trials, storage, study, jobs, finetune_steps, objective
            ),
            out=out,
            epochs=epochs,
            data=DataOptions(data_dir, limit_train, download),
            opts=RunOptions(seed, device),
            reporter=make_reporter(_rank()),
        )
    table = Table(
        title=f"find on {sp.name}: signal {result['signal']}, objective "
        f"{result['objective']}, {result['trials']} trials per budget"
    )
    timed = any("latency_ms" in m for m in result["members"])
    for col in ("budget", "architecture", "FLOPs", "params", "score (val)") + (
        ("ms/image (measured)",) if timed else ()
    ):
        table.add_column(col, justify="left" if col in ("budget", "architecture") else "right")

    def ms(row: dict) -> tuple[str, ...]:
        return (f"{row['latency_ms']:.3f}" if "latency_ms" in row else "",) if timed else ()

    for m in result["members"]:
        table.add_row(
            m["budget"],
            f"searched ({m['trial']})",
            _human(m["flops"]),
            _human(m["params"]),
            f"{m['score']:.4f}",
            *ms(m),
        )
        for name, b in m["baselines"].items():
            table.add_row(
                "",
                f"baseline {name}",
                _human(b["flops"]),
                _human(b["params"]),
                f"{b['score']:.4f}",
                *ms(b),
            )
    console.print(table)
    if result["exported"]:
        for m in result["members"]:
            console.print(f"spec: {m['spec']}")
    else:
        console.print(
            "specs: written by another worker of this study, or by an earlier run "
            f"into {result['run_dir']}"
        )
    if json_out:
        _emit_json(result)


ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", help="torch threads for the latency measurement (default: torch's)."),
]
RepeatsOpt = Annotated[
    int,
    typer.Option(
        "--repeats", help="Timed repeats per latency measurement (after 10 warm-up calls)."
    ),
]
LatencyBatchOpt = Annotated[
    int,
    typer.Option(
        "--latency-batch", help="The throughput batch latency is also measured at (beside 1)."
    ),
]


@app.command()
@_user_errors
def show(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="Architecture spec.")],
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

    _setup_logging()  # an import the spec asks for is said before it runs
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    summary = spec.summary()
    table = Table(title=f"{spec_path.name}: {summary['model']} {tuple(summary['input_shape'])}")
    for col in ("group", "base", "width", "keep"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in summary["groups"]:
        table.add_row(row["group"], str(row["base"]), str(row["width"]), f"{row['keep_ratio']:.0%}")
    console.print(table)
    console.print(
        f"FLOPs {_human(summary['flops'])} of {_human(summary['base_flops'])} "
        f"({summary['flops_ratio']:.1%}, fvcore: 1 multiply-add = 1)   "
        f"params {_human(summary['params'])} of {_human(summary['base_params'])}"
    )
    if latency:
        from prunesearch.latency.measure import spec_latency

        summary["latency"] = spec_latency(
            spec, batches=(1, latency_batch), device=device, n_threads=threads, repeats=repeats
        )
        _print_latency(summary["latency"])
    if json_out:
        _emit_json(summary)


def _print_latency(latency: dict[str, Any]) -> None:
    from prunesearch.latency.measure import latency_table

    table = Table(
        title=f"latency on {latency['device']}, {latency['threads']} thread(s): "
        "median ms per image (25th-75th percentile)"
    )
    for col in ("model", "memory format", *(f"batch {b}" for b in latency["batches"])):
        table.add_column(col, justify="left" if not col.startswith("batch") else "right")
    for row in latency_table(latency):
        table.add_row(*row)
    console.print(table)
    speed = ", ".join(
        f"{fmt} batch {b}: {x:.2f}x"
        for fmt, per in latency["speedup"].items()
        for b, x in per.items()
    )
    if speed:
        console.print(
            f"base / spec time: {speed} (FLOPs: {latency['base_flops'] / latency['flops']:.2f}x)"
        )
    console.print(
        f"{latency['repeats']} repeats after {latency['warmup']} warm-up calls, "
        f"torch {latency['torch']}"
    )


@app.command()
@_user_errors
def compare(
    budget: Annotated[str, typer.Option("--budget", help="One budget, e.g. 50%FLOPs.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per row.")] = 3,
    trials: Annotated[
        int | None,
        typer.Option("--trials", help="Search trials (default: the space's)."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Reuse this trained base (with metrics.json beside it) as seed 0's."
        ),
    ] = None,
    signal: SignalOpt = None,
    max_epoch_factor: Annotated[
        float | None,
        typer.Option(
            "--max-epoch-factor", help="Cap Scratch-B at this many times the base epochs."
        ),
    ] = None,
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
            "scratch-e, scratch-b (default: all).",
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

    _setup_logging()
    pairs = []
    for item in extra or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise PrunesearchError(f"--extra {item}: expected NAME=SPEC.json")
        pairs.append((name.strip(), path))
    sp = _with_latency_batch(load_space(space), latency_batch)
    parse_budgets(budget)  # a malformed budget is refused before torch and optuna load
    _quiet_optuna()
    from prunesearch.experiments.compare import TRAININGS, CompareOptions
    from prunesearch.experiments.compare import compare as run_compare

    trainings = tuple(t.strip() for t in rows.split(",")) if rows else TRAININGS
    from prunesearch.progress import make_reporter
    from prunesearch.training.loop import RunOptions
    from prunesearch.training.runs import DataOptions

    with _interruptible(
        lambda: "the finished cells and trials are kept: run the same command to go on"
    ):
        result = run_compare(
            sp,
            CompareOptions(
                budget,
                seeds,
                trials,
                base,
                signal,
                max_epoch_factor,
                tuple(pairs),
                objective,
                cells,
                trainings,
            ),
            out=out,
            epochs=epochs,
            data=DataOptions(data_dir, limit_train, download),
            opts=RunOptions(seed, device),
            reporter=make_reporter(_rank()),
        )
    table = Table(
        title=f"compare on {sp.name} at {result['budget']}: test accuracy over "
        f"seeds {result['seeds']}"
    )
    for col in ("row", "test acc (%)", "FLOPs", "params", "epochs", "compute", "score"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for r in result["rows"]:
        table.add_row(
            r["row"] + (f" (= {r['same_as']})" if r["same_as"] else ""),
            f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}",
            _human(r["flops"]),
            _human(r["params"]),
            str(r["epochs"]),
            f"{r['compute_vs_base']:.2f}x",
            "" if r["score"] is None else f"{r['score']:.4f}",
        )
    console.print(table)
    console.print(f"-> {result['run_dir']}/compare.json, compare.md")
    if json_out:
        _emit_json(result)


@app.command()
@_user_errors
def fidelity(
    budget: Annotated[str, typer.Option("--budget", help="One budget, e.g. 50%FLOPs.")],
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

    _setup_logging()
    sp = load_space(space)
    _quiet_optuna()
    from prunesearch.experiments.fidelity import (
        FidelityOptions,
        check_options,
        ci_text,
        headroom_text,
    )
    from prunesearch.experiments.fidelity import fidelity as run_fidelity
    from prunesearch.progress import make_reporter
    from prunesearch.training.loop import RunOptions
    from prunesearch.training.runs import DataOptions
    from prunesearch.vocab import OBJECTIVES

    options = FidelityOptions(
        budget, archs, seeds, tuple(objective or OBJECTIVES), base, signal, schedule, cells=cells
    )
    check_options(options)
    with _interruptible(
        lambda: "the finished cells and scores are kept: run the same command to go on"
    ):
        result = run_fidelity(
            sp,
            options,
            out=out,
            epochs=epochs,
            data=DataOptions(data_dir, limit_train, download),
            opts=RunOptions(seed, device),
            reporter=make_reporter(_rank()),
        )
    k = result["top_k"]
    table = Table(
        title=f"fidelity on {sp.name} at {result['budget']}: "
        f"{len(result['archs'])} architectures x seeds {result['seeds']}"
    )
    for col in (
        "objective",
        "Kendall tau [95%]",
        "Spearman rho [95%]",
        "regret",
        f"top-{k} precision",
    ):
        table.add_column(col, justify="left" if col == "objective" else "right")
    for name, r in result["objectives"].items():
        table.add_row(
            name,
            ci_text(r["kendall_tau"]),
            ci_text(r["spearman_rho"]),
            f"{100 * r['regret']:.2f} pts",
            f"{r[f'top{k}_precision']:.2f}",
        )
    if result.get("noise_ceiling"):
        c = result["noise_ceiling"]
        table.add_row(
            "noise ceiling", ci_text(c["kendall_tau"]), ci_text(c["spearman_rho"]), "", ""
        )
    console.print(table)
    if result.get("headroom"):
        console.print(headroom_text(result["headroom"]))
    console.print(f"-> {result['run_dir']}/fidelity.json, fidelity.md")
    if json_out:
        _emit_json(result)


@app.command()
@_user_errors
def report(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A find, compare or training run folder.")
    ],
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Figures (PNG) and a markdown summary of a search, compare or training run."""
    from prunesearch.experiments.report import render_report

    result = render_report(run_dir, out)
    console.print(f"{result['kind']} report: {result['markdown']}")
    for f in result["figures"]:
        console.print(f"  {f}")
    if json_out:
        _emit_json(result)


@app.command()
@_user_errors
def transfer(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="A found spec.")],
    to: Annotated[str, typer.Option("--to", help="Target model (zoo name).")],
    model_args: Annotated[
        str | None,
        typer.Option("--model-args", help="Target model arguments as JSON (default: the spec's)."),
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option("--input-shape", help="C,H,W (default: the spec's)."),
    ] = None,
    out: OutOpt = None,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply a spec's per-stage keep ratios to another model (the paper's guided pruning)."""
    from prunesearch.experiments.transfer import transfer as run_transfer
    from prunesearch.spec import ArchSpec

    args = None
    if model_args is not None:
        try:
            args = json.loads(model_args)
        except json.JSONDecodeError as exc:
            raise PrunesearchError(f"--model-args: not JSON ({exc.msg})") from None
        if not isinstance(args, dict):
            raise PrunesearchError("--model-args: must be a JSON object")
    shape = None
    if input_shape is not None:
        try:
            shape = [int(v) for v in input_shape.split(",")]
        except ValueError:
            shape = []
        if len(shape) != 3 or min(shape) < 1:
            raise PrunesearchError(
                f"--input-shape {input_shape!r}: expected C,H,W (three positive integers)"
            )
    _setup_logging()  # an import the spec asks for is said before it runs
    spec = ArchSpec.load(spec_path, allow_import=allow_import or False)
    new = run_transfer(spec, to, model_args=args, input_shape=shape, allow_import=spec.allow_import)
    path = Path(out) if out else spec_path.with_name(f"{spec_path.stem}-to-{to}.json")
    new.save(path)
    ratios = new.search["stage_ratios"]
    console.print(
        f"{to}: stage keep ratios {ratios} -> FLOPs {_human(new.flops)} of "
        f"{_human(new.base_flops)} ({new.flops / new.base_flops:.1%}), params "
        f"{_human(new.params)} -> {path}"
    )
    if json_out:
        _emit_json(
            {
                "spec": str(path),
                "model": to,
                "flops": new.flops,
                "base_flops": new.base_flops,
                "params": new.params,
                "stage_ratios": ratios,
            }
        )


@app.command("export")
@_user_errors
def export_cmd(
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
            metavar="FILE",
            help="The file to write, or a folder for model.<ext> "
            "(default: RUN_DIR/export-<format>/model.<ext>); the model card goes beside it.",
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
    threads: ThreadsOpt = None,
    repeats: RepeatsOpt = 30,
    allow_import: AllowImportOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a trained model (ONNX or torch.export), verify it against PyTorch on validation
    images, and write its model card (MODEL.md, model.json) beside it."""
    from prunesearch.vocab import EXPORT_FORMATS, require

    require("format", format_, EXPORT_FORMATS)  # refused before torch loads
    from prunesearch.deploy.export import ExportOptions, export_run

    _setup_logging()
    card = export_run(
        run_dir,
        ExportOptions(
            format_,
            out_file,
            batch,
            data_dir,
            verify_images,
            device,
            threads,
            repeats,
            latency_batch,
            allow_import or False,
        ),
    )
    v, e, flops = card["verification"], card["export"], card["architecture"]["flops"]
    console.print(
        f"{e['format']} export of {card['model']} ({_human(flops)} FLOPs, test "
        f"accuracy {card['accuracy']['test']:.4f}) -> {card['path']}"
    )
    console.print(
        f"verified with {v['runtime']} on {v['images_from']}: max |logit diff| "
        f"{v['max_abs_logit_diff']:.2e} (tolerance {v['tolerance']:.1e}), top-1 "
        f"agreement {v['top1_agreement']:.2%}"
    )
    _print_latency(card["latency"])
    console.print(f"model card: {card['card']}, {card['card_json']}")
    if json_out:
        _emit_json(card)


def _print_names(key: str, names: list[str], json_out: bool) -> None:
    for name in names:
        console.print(name)
    if json_out:
        _emit_json({key: names})


@app.command("models")
@_user_errors
def models_cmd(json_out: JsonOpt = False) -> None:
    """List the models of the zoo (and any registered ones)."""
    from prunesearch.models import list_models

    _print_names("models", list_models(), json_out)


@app.command("spaces")
@_user_errors
def spaces_cmd(json_out: JsonOpt = False) -> None:
    """List the search spaces --space NAME finds ($PRUNESEARCH_SPACES, bundled, ./search_spaces)."""
    from prunesearch.space import list_spaces

    _print_names("spaces", list_spaces(), json_out)


def _bare_allow_import(argv: list[str]) -> list[str]:
    """``--allow-import`` with no package after it (the flag of earlier versions) becomes
    ``--allow-import=``: the package that the spec's own reference names (never the standard
    library). What follows is a package when it is a dotted name and not a file's."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--allow-import":
            following = argv[i + 1] if i + 1 < len(argv) else ""
            if not all(p.isidentifier() for p in following.split(".")) or following.endswith(
                (".json", ".yaml", ".yml")
            ):
                arg = "--allow-import="
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one ``error:`` line with exit code 2."""
    command = typer.main.get_command(app)
    keep_interrupts()  # a Ctrl-C inside a finalizer is not printed and lost
    argv = _bare_allow_import(sys.argv[1:] if argv is None else list(argv))
    try:
        code = command.main(args=argv, prog_name="prunesearch", standalone_mode=False)
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):  # bare `prunesearch`: show the help
            typer.echo(command.get_help(exc.ctx) if exc.ctx else exc.format_message())
            sys.exit(0)
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except PrunesearchError as exc:  # raised outside a command (should not happen)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
