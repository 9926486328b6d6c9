"""The body of the export-claim worker processes of test_studies.py, in a module of its own:
a spawned worker imports only this (optuna and prunesearch.studies, no torch), not the test
module with everything it imports."""

from __future__ import annotations

from pathlib import Path

import optuna

from prunesearch.studies import claim_export, mark_exported, storage_for


def claim(url: str, run_dir: str, queue) -> None:
    storage, _ = storage_for(url, Path(run_dir))
    study = optuna.load_study(study_name="s", storage=storage)
    won = claim_export(study, Path(run_dir), "f1", poll_s=0.05, patience_s=60)
    if won:  # the winner writes its files, then marks the study; the others wait for that
        mark_exported(study, Path(run_dir), "f1")
    queue.put(won)
