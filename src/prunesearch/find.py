"""``prunesearch find``: from a trained base model to one spec per budget.

1. Parse the budgets and check, before any work, that the space's minimum keep ratio can reach
   each of them.
2. Reuse the base (``--base``, or ``outputs/<space>/base/``), or train it (resuming a partial
   run).
3. Compute the signal once: per-channel importance from the base (BN |gamma| or filter L1).
4. Per budget: score the baselines (uniform widths; network slimming's global threshold; L1
   with a uniform per-layer ratio), enqueue the signal's allocation, uniform ratios and
   perturbations of the allocation as the first trials, then let TPE search keep ratios. Each
   candidate is projected onto the budget, pruned from the base by the signal, BN-recalibrated
   and scored on the held-out validation split.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from .budget import Budget, parse_budgets, project, threshold_ratios
from .data import DATASETS, SYNTHETIC
from .errors import PrunesearchError
from .evaluate import ProxyScorer
from .fileio import atomic_write_json, file_digest
from .graph import trace
from .importance import comparable_scores
from .progress import Reporter
from .runs import DataOptions, load_splits, train_base
from .search import claim_export, counts, mark_exported, open_study, redact, run_trials, storage_for
from .space import Space
from .spec import ArchSpec, package_versions
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



class _Search:
    """Everything a worker needs to score trials of one budget (rebuilt in each process)."""

    def __init__(self, space: Space, base_path: Path, signal: str, data: DataOptions,
                 opts: RunOptions) -> None:
        self.space, self.signal = space, signal
        state, _ = load_weights(base_path)
        model = space.create_model()
        model.load_state_dict(state)
        self.graph = trace(model, torch.zeros(1, *input_shape(space)))
        splits = load_splits(space, data)
        if splits.val is None:
            raise PrunesearchError(f"space {space.name}: the search scores candidates on a "
                                   "validation split; set data.val_size > 0")
        d, s = space.data, space.search
        self.device = resolve_device(opts.device)
        self.scorer = ProxyScorer(self.graph, splits.train, splits.val, importance=signal,
                                  calib_batches=s.calib_batches, batch_size=d.batch_size,
                                  eval_batch_size=d.eval_batch_size, device=self.device,
                                  channels_last=space.train.channels_last,
                                  finetune_lr=space.train.finetune_lr)
        self.stage_of = {g: f"s{i}" for g, i in self.graph.stages().items()}

    def ratios_from_params(self, params: dict[str, float]) -> dict[str, float]:
        if self.space.search.granularity == "stage":
            return {g.name: params[f"r:{self.stage_of[g.name]}"] for g in self.graph.groups}
        return {g.name: params[f"r:{g.name}"] for g in self.graph.groups}

    def params_from_ratios(self, ratios: dict[str, float]) -> dict[str, float]:
        lo = self.space.search.min_ratio
        if self.space.search.granularity == "stage":
            by_stage: dict[str, list[float]] = {}
            for name, r in ratios.items():
                by_stage.setdefault(self.stage_of[name], []).append(r)
            return {f"r:{k}": min(1.0, max(lo, sum(v) / len(v))) for k, v in by_stage.items()}
        return {f"r:{name}": min(1.0, max(lo, r)) for name, r in ratios.items()}

    def objective(self, budget: Budget, target: int, finetune_steps: int):
        s = self.space.search
        names = sorted(set(self.params_from_ratios({g.name: 1.0 for g in self.graph.groups})))

        def fn(trial: optuna.Trial) -> float:
            params = {n: trial.suggest_float(n, s.min_ratio, 1.0) for n in names}
            widths = project(self.graph, self.ratios_from_params(params), budget.kind, target,
                             min_ratio=s.min_ratio, round_to=s.round_to)
            cost = self.graph.flops(widths) if budget.kind == "flops" else \
                self.graph.params(widths)
            trial.set_constraint("budget", cost - target)  # <= 0: on budget by construction
            trial.set_user_attr("widths", widths)
            trial.set_user_attr("flops", self.graph.flops(widths))
            trial.set_user_attr("params", self.graph.params(widths))
            if finetune_steps:
                return self.scorer.score_finetuned(widths, finetune_steps, trial)
            return self.scorer.score(widths)

        return fn


def _worker(space: Space, base_path: Path, signal: str, data: DataOptions, opts: RunOptions,
            budget: Budget, target: int, storage_url: str, run_dir: Path, study_name: str,
            n_trials: int, n_startup: int, finetune_steps: int, seed: int) -> None:
    """Body of a ``--jobs`` worker process."""
    torch.set_num_threads(1)
    search = _Search(space, base_path, signal, data, opts)
    storage, _ = storage_for(storage_url, run_dir)
    study, _ = open_study(storage, study_name, seed, n_startup)
    run_trials(study, search.objective(budget, target, finetune_steps), n_trials)


def _resolve_base(space: Space, find_opts: FindOptions, data: DataOptions, opts: RunOptions,
                  reporter: Reporter | None, epochs: int | None) -> Path:
    if find_opts.base:
        path = Path(find_opts.base)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise PrunesearchError(f"--base {find_opts.base}: no such weights file")
        return path
    base_dir = Path("outputs") / space.name / "base"
    path = base_dir / "model.safetensors"
    if not path.is_file():
        logger.info("no trained base in %s: training it first", base_dir)
        train_base(space, out=base_dir, data=data, reporter=reporter, epochs=epochs,
                   opts=dataclasses.replace(opts, resume=True))
    return path


def _resolve_signal(space: Space, requested: str | None, base_meta: dict[str, Any]) -> str:
    if requested is not None:
        if requested not in ("slimming", "l1"):
            raise PrunesearchError(f"unknown signal {requested!r}; choose slimming or l1")
        return requested
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


def find(space: Space, find_opts: FindOptions, *, out: str | Path | None = None,
         epochs: int | None = None, data: DataOptions = DataOptions(),  # noqa: B008
         opts: RunOptions = RunOptions(), reporter: Reporter | None = None  # noqa: B008
         ) -> dict[str, Any]:
    """Searches one architecture per budget; returns the summary also written to family.json.

    ``epochs`` overrides the space's epochs when the base has to be trained first.
    """
    reporter = reporter or Reporter()
    budgets = parse_budgets(find_opts.budgets)
    s = space.search
    trials = find_opts.trials if find_opts.trials is not None else s.trials
    if trials < 1:
        raise PrunesearchError(f"--trials must be >= 1, got {trials}")
    if find_opts.jobs < 1:
        raise PrunesearchError(f"--jobs must be >= 1, got {find_opts.jobs}")
    if find_opts.finetune_steps < 0:
        raise PrunesearchError(f"--finetune-steps must be >= 0, got {find_opts.finetune_steps}")
    # 1. budgets reachable? (an untrained model has the same costs)
    shape = input_shape(space)
    graph0 = trace(space.create_model(), torch.zeros(1, *shape))
    base_flops, base_params = graph0.flops(), graph0.params()
    targets = []
    for b in budgets:
        target = b.target(base_flops, base_params)
        base_cost = base_flops if b.kind == "flops" else base_params
        if target >= base_cost:
            raise PrunesearchError(f"budget {b.text}: {target:,} {b.kind} is not below the base "
                                   f"model's {base_cost:,}; nothing to prune")
        project(graph0, {}, b.kind, target, min_ratio=s.min_ratio, round_to=s.round_to)
        targets.append(target)
    run_dir = Path(out) if out else Path("outputs") / space.name / (
        "find-" + "_".join(b.slug for b in budgets))
    # 2. base
    base_path = _resolve_base(space, find_opts, data, opts, reporter, epochs)
    _, base_meta = load_weights(base_path)
    if base_meta.get("model") != space.model.name or \
            base_meta.get("model_args") != space.model.args:
        raise PrunesearchError(f"--base {base_path} holds {base_meta.get('model')} "
                               f"{base_meta.get('model_args')}, not the space's model")
    signal = _resolve_signal(space, find_opts.signal, base_meta)
    sha = file_digest(base_path)
    study_prefix = find_opts.study or f"{space.name}-{signal}-{sha[:8]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    storage, storage_url = storage_for(find_opts.storage, run_dir)
    atomic_write_json(run_dir / "config.json", {
        "space": space.to_dict(), "space_path": space.path, "find": dataclasses.asdict(find_opts)
        | {"storage": redact(storage_url), "trials": trials, "signal": signal},
        "base": str(base_path), "base_sha256": sha, "options": dataclasses.asdict(opts),
        "data": dataclasses.asdict(data), "versions": package_versions()})
    # 3. signal, scorer
    search = _Search(space, base_path, signal, data, opts)
    graph = search.graph
    comparable = comparable_scores(graph, signal)
    slim_scores = comparable_scores(graph, "slimming")
    baselines_path = run_dir / "baselines.json"
    baseline_cache = json.loads(baselines_path.read_text()) if baselines_path.is_file() else {}
    members, files, studies = [], [], []
    for budget, target in zip(budgets, targets, strict=True):
        # 4a. baselines (scored once; cached for reruns)
        def on_budget(ratios: dict[str, float], b=budget, t=target) -> dict[str, int]:
            return project(graph, ratios, b.kind, t, min_ratio=s.min_ratio, round_to=s.round_to)

        uniform = on_budget({})
        allocation = threshold_ratios(graph, comparable, budget.kind, target,
                                               s.min_ratio)
        candidates = {"uniform": (uniform, signal), "l1": (uniform, "l1")}
        if slim_scores:
            slim_ratios = threshold_ratios(graph, slim_scores, budget.kind, target,
                                                    s.min_ratio)
            candidates["slimming"] = (on_budget(slim_ratios), "slimming")
        cached = baseline_cache.get(budget.slug, {})
        baselines = {}
        for name, (widths, importance) in candidates.items():
            entry = cached.get(name)
            if entry is None or entry["widths"] != widths:
                entry = {"widths": widths, "signal": importance,
                         "proxy_accuracy": search.scorer.score(widths, importance),
                         "flops": graph.flops(widths), "params": graph.params(widths)}
            baselines[name] = entry
        baseline_cache[budget.slug] = baselines
        atomic_write_json(baselines_path, baseline_cache)
        # 4b. the study
        study_name = f"{study_prefix}:{budget.slug}"
        seeds = [search.params_from_ratios(allocation),
                 search.params_from_ratios({g.name: 1.0 for g in graph.groups})]
        n_pert = min(8, max(0, trials // 4))
        seeds += [search.params_from_ratios(r) for r in
                  _perturbations(allocation, n_pert, opts.seed, s.min_ratio)]
        n_startup = min(len(seeds), trials)
        study, created = open_study(storage, study_name, opts.seed, n_startup)
        studies.append(study)
        if created:  # only the worker that created the study seeds it
            for params in seeds[:trials]:
                study.enqueue_trial(params, user_attrs={"seeded": True}, skip_if_exists=True)
        finished, _ = counts(study)
        title = f"find {budget.text} ({signal})"
        reporter.search_start(title, trials, min(finished, trials))

        def best_value(st=study) -> float | None:
            done = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            return max((t.value for t in done), default=None)

        ctx = multiprocessing.get_context("spawn")
        workers = [ctx.Process(target=_worker, args=(
            space, base_path, signal, data, opts, budget, target, storage_url, run_dir,
            study_name, trials, n_startup, find_opts.finetune_steps, opts.seed + k))
            for k in range(1, find_opts.jobs)]
        for w in workers:
            w.start()
        try:
            run_trials(study, search.objective(budget, target, find_opts.finetune_steps),
                       trials, on_trial=lambda n, bv=best_value: reporter.search_trial(n, bv()))
        finally:
            for w in workers:
                w.join()
            reporter.close()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:  # their unfinished trials were failed and retried: the study is complete
            logger.warning("%d local search worker(s) died (exit codes %s); their trials were "
                           "retried and the study is complete", len(failed), failed)
        # 5. the architectures to export
        member, member_files = _choose(space, budget, target, study, study_name, storage_url,
                                       signal, baselines, graph, base_path, sha, run_dir)
        members.append(member)
        files += member_files
    family = {"space": space.name, "signal": signal, "base": str(base_path),
              "base_sha256": sha, "trials": trials, "members": members}
    # 6. written once, by one of the workers sharing the studies
    fingerprint = hashlib.sha256(json.dumps(
        [[m["budget"], m["trial"], m["proxy_accuracy"], m["flops"], m["trials_done"]]
         for m in members]
    ).encode()).hexdigest()[:16]
    exported = claim_export(studies[0], run_dir, fingerprint)
    if exported:
        for path, spec in files:
            spec.save(path)
        atomic_write_json(run_dir / "family.json", family)
        mark_exported(studies[0], run_dir, fingerprint)
    else:
        logger.info("the specs were exported by another worker: %s",
                    studies[0].user_attrs.get("exported"))
    return family | {"run_dir": str(run_dir), "exported": exported}


def _choose(space, budget, target, study, study_name, storage_url, signal, baselines, graph,
            base_path, sha, run_dir) -> tuple[dict[str, Any], list[tuple[Path, ArchSpec]]]:
    """The budget's family member and its spec files (the best trial's, the baselines')."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = max(done, key=lambda t: (t.value, -t.number), default=None)
    choice = {"proxy_accuracy": best.value, "widths": best.user_attrs["widths"],
              "trial": best.number, "signal": signal} if best else None
    for name, b in baselines.items():  # never worse on the proxy than a baseline
        if choice is None or b["proxy_accuracy"] > choice["proxy_accuracy"]:
            choice = {"proxy_accuracy": b["proxy_accuracy"], "widths": b["widths"],
                      "trial": f"baseline:{name}", "signal": b["signal"]}
    assert choice is not None
    search_info = {
        "signal": choice["signal"], "proxy_accuracy": choice["proxy_accuracy"],
        "trial": choice["trial"], "study": study_name, "storage": redact(storage_url),
        "trials": len(done), "space": space.name, "space_path": space.path,
        "base_checkpoint": str(base_path), "base_checkpoint_sha256": sha,
        "baselines": {k: {"proxy_accuracy": v["proxy_accuracy"], "flops": v["flops"],
                          "params": v["params"]} for k, v in baselines.items()},
    }
    budget_info = {"kind": budget.kind, "target": target, "text": budget.text}

    def make(widths: dict[str, int], info: dict[str, Any]) -> ArchSpec:
        return ArchSpec.from_graph(graph, widths, model=space.model.name,
                                   model_args=space.model.args, budget=budget_info, search=info)

    spec = make(choice["widths"], search_info)
    files = [(run_dir / f"spec-{budget.slug}.json", spec)]
    # the baselines' architectures as specs too: the controls a from-scratch comparison trains
    baseline_specs = {}
    for name, b in baselines.items():
        info = search_info | {"signal": b["signal"], "proxy_accuracy": b["proxy_accuracy"],
                              "trial": f"baseline:{name}", "baseline": name}
        path = run_dir / "baselines" / f"spec-{budget.slug}-{name}.json"
        files.append((path, make(b["widths"], info)))
        baseline_specs[name] = str(path)
    member = {"budget": budget.text, "slug": budget.slug, "target": target,
              "spec": str(files[0][0]), "flops": spec.flops, "params": spec.params,
              "base_flops": spec.base_flops, "proxy_accuracy": choice["proxy_accuracy"],
              "trial": choice["trial"], "trials_done": len(done),
              "baselines": search_info["baselines"],
              "baseline_specs": baseline_specs}
    return member, files
