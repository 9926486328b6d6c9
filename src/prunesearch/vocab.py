"""The closed vocabularies of spaces, flags and specs, one place each (no heavy imports, so the
configuration layer and the CLI can check a value without loading torch)."""

from __future__ import annotations

from collections.abc import Sequence

from prunesearch.errors import PrunesearchError

__all__ = [
    "ARCH_INITS",
    "ARCH_KINDS",
    "BUDGET_KINDS",
    "EPOCH_BUDGETS",
    "EXPORT_FORMATS",
    "FAMILY_RECIPES",
    "GRANULARITIES",
    "LATENCY_FORMATS",
    "LR_SCHEDULES",
    "MEMORY_FORMATS",
    "OBJECTIVES",
    "RECIPE_KINDS",
    "SIGNALS",
    "TRAINING_KINDS",
    "TRAIN_ARCH_KINDS",
    "require",
]

SIGNALS = ("slimming", "l1")  # importance signals (importance.py)
GRANULARITIES = ("group", "stage", "profile")  # search parameterisations (granularity.py)
OBJECTIVES = ("inherit", "scratch")  # what scores a candidate (objectives.py)
LR_SCHEDULES = ("step", "cosine", "constant")  # learning-rate schedules (train.lr_factor)
# how many epochs a pruned architecture trains (Liu et al.): Scratch-E the base's epochs,
# Scratch-B the base's compute at the architecture's FLOPs (runs.scratch_b_epochs)
EPOCH_BUDGETS = ("scratch-e", "scratch-b")
ARCH_INITS = ("scratch", "inherit")  # train-arch from random init or the pruned base
# how train-arch trains an architecture: fine-tuned from the base or trained from scratch
# (runs.arch_kind / arch_training map them to --init / --schedule)
TRAIN_ARCH_KINDS = ("finetune", "scratch-e", "scratch-b")
# the family's cheap recipes as compare rows (training/recipes.py KIND_RECIPES: the family's
# finetune, a cosine schedule from train.family_lr, and distill)
RECIPE_KINDS = ("finetune-cosine", "distill")
# how a compare row or a stored cell is trained: the base, or an architecture trained from it
TRAINING_KINDS = ("base", *TRAIN_ARCH_KINDS, *RECIPE_KINDS)
ARCH_KINDS = TRAINING_KINDS[1:]
# how `prunesearch family` trains its members (training/recipes.py): from the pruned base
# (finetune, distill: with the base as teacher), from the next larger trained member (chain),
# or from scratch (the references)
FAMILY_RECIPES = ("finetune", "distill", "chain", "scratch-e", "scratch-b")
BUDGET_KINDS = ("flops", "params", "latency")  # what a budget bounds (engine/budget.py)
MEMORY_FORMATS = ("nchw", "channels-last")  # a model's memory format when it runs
EXPORT_FORMATS = ("onnx", "pt2")  # prunesearch export: ONNX, torch.export (export.py)
LATENCY_FORMATS = ("auto", *MEMORY_FORMATS)  # what a latency budget is timed in


def require(what: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``; else the one-line error every vocabulary shares."""
    if value not in allowed:
        raise PrunesearchError(f"unknown {what} {value!r}; choose {', '.join(allowed)}")
    return value
