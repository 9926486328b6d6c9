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
import hashlib
import json
import logging
import math
import multiprocessing
import random
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from .budget import Budget, amount, cost, global_ratios, parse_budgets, project, threshold_ratios
from .choices import OBJECTIVES, SIGNALS, require
from .data import DATASETS, SYNTHETIC
from .errors import PrunesearchError, keep_interrupts
from .fileio import atomic_write_json, file_digest, held_lock, read_json
from .granularity import Parameterization
from .graph import trace
from .importance import comparable_scores
from .latency_model import LatencyModel
from .latency_search import (
    attach_latency,
    base_latency,
    fastest,
    latency_record,
    measured_within,
    resolve_threads,
)
from .objectives import SGD, InheritScorer, Rungs, ScratchScorer
from .paths import run_folder
from .progress import Reporter
from .runs import DataOptions, base_metadata, load_splits, train_base
from .space import Space
from .spec import ArchSpec, package_versions
from .studies import (
    HOST,
    claim_export,
    counts,
    mark_exported,
    no_interrupt_tracebacks,
    open_study,
    redact,
    run_trials,
    storage_for,
)
from .train import RunOptions, load_weights, resolve_device

__all__ = ["FindOptions", "find", "input_shape"]

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


def input_shape(space: Space) -> list[int]:
    """(C, H, W) of the space's dataset, without loading it."""
    if space.data.dataset == SYNTHETIC:
        syn = space.data.synthetic
        size = syn.get("image_size", 16)
        return [syn.get("in_channels", 3), size, size]
    info = DATASETS.get(space.data.dataset)
    if info is None:
        raise PrunesearchError(f"space {space.name}: unknown dataset {space.data.dataset!r}")
    return [info.in_channels, info.image_size, info.image_size]



def objective_settings(space: Space, objective: str, finetune_steps: int = 0
                       ) -> dict[str, Any]:
    """What defines an objective's scores (recorded in specs; a cached score is reused only
    when these are unchanged)."""
    s = space.search
    if objective == "scratch":
        return {"objective": "scratch", "rung_images": Rungs(
            s.scratch_images, s.scratch_rungs, s.scratch_reduction).sizes,
            "reduction": s.scratch_reduction, "cooldown": s.scratch_cooldown,
            "lr": space.train.lr, "batch_size": space.data.batch_size, "seed": 0}
    return {"objective": "inherit", "calib_batches": s.calib_batches,
            "finetune_steps": finetune_steps}


