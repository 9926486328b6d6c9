"""``prunesearch find``: from a trained base model to one spec per budget.

1. Parse the budgets and check, before any work, that the space's minimum keep ratio can reach
   each of them.
2. Reuse the base (``--base``, or ``outputs/<space>/base/``), or train it (resuming a partial
   run).
3. Compute the signal once: per-channel importance from the base (BN |gamma| or filter L1).
4. Per budget: score the baselines (uniform widths; network slimming's global threshold; L1
   with a uniform per-layer ratio; ``global``: mean-normalised importance, one threshold) with
   the search's objective, enqueue the signal's allocations, uniform ratios and perturbations
   of the global allocation as the first trials, then let TPE search the parameterisation
   (``granularity.py``). Each candidate is projected onto the budget and scored by the
   objective (``objectives.py``): the pruned base after BN recalibration (``inherit``) or a
   short from-scratch training with successive halving (``scratch``), on the held-out split.
5. Export the best architecture (a baseline if none beats it) as a spec with provenance, and
   ``family.json`` indexing the specs.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from prunesearch.engine.budget import Budget, parse_budgets
from prunesearch.errors import PrunesearchError, keep_interrupts
from prunesearch.fileio import atomic_write_json, held_lock, read_json
from prunesearch.find.baselines import budget_targets, score_baselines, seed_trials
from prunesearch.find.candidates import Candidates, Job, objective_settings, resolve_signal
from prunesearch.find.score_cache import SCORES, fingerprint, load_scores, save_scores
from prunesearch.find.selection import best, export_once, measured, member_and_files
from prunesearch.find.studies import (
    counts,
    no_interrupt_tracebacks,
    open_study,
    redact,
    run_trials,
    storage_for,
)
from prunesearch.find.workers import (
    accept_interrupts,
    ignore_interrupts,
    join_workers,
    start_workers,
)
from prunesearch.latency.budgets import resolve_threads, study_qualifier
from prunesearch.paths import WEIGHTS, run_folder
from prunesearch.progress import Reporter
from prunesearch.space import Space
from prunesearch.training.base_weights import (
    BaseWeights,
    base_accuracy,
    base_epochs,
    load_space_base,
)
from prunesearch.training.loop import RunOptions, resolve_device
from prunesearch.training.runs import DataOptions, resolve_space, train_base, write_config
from prunesearch.vocab import OBJECTIVES, require

__all__ = ["Export", "FindOptions", "find", "run_study", "search_budget", "study_name"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FindOptions:
    """What to search: the CLI's ``find`` flags (None: the space's value)."""

    budgets: str
    base: str | None = None
    signal: str | None = None
    trials: int | None = None
    storage: str | None = None
    study: str | None = None
    jobs: int = 1
    finetune_steps: int = 0
    objective: str | None = None
    base_epochs: int | None = None  # of a base trained elsewhere (Scratch-B's budget)


def _worker(job: Job, seed: int) -> None:
    """Body of a ``--jobs`` worker process. A Ctrl-C (sent to the whole process group) ends it
    quietly: the main process says once that the search was interrupted. It starts with
    SIGINT ignored (``workers.py``) and takes it back inside the ``try``."""
    torch.set_num_threads(1)
    no_interrupt_tracebacks()
    keep_interrupts()
    try:
        accept_interrupts()
        candidates = Candidates(
            job.space,
            job.base_path,
            job.signal,
            job.data,
            job.opts,
            job.objective,
            job.finetune_steps,
        )
        candidates.use_budgets([job.budget], candidates.device.type)  # the main process cached them
        settings = objective_settings(
            job.space, job.objective, job.finetune_steps, candidates.rungs
        )
        key = fingerprint(job.space, settings, job.data, candidates.device)
        load_scores(job.run_dir / SCORES, candidates.scorer, key)  # the baselines' at least
        storage, _ = storage_for(job.storage_url, job.run_dir)
        study, _ = open_study(storage, job.study_name, seed, job.n_startup, candidates.pruner())
        run_trials(study, candidates.objective_fn(job.budget, job.target), job.n_trials)
    except KeyboardInterrupt:
        ignore_interrupts()
        sys.exit(130)


def _resolve_base(
    space: Space,
    find_opts: FindOptions,
    data: DataOptions,
    opts: RunOptions,
    reporter: Reporter | None,
    epochs: int | None,
    out: str | Path | None = None,
) -> Path:
    if find_opts.base:
        path = Path(find_opts.base)
        if path.is_dir():
            path = path / WEIGHTS
        if not path.is_file():
            raise PrunesearchError(f"--base {find_opts.base}: no such weights file")
        return path
    base_dir = Path(out) / "base" if out else run_folder(space.name, "base")
    path = base_dir / WEIGHTS
    # several finds started together (`find & find &`) train the base once: the others wait
    with held_lock(
        base_dir.parent / f".{base_dir.name}.lock",
        f"another process to finish training the base in {base_dir}",
    ):
        if not path.is_file():
            logger.info("no trained base in %s: training it first", base_dir)
            train_base(
                space,
                out=base_dir,
                data=data,
                reporter=reporter,
                epochs=epochs,
                opts=dataclasses.replace(opts, resume=True),
            )
    return path


@dataclass
class _Caches:
    """A find run folder's caches of scores: the baselines' (``baselines.json``) and every
    from-scratch candidate's (``scores.json``, kept under its settings' fingerprint)."""

    run_dir: Path
    baselines: dict[str, Any]
    key: str

    @classmethod
    def open(cls, run_dir: Path, candidates: Candidates, key: str) -> _Caches:
        path = run_dir / "baselines.json"
        baselines = read_json(path, "baseline scores") if path.is_file() else {}
        load_scores(run_dir / SCORES, candidates.scorer, key)
        return cls(run_dir, baselines, key)

    def save(self, candidates: Candidates) -> None:
        atomic_write_json(self.run_dir / "baselines.json", self.baselines)
        save_scores(self.run_dir / SCORES, candidates.scorer, self.key)


@dataclass(frozen=True)
class _Plan:
    """What every budget of one find shares: the score caches, the export's settings, the
    fields common to the budgets' jobs, the study names' prefix, trials, seed and device."""

    caches: _Caches
    export: Export
    common: dict[str, Any]
    study_prefix: str
    trials: int
    seed: int
    device: str
    reporter: Reporter

    def budget(
        self, candidates: Candidates, budget: Budget, target: int
    ) -> tuple[dict[str, Any], list[tuple[Path, Any]], optuna.Study]:
        """One budget: its baselines scored, its study run, its choice exported (as data)."""
        started, trained = time.perf_counter(), getattr(candidates.scorer, "trainings", 0)
        baselines = score_baselines(
            candidates, budget, target, self.caches.baselines, self.export.settings, self.reporter
        )
        self.caches.save(candidates)
        logger.info("%s: baselines %.1f s", budget.text, time.perf_counter() - started)
        seeds = seed_trials(candidates, budget, target, self.trials, self.seed)
        name = study_name(self.study_prefix, budget, self.common["space"], self.device)
        job = Job(budget=budget, target=target, study_name=name, n_trials=self.trials,
                  n_startup=min(len(seeds), self.trials), **self.common)  # fmt: skip
        result = search_budget(candidates, job, seeds, baselines, self.export, self.reporter)
        self.caches.save(candidates)
        _log_budget_time(candidates, budget, time.perf_counter() - started, trained)
        return result


def _run_dir(space: Space, budgets: list[Budget], out: str | Path | None) -> Path:
    """``out``, else ``outputs/<space>/find-<budget slugs>``."""
    return Path(out) if out else run_folder(space.name, "find-" + "_".join(b.slug for b in budgets))


def _base_info(
    candidates: Candidates, base: BaseWeights, base_path: Path, find_opts: FindOptions
) -> dict[str, Any]:
    """The base's provenance, its validation accuracy (measured and logged before the search
    starts) and the epochs Scratch-B starts from: recorded in family.json and every spec."""
    epochs, source = base_epochs(base, find_opts.base_epochs, candidates.space)
    accuracy = base_accuracy(
        candidates.graph.model,
        candidates.val,
        batch_size=candidates.space.data.eval_batch_size,
        device=candidates.device,
        name=base_path.name if find_opts.base else str(base_path),
    )
    return base.provenance() | accuracy | {"epochs": epochs, "epochs_from": source}


def _check_options(space: Space, find_opts: FindOptions) -> tuple[int, str]:
    """(trials, objective), or the first bad option."""
    trials = find_opts.trials if find_opts.trials is not None else space.search.trials
    objective = find_opts.objective or space.search.objective
    if trials < 1:
        raise PrunesearchError(f"--trials must be >= 1, got {trials}")
    if find_opts.jobs < 1:
        raise PrunesearchError(f"--jobs must be >= 1, got {find_opts.jobs}")
    if find_opts.finetune_steps < 0:
        raise PrunesearchError(f"--finetune-steps must be >= 0, got {find_opts.finetune_steps}")
    require("objective", objective, OBJECTIVES)
    if find_opts.finetune_steps and objective != "inherit":
        raise PrunesearchError(
            "--finetune-steps fine-tunes inherited weights: it needs --objective inherit"
        )
    return trials, objective


def run_study(
    candidates: Candidates,
    job: Job,
    seeds: list[tuple[str, dict[str, float]]],
    jobs: int,
    storage,
    reporter: Reporter,
    baselines: dict[str, dict[str, Any]] | None = None,
) -> optuna.Study:
    """Runs one budget's study to ``job.n_trials`` finished trials (``seeds`` first), with
    ``jobs - 1`` local worker processes beside this one."""
    study, created = open_study(
        storage, job.study_name, job.opts.seed, job.n_startup, candidates.pruner()
    )
    if created:  # only the worker that created the study seeds it and describes it
        _describe(study, candidates, job, baselines or {})
        for name, params in seeds[: job.n_trials]:
            study.enqueue_trial(
                params, user_attrs={"seeded": True, "seeded_from": name}, skip_if_exists=True
            )
    finished, _ = counts(study)
    reporter.search_start(
        f"find {job.budget.text} ({job.signal}, {job.objective})",
        job.n_trials,
        min(finished, job.n_trials),
    )

    def best_value() -> float | None:
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return max((t.value for t in done), default=None)

    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(job, job.opts.seed + k)) for k in range(1, jobs)]
    interrupted = False
    try:
        start_workers(workers)
        run_trials(
            study,
            candidates.objective_fn(job.budget, job.target),
            job.n_trials,
            on_trial=lambda n: reporter.search_trial(n, best_value()),
        )
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        join_workers(workers, interrupted)
        reporter.close()
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:  # their unfinished trials were failed and retried: the study is complete
        logger.warning(
            "%d local search worker(s) died (exit codes %s); their trials were "
            "retried and the study is complete",
            len(failed),
            failed,
        )
    return study


def _describe(
    study: optuna.Study, candidates: Candidates, job: Job, baselines: dict[str, dict[str, Any]]
) -> None:
    """What the study searches, as its user attributes and metric name (what optuna-dashboard
    shows of a study): the budget, the space, signal and objective, the base, and the
    baselines' scores at the budget for comparison with the trials."""
    info = {
        "budget": job.budget.text,
        "budget_kind": job.budget.kind,
        "target": job.target,
        "space": job.space.name,
        "model": job.space.model.name,
        "signal": job.signal,
        "objective": job.objective,
        "granularity": job.space.search.granularity,
        "base_flops": candidates.graph.flops(),
        "base_params": candidates.graph.params(),
        "base_checkpoint": str(job.base_path),
        "baselines": {
            name: {
                "score": b["score"],
                "flops": b["flops"],
                "params": b["params"],
                "widths": b["widths"],
            }
            for name, b in baselines.items()
        },
    }
    for key, value in info.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():  # experimental in Optuna, stable in its storages
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{job.objective} score (validation accuracy)"])


