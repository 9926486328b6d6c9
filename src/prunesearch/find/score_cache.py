"""``scores.json``: the from-scratch scores a find run trained, kept in its run folder.

A from-scratch score depends on the widths, the seed, the objective's settings, the model, the
data and the training recipe, not on the base's weights nor on the budget: a family's budgets
share one scorer (an architecture two budgets both propose is trained once), and a later run in
the same folder (another budget added to the family, another signal, more trials) replays the
scores of the architectures it proposes again rather than training them again. The file is
used only while what it records the scores under (its ``fingerprint``) is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.find.objectives import ScratchScorer
from prunesearch.space import Space
from prunesearch.training.runs import DataOptions

__all__ = ["SCORES", "fingerprint", "load_scores", "save_scores"]

logger = logging.getLogger(__name__)

SCORES = "scores.json"


def fingerprint(
    space: Space, settings: dict[str, Any], data: DataOptions, device: torch.device
) -> dict[str, Any]:
    """What a from-scratch score is a score of, besides the widths and the seed."""
    d = space.to_dict()
    key = {
        "settings": settings,
        "model": d["model"],
        "data": d["data"],
        "train": d["train"],
        "data_options": dataclasses.asdict(data) | {"download": None},
        "device": device.type,
        "torch": torch.__version__,
    }
    return json.loads(json.dumps(key))  # as read back from the file (tuples as lists)


def load_scores(path: Path, scorer: Any, key: dict[str, Any]) -> int:
    """Gives ``scorer`` the scores ``path`` holds under ``key``; returns how many."""
    if not isinstance(scorer, ScratchScorer) or not path.is_file():
        return 0
    saved = read_json(path, "from-scratch scores")
    if saved.get("fingerprint") != key:
        logger.info("%s: scores of other settings, not reused", path)
        return 0
    records = saved.get("scores") or []
    scorer.remember(records)
    logger.info("%s: %d from-scratch scores of earlier runs reused", path, len(records))
    return len(records)


def save_scores(path: Path, scorer: Any, key: dict[str, Any]) -> None:
    """Writes what ``scorer`` trained (and reused) under ``key`` to ``path``, atomically."""
    if isinstance(scorer, ScratchScorer):
        atomic_write_json(path, {"fingerprint": key, "scores": scorer.memo()})