class _Search:
    """Everything a worker needs to score trials of one budget (rebuilt in each process)."""

    def __init__(self, space: Space, base_path: Path, signal: str, data: DataOptions,
                 opts: RunOptions, objective: str = "inherit", finetune_steps: int = 0) -> None:
        self.space, self.signal = space, signal
        self.objective, self.finetune_steps = objective, finetune_steps
        state, _ = load_weights(base_path)
        model = space.create_model()
        model.load_state_dict(state)
        self.graph = trace(model, torch.zeros(1, *input_shape(space)))
        splits = load_splits(space, data)
        if splits.val is None:
            raise PrunesearchError(f"space {space.name}: the search scores candidates on a "
                                   "validation split; set data.val_size > 0")
        d, s, t = space.data, space.search, space.train
        self.device = resolve_device(opts.device)
        self.latency_models: dict[str, LatencyModel] = {}
        self.param = Parameterization(self.graph, s.granularity, s.min_ratio)
        self.rungs = Rungs(s.scratch_images, s.scratch_rungs, s.scratch_reduction,
                           s.scratch_cooldown)
        self.scorer: InheritScorer | ScratchScorer
        if objective == "scratch":
            # NCHW: pruned nets train up to 21% slower channels-last on CPU (BENCHMARKS.md)
            self.scorer = ScratchScorer(
                self.graph, splits.train, splits.val, rungs=self.rungs,
                sgd=SGD(t.lr, t.momentum, t.weight_decay), batch_size=d.batch_size,
                eval_batch_size=d.eval_batch_size, augment=d.augment, device=self.device,
                channels_last=False)
        else:
            self.scorer = InheritScorer(self.graph, splits.train, splits.val, importance=signal,
                                        calib_batches=s.calib_batches, batch_size=d.batch_size,
                                        eval_batch_size=d.eval_batch_size, device=self.device,
                                        # auto: channels-last, faster for evaluation even on
                                        # the pruned nets that train slower in it (BENCHMARKS)
                                        channels_last=t.channels_last is not False,
                                        finetune_lr=t.finetune_lr)

    def use_budgets(self, budgets: list[Budget], device: str,
                    reporter: Reporter | None = None) -> None:
        """Latency budgets need the space's latency models on the graph (built or cached)."""
        if any(b.kind == "latency" for b in budgets) and not self.latency_models:
            self.latency_models = attach_latency(self.graph, self.space, device=device,
                                                 reporter=reporter)

    def pruner(self) -> optuna.pruners.BasePruner | None:
        return self.rungs.pruner() if self.objective == "scratch" else None

    def score(self, widths: dict[str, int], importance: str | None = None,
              trial: optuna.Trial | None = None) -> float:
        """The objective's value of ``widths`` (``importance``: which channels an inherit
        score keeps; from-scratch scores do not depend on it)."""
        if isinstance(self.scorer, ScratchScorer):
            return self.scorer.score(widths, trial)
        if self.finetune_steps:
            return self.scorer.score_finetuned(widths, self.finetune_steps, trial)
        return self.scorer.score(widths, importance)

    def trial_attrs(self, widths: dict[str, int]) -> dict[str, Any]:
        """A candidate's user attributes in the study: its widths and costs, and what scored
        it (optuna-dashboard shows them beside each trial's parameters and value)."""
        flops = self.graph.flops(widths)
        attrs = {"widths": widths, "flops": flops, "params": self.graph.params(widths),
                 "flops_ratio": round(flops / self.graph.flops(), 4),
                 "objective": self.objective, "signal": self.signal}
        if self.latency_models:  # a latency budget: the prediction and its faster format
            fmt, ns = fastest(self.latency_models, widths)
            attrs |= {"latency_ms": ns / 1e6, "memory_format": fmt}
        return attrs

    def objective_fn(self, budget: Budget, target: int):
        s = self.space.search

        def fn(trial: optuna.Trial) -> float:
            params = self.param.suggest(trial)
            round_to = s.round_to
            if budget.kind == "latency" and s.latency_round_to != s.round_to:
                # widths in whole SIMD blocks can be faster at fewer FLOPs: the search decides
                round_to = trial.suggest_categorical("round_to", [s.round_to, s.latency_round_to])
            widths = project(self.graph, self.param.ratios(params), budget.kind, target,
                             min_ratio=s.min_ratio, round_to=round_to)
            trial.set_constraint("budget", cost(self.graph, budget.kind, widths) - target)
            for key, value in self.trial_attrs(widths).items():  # what a dashboard lists
                trial.set_user_attr(key, value)
            return self.score(widths, trial=trial)

        return fn


@dataclass(frozen=True)
class _Job:
    """One budget's study: what every process working on it needs (pickled to --jobs workers)."""

    space: Space
    base_path: Path
    signal: str
    objective: str
    finetune_steps: int
    data: DataOptions
    opts: RunOptions
    budget: Budget
    target: int
    storage_url: str
    run_dir: Path
    study_name: str
    n_trials: int
    n_startup: int


def _worker(job: _Job, seed: int) -> None:
    """Body of a ``--jobs`` worker process. A Ctrl-C (sent to the whole process group) ends it
    quietly: the main process says once that the search was interrupted."""
    torch.set_num_threads(1)
    no_interrupt_tracebacks()
    keep_interrupts()
    try:
        search = _Search(job.space, job.base_path, job.signal, job.data, job.opts,
                         job.objective, job.finetune_steps)
        search.use_budgets([job.budget], search.device.type)  # the main process cached them
        storage, _ = storage_for(job.storage_url, job.run_dir)
        study, _ = open_study(storage, job.study_name, seed, job.n_startup, search.pruner())
        run_trials(study, search.objective_fn(job.budget, job.target), job.n_trials)
    except KeyboardInterrupt:
        sys.exit(130)