@dataclass(frozen=True)
class Export:
    """What each budget's export records beside its choice: the objective's settings and the
    base checkpoint's sha256; and how its study runs: the storage and local worker count."""

    settings: dict[str, Any]
    sha: str
    storage: Any
    n_jobs: int = 1


def search_budget(
    candidates: Candidates,
    job: Job,
    seeds: list[tuple[str, dict[str, float]]],
    baselines: dict[str, dict[str, Any]],
    export: Export,
    reporter: Reporter,
    run: Callable[..., optuna.Study] | None = None,
) -> tuple[dict[str, Any], list[tuple[Path, Any]], optuna.Study]:
    """One budget: its study run to ``job.n_trials``, the choice (finalists confirmed; timed
    under a latency budget), and the family member with its spec files.

    ``run``: what runs the study (default :func:`run_study`)."""
    run = run or run_study
    started = time.perf_counter()
    study = run(candidates, job, seeds, export.n_jobs, export.storage, reporter, baselines)
    searched = time.perf_counter()
    choice = best(candidates, study, baselines, job, job.run_dir / "confirm.json")
    logger.info(
        "%s: trials %.1f s, finalists %.1f s",
        job.budget.text,
        searched - started,
        time.perf_counter() - searched,
    )
    n_done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if job.budget.kind == "latency":
        choice = measured(candidates, job, choice, baselines, job.run_dir / "measured.json")
    member, files = member_and_files(
        job, choice, baselines, candidates.graph, export.sha, export.settings, n_done
    )
    return member, files, study


