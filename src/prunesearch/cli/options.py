"""The CLI's option types, declared once: every command that takes ``--space`` takes this one.

typer reads each command's parameters from its signature, so a command still lists the options
it takes; their flags, types and help live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "AllowImportOpt",
    "AmpOpt",
    "BaseEpochsOpt",
    "BaseOpt",
    "BudgetBatchOpt",
    "BudgetOpt",
    "CellsOpt",
    "CompileOpt",
    "DataDirOpt",
    "DeviceOpt",
    "DownloadOpt",
    "EpochsOpt",
    "FamilyFormatOpt",
    "FamilyRecipeOpt",
    "JsonOpt",
    "LatencyBatchOpt",
    "LimitOpt",
    "MaxEpochFactorOpt",
    "NoExportOpt",
    "ObjectiveOpt",
    "OneBudgetOpt",
    "OutOpt",
    "RepeatsOpt",
    "ResumeOpt",
    "SeedOpt",
    "SignalOpt",
    "SpaceOpt",
    "SpecArg",
    "ThreadsOpt",
    "TrialsOpt",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line.")]
SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space", help="Search space name or YAML path (default: search_spaces/default.yaml)."
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Run folder (default: outputs/<space>/...).")
]
DataDirOpt = Annotated[
    str | None,
    typer.Option("--data-dir", help="Folder holding the dataset files (the only place looked in)."),
]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Download a missing dataset.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Override the space's epochs.")]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit-train", help="Use only the first N training examples."),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision (bf16/fp16) on CUDA.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.")]

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC.json", help="Architecture spec.")]
BudgetOpt = Annotated[
    str,
    typer.Option(
        "--budget",
        help="50%FLOPs, 30%params, 20MFLOPs, 2.2Mparams, 4ms (latency per image), "
        "50%latency; a family: 25%,50%,75%FLOPs.",
    ),
]
OneBudgetOpt = Annotated[str, typer.Option("--budget", help="One budget, e.g. 50%FLOPs.")]
BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="Trained base weights: a train-base folder, a safetensors file, or a "
        "torch.save(model.state_dict()) file (default: <out>/base with --out, else "
        "outputs/<space>/base/, trained if absent).",
    ),
]
BaseEpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--base-epochs",
        help="Epochs the --base was trained for, the start of Scratch-B's budget (default: "
        "a prunesearch base's own, else the space's train.epochs).",
    ),
]
TrialsOpt = Annotated[
    int | None,
    typer.Option("--trials", help="Trials per budget, counted across restarts and workers."),
]
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
MaxEpochFactorOpt = Annotated[
    float | None,
    typer.Option("--max-epoch-factor", help="Cap Scratch-B at this many times the base epochs."),
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
BudgetBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--latency-batch",
        help="Images per forward pass that a latency budget (4ms, 50%latency) "
        "is per image at (default: the space's search.latency_batch, 1).",
    ),
]
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
FamilyRecipeOpt = Annotated[
    str,
    typer.Option(
        "--recipe",
        help="How members train: finetune (the pruned base, cosine from train.family_lr for "
        "train.family_epochs of the base's epochs), distill (finetune with the base as "
        "teacher), chain (each member pruned from the next larger trained one), scratch-e or "
        "scratch-b (the references).",
    ),
]
FamilyFormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="Export format of the members: pt2 (torch.export) or onnx (needs "
        "prunesearch[export]).",
    ),
]
NoExportOpt = Annotated[
    bool, typer.Option("--no-export", help="Train only: no export, card or latency.")
]