def _resolve_base(space: Space, find_opts: FindOptions, data: DataOptions, opts: RunOptions,
                  reporter: Reporter | None, epochs: int | None) -> Path:
    if find_opts.base:
        path = Path(find_opts.base)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise PrunesearchError(f"--base {find_opts.base}: no such weights file")
        return path
    base_dir = run_folder(space.name, "base")
    path = base_dir / "model.safetensors"
    # several finds started together (`find & find &`) train the base once: the others wait
    with held_lock(base_dir.parent / f".{base_dir.name}.lock",
                   f"another process to finish training the base in {base_dir}"):
        if not path.is_file():
            logger.info("no trained base in %s: training it first", base_dir)
            train_base(space, out=base_dir, data=data, reporter=reporter, epochs=epochs,
                       opts=dataclasses.replace(opts, resume=True))
    return path


def _resolve_signal(space: Space, requested: str | None, base_meta: dict[str, Any]) -> str:
    if requested is not None:
        return require("signal", requested, SIGNALS)
    sparsity = (base_meta.get("recipe") or {}).get("sparsity")
    if space.search.signal == "slimming" and sparsity == 0:
        logger.info("the base was trained without sparsity: using the l1 signal")
        return "l1"
    return space.search.signal


def _perturbations(ratios: dict[str, float], n: int, seed: int, lo: float
                   ) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{k: min(1.0, max(lo, v * math.exp(rng.gauss(0, 0.3)))) for k, v in ratios.items()}
            for _ in range(n)]


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
        raise PrunesearchError("--finetune-steps fine-tunes inherited weights: it needs "
                               "--objective inherit")
    return trials, objective


def budget_targets(space: Space, budgets: list[Budget], *, device: str = "cpu",
                   reporter: Reporter | None = None) -> list[int]:
    """Each budget's target, checked to lie below the base model and within reach of the
    space's minimum keep ratio (an untrained model has the same costs). A latency budget
    builds the space's latency models first (or reads them from the cache)."""
    s = space.search
    graph = trace(space.create_model(), torch.zeros(1, *input_shape(space)))
    if any(b.kind == "latency" for b in budgets):
        absolute = [b for b in budgets if b.kind == "latency" and not b.relative]
        if absolute:  # a budget above the base is refused before the tables are built
            measured = base_latency(graph, space, device=device)
            for b in absolute:
                if b.value >= measured:
                    raise PrunesearchError(
                        f"budget {b.text}: {amount(int(b.value), b.kind)} is not below the "
                        f"base model's {amount(measured, b.kind)} (measured); nothing to prune")
        attach_latency(graph, space, device=device, reporter=reporter)
    targets = []
    for b in budgets:
        base_cost = cost(graph, b.kind)
        target = b.target(base_cost)
        if target >= base_cost:
            raise PrunesearchError(f"budget {b.text}: {amount(target, b.kind)} is not below "
                                   f"the base model's {amount(base_cost, b.kind)}"
                                   f"{' (predicted)' if b.kind == 'latency' else ''}; nothing "
                                   "to prune")
        project(graph, {}, b.kind, target, min_ratio=s.min_ratio, round_to=s.round_to)
        targets.append(target)
    return targets


def baseline_widths(search: _Search, budget: Budget, target: int
                    ) -> dict[str, tuple[dict[str, int], str]]:
    """The baselines' widths at the budget, with the signal that picks their channels:
    ``uniform`` and ``l1`` (the same widths), ``slimming`` (one global threshold on BN |gamma|,
    when the model has BN), ``global`` (mean-normalised signal, one global threshold)."""
    graph, s = search.graph, search.space.search

    def on_budget(ratios: dict[str, float]) -> dict[str, int]:
        return project(graph, ratios, budget.kind, target, min_ratio=s.min_ratio,
                       round_to=s.round_to)

    uniform = on_budget({})
    out = {"uniform": (uniform, search.signal), "l1": (uniform, "l1")}
    slim_scores = comparable_scores(graph, "slimming")
    if slim_scores:
        out["slimming"] = (on_budget(threshold_ratios(graph, slim_scores, budget.kind, target,
                                                      s.min_ratio)), "slimming")
    scores = comparable_scores(graph, search.signal) or comparable_scores(graph, "l1")
    out["global"] = (on_budget(global_ratios(graph, scores, budget.kind, target, s.min_ratio)),
                     search.signal)
    return out