def _log_budget_time(candidates: Candidates, budget: Budget, seconds: float, trained: int) -> None:
    """One line per budget: its wall time, and how many candidates were trained for it."""
    trainings = getattr(candidates.scorer, "trainings", None)
    fresh = "" if trainings is None else f" ({trainings - trained} candidates trained)"
    logger.info("%s searched in %.1f s%s", budget.text, seconds, fresh)


def study_name(prefix: str, budget: Budget, space: Space, device: str) -> str:
    """One study per budget; a latency budget's also names what its milliseconds are of."""
    name = f"{prefix}:{budget.slug}"
    return name + study_qualifier(space, device) if budget.kind == "latency" else name


def find(
    space: Space,
    find_opts: FindOptions,
    *,
    out: str | Path | None = None,
    epochs: int | None = None,
    data: DataOptions = DataOptions(),  # noqa: B008
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Searches one architecture per budget; returns the summary also written to family.json.

    ``epochs`` overrides the space's epochs when the base has to be trained first.
    """
    reporter = reporter or Reporter()
    space = resolve_space(space, data, reporter)  # the user's own data: its classes and size
    budgets = parse_budgets(find_opts.budgets)
    trials, objective = _check_options(space, find_opts)
    device = resolve_device(opts.device).type
    if any(b.kind == "latency" for b in budgets):
        space = resolve_threads(space)  # before anything changes torch's thread count
    targets = budget_targets(space, budgets, device=device, reporter=reporter)
    run_dir = _run_dir(space, budgets, out)
    storage, storage_url = None, ""
    if find_opts.storage is not None:  # a storage that cannot be opened is refused before work
        storage, storage_url = storage_for(find_opts.storage, run_dir)
    base_path = _resolve_base(space, find_opts, data, opts, reporter, epochs, out)
    base = load_space_base(base_path, space)
    signal, sha = resolve_signal(space, find_opts.signal, base.meta), base.sha256
    s = space.search
    study_prefix = find_opts.study or f"{space.name}-{signal}-{objective}-{s.granularity}-{sha[:8]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage, storage_url = storage_for(None, run_dir)
    # the default storage is the run folder's study.db, wherever the folder is moved
    chosen = {"storage": None if find_opts.storage is None else redact(storage_url)}
    chosen |= {"trials": trials, "signal": signal, "objective": objective}
    chosen = dataclasses.asdict(find_opts) | chosen
    write_config(run_dir, space, opts, data, find=chosen, base=str(base_path.resolve()),
                 base_sha256=sha)  # fmt: skip
    candidates = Candidates(
        space, base_path, signal, data, opts, objective, find_opts.finetune_steps
    )
    base_info = _base_info(candidates, base, base_path, find_opts)
    candidates.use_budgets(budgets, device, reporter)
    settings = objective_settings(space, objective, find_opts.finetune_steps, candidates.rungs)
    export = Export(settings, sha, storage, find_opts.jobs)
    common = {"space": space, "base_path": base_path, "signal": signal, "objective": objective}
    common |= {"finetune_steps": find_opts.finetune_steps, "data": data, "opts": opts}
    common |= {"storage_url": storage_url, "run_dir": run_dir, "base_info": base_info}
    caches = _Caches.open(
        run_dir, candidates, fingerprint(space, settings, data, candidates.device)
    )
    plan = _Plan(caches, export, common, study_prefix, trials, opts.seed, device, reporter)
    members, files, studies = [], [], []
    for budget, target in zip(budgets, targets, strict=True):
        member, member_files, study = plan.budget(candidates, budget, target)
        members.append(member)
        files += member_files
        studies.append(study)
    family = {"space": space.name, "signal": signal, "objective": objective}
    family |= {"base": str(base_path), "base_sha256": sha, "base_info": base_info}
    family |= {"trials": trials, "members": members}
    exported = export_once(studies[0], run_dir, family, files)
    return family | {"run_dir": str(run_dir), "exported": exported}
