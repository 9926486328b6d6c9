"""Where run folders go when ``--out`` is not given (``outputs/<space>/...`` in the current
directory, git-ignored in the project), and the names of the files in them. One place, so every
command agrees."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKPOINT", "CONFIG", "FAMILY", "METRICS", "OUTPUTS", "WEIGHTS", "run_folder"]

OUTPUTS = Path("outputs")

# the files of a run folder, named once
WEIGHTS = "model.safetensors"  # a trained model's weights, its spec in the metadata
CHECKPOINT = "checkpoint.pt"  # the last finished epoch of a training run (resume)
METRICS = "metrics.json"  # a finished training run's results
CONFIG = "config.json"  # the resolved space, options, versions and data source of a run
FAMILY = "family.json"  # a find run's index of its specs, one member per budget


def run_folder(space_name: str, *parts: str) -> Path:
    """``outputs/<space>/<parts...>``, e.g. ``run_folder("resnet20-fmnist", "base")``."""
    return OUTPUTS.joinpath(space_name, *parts)