def _score_baselines(search: _Search, budget: Budget, target: int, cache: dict[str, Any],
                     settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each baseline scored by the search's objective; ``cache`` (baselines.json, by budget)
    keeps scores whose widths and objective settings are unchanged."""
    cached = cache.get(budget.slug, {})
    baselines = {}
    for name, (widths, importance) in baseline_widths(search, budget, target).items():
        entry = cached.get(name)
        if entry is None or entry.get("widths") != widths or entry.get("settings") != settings \
                or entry.get("signal") != importance:
            entry = {"widths": widths, "signal": importance, "settings": settings,
                     "score": search.score(widths, importance),
                     "flops": search.graph.flops(widths), "params": search.graph.params(widths)}
        baselines[name] = entry
    cache[budget.slug] = baselines
    return baselines


def _seed_trials(search: _Search, budget: Budget, target: int, trials: int, seed: int
                 ) -> list[tuple[str, dict[str, float]]]:
    """The first trials, each with what it starts from: the signal's threshold allocation, the
    global allocation, uniform ratios, then perturbations of the global allocation."""
    graph, s = search.graph, search.space.search
    comparable = comparable_scores(graph, search.signal)
    allocation = threshold_ratios(graph, comparable, budget.kind, target, s.min_ratio)
    scores = comparable or comparable_scores(graph, "l1")
    global_alloc = global_ratios(graph, scores, budget.kind, target, s.min_ratio)
    ratios = [(f"{search.signal} threshold", allocation), ("global", global_alloc),
              ("uniform", {g.name: 1.0 for g in graph.groups})]
    ratios += [(f"global, perturbed ({k + 1})", r) for k, r in enumerate(_perturbations(
        global_alloc, min(8, max(0, trials // 4)), seed, s.min_ratio))]
    out: list[tuple[str, dict[str, float]]] = []
    for name, r in ratios:
        params = search.param.params(r)
        if all(params != p for _, p in out):
            out.append((name, params))
    return out


def _run_study(search: _Search, job: _Job, seeds: list[tuple[str, dict[str, float]]],
               jobs: int, storage, reporter: Reporter,
               baselines: dict[str, dict[str, Any]] | None = None) -> optuna.Study:
    """Runs one budget's study to ``job.n_trials`` finished trials (``seeds`` first), with
    ``jobs - 1`` local worker processes beside this one."""
    study, created = open_study(storage, job.study_name, job.opts.seed, job.n_startup,
                                search.pruner())
    if created:  # only the worker that created the study seeds it and describes it
        _describe(study, search, job, baselines or {})
        for name, params in seeds[:job.n_trials]:
            study.enqueue_trial(params, user_attrs={"seeded": True, "seeded_from": name},
                                skip_if_exists=True)
    finished, _ = counts(study)
    reporter.search_start(f"find {job.budget.text} ({job.signal}, {job.objective})",
                          job.n_trials, min(finished, job.n_trials))

    def best_value() -> float | None:
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return max((t.value for t in done), default=None)

    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(job, job.opts.seed + k))
               for k in range(1, jobs)]
    for w in workers:
        w.start()
    try:
        run_trials(study, search.objective_fn(job.budget, job.target), job.n_trials,
                   on_trial=lambda n: reporter.search_trial(n, best_value()))
    finally:
        for w in workers:
            w.join()
        reporter.close()
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:  # their unfinished trials were failed and retried: the study is complete
        logger.warning("%d local search worker(s) died (exit codes %s); their trials were "
                       "retried and the study is complete", len(failed), failed)
    return study


def _describe(study: optuna.Study, search: _Search, job: _Job,
              baselines: dict[str, dict[str, Any]]) -> None:
    """What the study searches, as its user attributes and metric name (what optuna-dashboard
    shows of a study): the budget, the space, signal and objective, the base, and the
    baselines' scores at the budget for comparison with the trials."""
    info = {"budget": job.budget.text, "budget_kind": job.budget.kind, "target": job.target,
            "space": job.space.name, "model": job.space.model.name, "signal": job.signal,
            "objective": job.objective, "granularity": job.space.search.granularity,
            "base_flops": search.graph.flops(), "base_params": search.graph.params(),
            "base_checkpoint": str(job.base_path),
            "baselines": {name: {"score": b["score"], "flops": b["flops"],
                                 "params": b["params"], "widths": b["widths"]}
                          for name, b in baselines.items()}}
    for key, value in info.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():  # experimental in Optuna, stable in its storages
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{job.objective} score (validation accuracy)"])


def find(space: Space, find_opts: FindOptions, *, out: str | Path | None = None,
         epochs: int | None = None, data: DataOptions = DataOptions(),  # noqa: B008
         opts: RunOptions = RunOptions(), reporter: Reporter | None = None  # noqa: B008
         ) -> dict[str, Any]:
    """Searches one architecture per budget; returns the summary also written to family.json.

    ``epochs`` overrides the space's epochs when the base has to be trained first.
    """
    reporter = reporter or Reporter()
    budgets = parse_budgets(find_opts.budgets)
    trials, objective = _check_options(space, find_opts)
    device = resolve_device(opts.device).type
    if any(b.kind == "latency" for b in budgets):
        space = resolve_threads(space)  # before anything changes torch's thread count
    targets = budget_targets(space, budgets, device=device, reporter=reporter)
    run_dir = Path(out) if out else run_folder(
        space.name, "find-" + "_".join(b.slug for b in budgets))
    storage, storage_url = None, ""
    if find_opts.storage is not None:  # a storage that cannot be opened is refused before work
        storage, storage_url = storage_for(find_opts.storage, run_dir)
    base_path = _resolve_base(space, find_opts, data, opts, reporter, epochs)
    base_meta = base_metadata(base_path, space)
    signal = _resolve_signal(space, find_opts.signal, base_meta)
    sha = file_digest(base_path)
    settings = objective_settings(space, objective, find_opts.finetune_steps)
    study_prefix = find_opts.study or (f"{space.name}-{signal}-{objective}-"
                                       f"{space.search.granularity}-{sha[:8]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage, storage_url = storage_for(None, run_dir)
    atomic_write_json(run_dir / "config.json", {
        "space": space.to_dict(), "space_path": space.path, "find": dataclasses.asdict(find_opts)
        # the default storage is the run folder's study.db, wherever the folder is moved
        | {"storage": None if find_opts.storage is None else redact(storage_url),
           "trials": trials, "signal": signal, "objective": objective},
        "base": str(base_path.resolve()), "base_sha256": sha, "options": dataclasses.asdict(opts),
        "data": dataclasses.asdict(data), "versions": package_versions()})
    search = _Search(space, base_path, signal, data, opts, objective, find_opts.finetune_steps)
    search.use_budgets(budgets, device, reporter)
    baselines_path = run_dir / "baselines.json"
    cache = read_json(baselines_path, "baseline scores") if baselines_path.is_file() else {}
    members, files, studies = [], [], []
    for budget, target in zip(budgets, targets, strict=True):
        baselines = _score_baselines(search, budget, target, cache, settings)
        atomic_write_json(baselines_path, cache)
        seeds = _seed_trials(search, budget, target, trials, opts.seed)
        job = _Job(space, base_path, signal, objective, find_opts.finetune_steps, data, opts,
                   budget, target, storage_url, run_dir, f"{study_prefix}:{budget.slug}",
                   trials, min(len(seeds), trials))
        study = _run_study(search, job, seeds, find_opts.jobs, storage, reporter, baselines)
        studies.append(study)
        choice = _best(search, study, baselines, job, run_dir / "confirm.json")
        n_done = len(study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.COMPLETE,)))
        if budget.kind == "latency":
            choice = _measured(search, job, choice, baselines)
        member, member_files = _choose(job, choice, baselines, search.graph, sha, settings,
                                       n_done)
        members.append(member)
        files += member_files
    family = {"space": space.name, "signal": signal, "objective": objective,
              "base": str(base_path), "base_sha256": sha, "trials": trials, "members": members}
    exported = _export(studies[0], run_dir, family, files)
    return family | {"run_dir": str(run_dir), "exported": exported}


