"""Bodies of the worker processes of test_studies.py, in a module of their own: a spawned
worker imports only this (optuna and prunesearch.find.studies, no torch), not the test module with
everything it imports."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from prunesearch.find.studies import claim_export, mark_exported, storage_for


def claim(url: str, run_dir: str, queue, mark: bool = True) -> None:
    """Claims the export; the winner marks it (``mark``) or dies without a word (kill -9)."""
    storage, _ = storage_for(url, Path(run_dir))
    study = optuna.load_study(study_name="s", storage=storage)
    won = claim_export(study, Path(run_dir), "f1", poll_s=0.05, patience_s=60)
    if won and not mark:
        os._exit(9)  # dies holding the claim, as a kill during the export would leave it
    if won:  # the winner writes its files, then marks the study; the others wait for that
        mark_exported(study, Path(run_dir), "f1")
    queue.put(won)


def start_trial_and_die(url: str) -> None:
    """Starts a trial of study "s" (Optuna's write) and dies before recording its owner."""
    storage, _ = storage_for(url, Path("."))
    optuna.load_study(study_name="s", storage=storage).ask()
    os._exit(9)
