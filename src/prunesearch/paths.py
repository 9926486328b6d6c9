"""Where run folders go when ``--out`` is not given: ``outputs/<space>/...`` in the current
directory (git-ignored in the project). One place, so every command agrees."""

from __future__ import annotations

from pathlib import Path

__all__ = ["OUTPUTS", "run_folder"]

OUTPUTS = Path("outputs")


def run_folder(space_name: str, *parts: str) -> Path:
    """``outputs/<space>/<parts...>``, e.g. ``run_folder("resnet20-fmnist", "base")``."""
    return OUTPUTS.joinpath(space_name, *parts)