def _export(study: optuna.Study, run_dir: Path, family: dict[str, Any],
            files: list[tuple[Path, ArchSpec]]) -> bool:
    """Writes the specs and family.json once, by one of the workers sharing the studies."""
    fingerprint = hashlib.sha256(json.dumps(
        [[m["budget"], m["trial"], m["score"], m["flops"], m["trials_done"]]
         for m in family["members"]]).encode()).hexdigest()[:16]
    if not claim_export(study, run_dir, fingerprint):
        logger.info(_already_exported(study.user_attrs.get("exported") or {}, run_dir))
        return False
    for path, spec in files:
        spec.save(path)
    atomic_write_json(run_dir / "family.json", _relative_to(family, run_dir))
    mark_exported(study, run_dir, fingerprint)
    return True


def _relative_to(family: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """family.json's spec paths relative to the run folder (readers resolve them against it),
    so that the folder reads the same from any directory and after it is copied."""
    def rel(path: str) -> str:
        return str(Path(path).relative_to(run_dir))

    return family | {"members": [m | {"spec": rel(m["spec"]), "baseline_specs": {
        k: rel(v) for k, v in m["baseline_specs"].items()}} for m in family["members"]]}


CONFIRM_SEED = 1  # the finalists' second opinion: another init and data order


def _already_exported(exported: dict[str, Any], run_dir: Path) -> str:
    """What a run that has nothing new to export says, in words."""
    where = exported.get("run_dir")
    if where == str(run_dir) and exported.get("host") == HOST:
        return f"nothing new to export: the specs of these trials are already in {run_dir}"
    at = f" on {exported['host']}" if exported.get("host") not in (None, HOST) else ""
    return f"nothing to export here: another worker{at} wrote these specs into {where}"


def _best(search: _Search, study: optuna.Study, baselines: dict[str, dict[str, Any]],
          job: _Job, confirm_path: Path) -> dict[str, Any]:
    """The architecture to export: the best-scoring of the completed trials and the baselines
    (never worse on the objective than a baseline). Under the scratch objective the top
    ``scratch_confirm`` finalists are scored again with a second seed and chosen by their mean:
    the best of 40 noisy scores is mostly luck (the winner's curse), two seeds halve its
    variance."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    pool = [{"score": t.value, "widths": t.user_attrs["widths"], "trial": t.number,
             "signal": job.signal} | ({"round_to": t.params["round_to"]}
                                      if "round_to" in t.params else {})
            for t in sorted(done, key=lambda t: (-t.value, t.number))]
    pool += [{"score": b["score"], "widths": b["widths"], "trial": f"baseline:{name}",
              "signal": b["signal"]} for name, b in baselines.items()]
    finalists: list[dict[str, Any]] = []
    for c in sorted(pool, key=lambda c: -c["score"]):  # stable: trials before baselines
        if all(f["widths"] != c["widths"] for f in finalists):
            finalists.append(c)
    k = job.space.search.scratch_confirm if job.objective == "scratch" else 0
    if k < 2:
        return finalists[0]
    cache = read_json(confirm_path, "finalist scores") if confirm_path.is_file() else {}
    table = cache.setdefault(job.budget.slug, {})
    for f in finalists[:k]:
        key = json.dumps(f["widths"], sort_keys=True)
        if key not in table:
            logger.info("confirming finalist %s with a second seed", f["trial"])
            table[key] = search.scorer.score(f["widths"], seed=CONFIRM_SEED)
            atomic_write_json(confirm_path, cache)
        f["scores"] = [f["score"], table[key]]
        f["score"] = statistics.fmean(f["scores"])
    return max(finalists[:k], key=lambda f: f["score"]) | {
        "finalists": [{"trial": f["trial"], "scores": f["scores"]} for f in finalists[:k]]}


def _measured(search: _Search, job: _Job, choice: dict[str, Any],
              baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A latency budget's choice, timed for real: re-projected (and scored again) until the
    measured latency meets the budget; the baselines timed too (controls, never changed)."""
    graph, s, device = search.graph, job.space.search, search.device.type
    round_to = choice.get("round_to", s.round_to)
    ratios = {g.name: choice["widths"][g.name] / g.size for g in graph.groups}

    def reproject(aim: int) -> dict[str, int]:
        return project(graph, ratios, "latency", aim, min_ratio=s.min_ratio, round_to=round_to)

    widths, record = measured_within(graph, search.latency_models, choice["widths"],
                                     job.target, job.space, device=device, reproject=reproject)
    for b in baselines.values():
        b["latency"] = latency_record(graph, search.latency_models, b["widths"], job.target,
                                      job.space, device=device)
    if widths == choice["widths"]:
        return choice | {"latency": record}
    logger.info("scoring the re-projected architecture")
    return choice | {"widths": widths, "latency": record, "score": search.score(widths),
                     "score_before_reprojection": choice["score"]}


def _choose(job: _Job, choice: dict[str, Any], baselines: dict[str, dict[str, Any]], graph,
            sha: str, settings: dict[str, Any], n_done: int
            ) -> tuple[dict[str, Any], list[tuple[Path, ArchSpec]]]:
    """The budget's family member and its spec files (the chosen one's, the baselines')."""
    space, budget = job.space, job.budget
    search_info = {
        "signal": choice["signal"], "objective": job.objective, "objective_settings": settings,
        "score": choice["score"], "trial": choice["trial"], "study": job.study_name,
        "storage": redact(job.storage_url), "trials": n_done,
        "granularity": space.search.granularity, "space": space.name,
        "space_path": space.path, "base_checkpoint": str(job.base_path),
        "base_checkpoint_sha256": sha,
        "baselines": {k: {"score": v["score"], "flops": v["flops"], "params": v["params"]}
                      | ({"latency_ms": v["latency"]["measured_ms"]} if "latency" in v else {})
                      for k, v in baselines.items()},
    } | ({"finalists": choice["finalists"]} if "finalists" in choice else {})
    budget_info = {"kind": budget.kind, "target": job.target, "text": budget.text}

    def make(widths: dict[str, int], info: dict[str, Any],
             latency: dict[str, Any] | None = None) -> ArchSpec:
        budget = budget_info | ({"latency": latency} if latency else {})
        return ArchSpec.from_graph(graph, widths, model=space.model.name,
                                   model_args=space.model.args, budget=budget, search=info)

    spec = make(choice["widths"], search_info, choice.get("latency"))
    files = [(job.run_dir / f"spec-{budget.slug}.json", spec)]
    # the baselines' architectures as specs too: the controls a from-scratch comparison trains
    baseline_specs = {}
    for name, b in baselines.items():
        info = search_info | {"signal": b["signal"], "score": b["score"],
                              "trial": f"baseline:{name}", "baseline": name}
        path = job.run_dir / "baselines" / f"spec-{budget.slug}-{name}.json"
        files.append((path, make(b["widths"], info, b.get("latency"))))
        baseline_specs[name] = str(path)
    member = {"budget": budget.text, "slug": budget.slug, "target": job.target,
              "spec": str(files[0][0]), "flops": spec.flops, "params": spec.params,
              "base_flops": spec.base_flops, "score": choice["score"],
              "trial": choice["trial"], "trials_done": n_done,
              "baselines": search_info["baselines"],
              "baseline_specs": baseline_specs}
    if "latency" in choice:
        member["latency_ms"] = choice["latency"]["measured_ms"]
    return member, files
