"""``ps.search``: the search in Python, on the user's own model, data or score function.

The same search as ``prunesearch find`` (baselines, seeded trials, TPE over keep ratios projected
onto the budget, the export decision, Optuna storages and resume), with the space's zoo model
and dataset replaced by the user's objects: a model already built (and trained, for the
``inherit`` objective), and either ``(train, val)`` datasets scored by the built-in objectives
or a ``score(model) -> float`` to maximise (a detection backbone, a custom loss, a metric other
than accuracy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from prunesearch.data.loader import BatchLoader
from prunesearch.engine.budget import Budget, parse_budgets
from prunesearch.engine.graph import ChannelGraph, trace
from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.find.baselines import budget_targets, score_baselines, seed_trials
from prunesearch.find.candidates import Candidates, Job, objective_settings, space_rungs
from prunesearch.find.find import Export, run_study, search_budget, study_name
from prunesearch.find.objectives import SGD, Feed, InheritScorer, ScratchScorer
from prunesearch.find.selection import export_once
from prunesearch.find.studies import storage_for
from prunesearch.find.user_objects import (
    BadScore,
    ScoreFunction,
    image_data,
    model_reference,
    weights_digest,
)
from prunesearch.progress import LogReporter, Reporter
from prunesearch.space import DataCfg, ModelCfg, SearchCfg, Space, TrainCfg
from prunesearch.spec import ArchSpec, package_versions
from prunesearch.training.loop import RunOptions, resolve_device
from prunesearch.training.runs import DataOptions
from prunesearch.vocab import GRANULARITIES, OBJECTIVES, SIGNALS, require

__all__ = ["SearchOptions", "SearchResult", "search"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOptions:
    """How ``ps.search`` searches; every field may also be given to it as a keyword.

    Attributes:
        objective: what scores a candidate: ``inherit`` (the pruned model with its inherited
            weights, BN recalibrated on the training data when there is some) or ``scratch``
            (with ``data``: a short training from scratch, successive halving; with
            ``score``: ``score`` receives an untrained model of the candidate's widths).
        signal: which channels a pruned model keeps: ``l1`` or ``slimming`` (BN |gamma|).
        trials: finished trials per budget (a resumed study runs up to this many in all).
        storage: an Optuna storage URL (``sqlite:///FILE``, ``postgresql://...``,
            ``journal:FILE``); default: ``OUT/study.db`` with ``out``, else in memory.
        study: the study names' prefix (one study per budget); default: from the model, its
            weights, signal and objective.
        seed: the sampler's seed.
        min_ratio, round_to, granularity: the widths searched: the least keep ratio, widths in
            multiples of ``round_to``, one ratio per ``group`` or per ``stage``.
        batch_size, eval_batch_size, calib_batches, lr: the built-in objectives' batches,
            BN calibration batches and the scratch objective's learning rate.
        scratch_confirm: finalists scored again with a second seed (scratch objective).
        device: ``auto``, ``cpu`` or ``cuda``.
        model_name, model_args: what the specs record as the model (default: its registered
            name, or ``"pkg.module:Class"`` called without arguments).
        name: the search's name in specs and study names.
    """

    objective: str = "inherit"
    signal: str = "l1"
    trials: int = 40
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    min_ratio: float = 0.1
    round_to: int = 1
    granularity: str = "group"
    batch_size: int = 128
    eval_batch_size: int = 500
    calib_batches: int = 20
    lr: float = 0.1
    scratch_confirm: int = 4
    device: str = "cpu"
    model_name: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    name: str = "python"


@dataclass
class SearchResult:
    """What ``ps.search`` found, by budget text (``"50%FLOPs"``).

    Attributes:
        specs: the exported spec of each budget (the best trial, or a baseline if none beat it).
        widths: each spec's widths.
        scores: each spec's score.
        baselines: per budget, each baseline's ``score``, ``widths``, ``flops`` and ``params``.
        studies: the Optuna study of each budget.
        run_dir: where the specs and ``family.json`` were written (``out``), or None.
    """

    specs: dict[str, ArchSpec]
    widths: dict[str, dict[str, int]]
    scores: dict[str, float]
    baselines: dict[str, dict[str, dict[str, Any]]]
    studies: dict[str, optuna.Study]
    run_dir: Path | None = None

    @property
    def spec(self) -> ArchSpec:
        """The first budget's spec (the only one of a single budget)."""
        return next(iter(self.specs.values()))

    @property
    def study(self) -> optuna.Study:
        """The first budget's study."""
        return next(iter(self.studies.values()))


def _options(options: SearchOptions | None, overrides: dict[str, Any]) -> SearchOptions:
    names = {f.name for f in dataclasses.fields(SearchOptions)}
    for key in overrides:
        if key not in names:
            raise PrunesearchError(f"ps.search: unknown option {key!r}; options: {sorted(names)}")
    opts = dataclasses.replace(options or SearchOptions(), **overrides)
    require("objective", opts.objective, OBJECTIVES)
    require("signal", opts.signal, SIGNALS)
    require("granularity", opts.granularity, GRANULARITIES)
    if opts.trials < 1:
        raise PrunesearchError(f"trials must be >= 1, got {opts.trials}")
    return opts


def _space(model: nn.Module, opts: SearchOptions, n_val: int) -> Space:
    """The search's settings as the space the CLI's machinery reads."""
    return Space(
        name=opts.name,
        model=ModelCfg(opts.model_name or model_reference(model), dict(opts.model_args)),
        data=DataCfg(
            dataset="python",
            val_size=n_val,
            batch_size=opts.batch_size,
            eval_batch_size=opts.eval_batch_size,
            augment=False,
        ),
        train=TrainCfg(epochs=1, lr=opts.lr),
        search=SearchCfg(
            signal=opts.signal,
            trials=opts.trials,
            min_ratio=opts.min_ratio,
            round_to=opts.round_to,
            granularity=opts.granularity,
            calib_batches=opts.calib_batches,
            objective=opts.objective,
            scratch_confirm=opts.scratch_confirm,
        ),
    )


def _candidates(
    graph: ChannelGraph, space: Space, score, data, device: torch.device
) -> tuple[Candidates, dict[str, Any]]:
    """The candidates' scorer (the user's score, or a built-in objective on the user's data),
    and the settings that define its scores."""
    s, d, objective = space.search, space.data, space.search.objective
    shape = tuple(graph.example_input.shape[1:])
    train = val = None
    if data is not None:
        if not isinstance(data, tuple | list) or len(data) != 2:
            raise PrunesearchError("data: give (train, val) datasets of (image, label) pairs")
        train, val = image_data(data[0], "data[0] (train)", shape), None
        if data[1] is not None:
            val = image_data(data[1], "data[1] (val)", shape)
    rungs = space_rungs(space, len(train)) if train is not None else None
    if score is not None:
        calib = []
        if train is not None and objective == "inherit":
            loader = BatchLoader(train, d.batch_size, train=True, augment=False, device=device)
            calib = [x for _, (x, _) in zip(range(s.calib_batches), loader, strict=False)]
        scorer: Any = ScoreFunction(
            graph,
            score,
            scratch=objective == "scratch",
            importance=s.signal,
            calib=calib,
            device=device,
        )
        name = getattr(score, "__qualname__", type(score).__name__)
        settings = {"objective": objective, "score_function": name}
    elif val is None:
        raise PrunesearchError(
            "ps.search needs a way to score candidates: score=callable, or data=(train, val)"
        )
    elif objective == "scratch":
        scorer = ScratchScorer(
            graph,
            train,
            val,
            rungs=rungs,
            sgd=SGD(lr=space.train.lr),
            feed=Feed(d.batch_size, d.eval_batch_size, device, channels_last=False),
        )
        settings = objective_settings(space, objective, rungs=rungs)
    else:
        scorer = InheritScorer(
            graph,
            train,
            val,
            importance=s.signal,
            calib_batches=s.calib_batches,
            feed=Feed(d.batch_size, d.eval_batch_size, device, channels_last=False),
        )
        settings = objective_settings(space, objective)
    candidates = Candidates.on_graph(
        space, graph, scorer, signal=s.signal, objective=objective, device=device, rungs=rungs
    )
    return candidates, settings


@contextlib.contextmanager
def _run_dir(out: str | Path | None) -> Iterator[Path]:
    """The run folder (``out``), or a temporary one for the search's own files."""
    if out is not None:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="prunesearch-search-") as tmp:
        yield Path(tmp)


def _storage(opts: SearchOptions, out: str | Path | None, run_dir: Path):
    if opts.storage is not None or out is not None:
        return storage_for(opts.storage, run_dir)
    return optuna.storages.InMemoryStorage(), ""


def search(
    model: nn.Module,
    example_input: torch.Tensor,
    budget: str,
    *,
    score: Callable[[nn.Module], float] | None = None,
    data: tuple[Any, Any] | None = None,
    out: str | Path | None = None,
    options: SearchOptions | None = None,
    reporter: Reporter | None = None,
    **settings: Any,
) -> SearchResult:
    """Searches the channel widths of ``model`` that score best within ``budget``.

    Args:
        model: the model to prune (not modified); trained, for the ``inherit`` objective.
        example_input: a batch the model takes, e.g. ``torch.zeros(1, 3, 32, 32)``.
        budget: as the CLI's ``--budget``: ``"50%FLOPs"``, ``"2.2Mparams"``, ``"4ms"``, or a
            family, ``"25%,50%FLOPs"``.
        score: ``score(model) -> float`` to maximise; it receives each candidate's model (see
            :attr:`SearchOptions.objective`). What it raises reaches the caller unchanged.
        data: ``(train, val)`` datasets of ``(image, label)`` pairs (e.g. ``TensorDataset``),
            images as the model takes them: the built-in objectives score candidates by
            validation accuracy; with ``score``, the training images recalibrate BN.
        out: a folder for the specs (``spec-<budget>.json``, ``baselines/``), ``family.json``
            and the default study storage; None writes nothing.
        options: the search's settings (:class:`SearchOptions`); ``**settings`` override
            its fields by name (``trials=10``, ``storage="sqlite:///s.db"``).
        reporter: receives progress (default: log lines on the ``prunesearch`` logger).

    Raises:
        PrunesearchError: bad options or budgets, data that does not fit the model, or a score
            function that returned something other than a finite number.
    """
    opts = _options(options, settings)
    reporter = reporter or LogReporter()
    budgets = parse_budgets(budget)
    device = resolve_device(opts.device)
    graph = trace(model, example_input)
    n_val = len(data[1]) if isinstance(data, tuple | list) and len(data) == 2 and data[1] else 0
    space = _space(model, opts, n_val)
    targets = budget_targets(space, budgets, device=device.type, reporter=reporter, graph=graph)
    candidates, scoring = _candidates(graph, space, score, data, device)
    candidates.use_budgets(budgets, device.type, reporter)
    sha = weights_digest(model)
    prefix = opts.study or (
        f"{opts.name}-{space.model.name}-{opts.signal}-{opts.objective}-"
        f"{'score' if score else 'data'}-{sha[:8]}"
    )
    with _run_dir(out) as run_dir:
        storage, url = _storage(opts, out, run_dir)
        where = _Where(storage, url, run_dir, prefix, sha, opts.seed, export=out is not None)
        try:
            return _search_budgets(candidates, budgets, targets, scoring, where, reporter)
        except BadScore as exc:
            raise PrunesearchError(str(exc)) from None


@dataclass(frozen=True)
class _Where:
    """Where a search's studies and files go."""

    storage: Any
    url: str
    run_dir: Path
    prefix: str
    sha: str
    seed: int
    export: bool


def _search_budgets(
    candidates: Candidates,
    budgets: list[Budget],
    targets: list[int],
    scoring: dict[str, Any],
    where: _Where,
    reporter: Reporter,
) -> SearchResult:
    """Each budget's baselines, study and choice; the specs written once when exporting."""
    run_dir, sha = where.run_dir, where.sha
    space, opts = candidates.space, candidates.space.search
    device = candidates.device.type
    baselines_path = run_dir / "baselines.json"
    cache = read_json(baselines_path, "baseline scores") if baselines_path.is_file() else {}
    result = SearchResult({}, {}, {}, {}, {}, run_dir if where.export else None)
    export = Export(scoring, sha, where.storage)
    model = Path(f"<{type(candidates.graph.model).__name__} object, sha256 {sha[:12]}>")
    members, files = [], []
    for budget, target in zip(budgets, targets, strict=True):
        baselines = score_baselines(candidates, budget, target, cache, scoring, reporter)
        atomic_write_json(baselines_path, cache)
        seeds = seed_trials(candidates, budget, target, opts.trials, where.seed)
        job = Job(
            space=space,
            base_path=model,
            signal=candidates.signal,
            objective=candidates.objective,
            finetune_steps=0,
            data=DataOptions(),
            opts=RunOptions(seed=where.seed, device=device),
            budget=budget,
            target=target,
            storage_url=where.url,
            run_dir=run_dir,
            study_name=study_name(where.prefix, budget, space, device),
            n_trials=opts.trials,
            n_startup=min(len(seeds), opts.trials),
        )
        member, member_files, study = search_budget(
            candidates, job, seeds, baselines, export, reporter, run=_run
        )
        choice_score = member["score"]
        members.append(member)
        files += member_files
        result.specs[budget.text] = member_files[0][1]
        result.widths[budget.text] = dict(member_files[0][1].widths)
        result.scores[budget.text] = choice_score
        result.baselines[budget.text] = {
            name: {k: b[k] for k in ("score", "widths", "flops", "params")}
            for name, b in baselines.items()
        }
        result.studies[budget.text] = study
    if where.export:
        family = {
            "space": space.name,
            "model": space.model.name,
            "signal": candidates.signal,
            "objective": candidates.objective,
            "base_sha256": sha,
            "trials": opts.trials,
            "members": members,
            "versions": package_versions(),
        }
        export_once(next(iter(result.studies.values())), run_dir, family, files)
    return result


def _run(candidates, job, seeds, n_jobs, storage, reporter, baselines) -> optuna.Study:
    """One budget's study, in this process; a bad score names its trial."""
    try:
        return run_study(candidates, job, seeds, 1, storage, reporter, baselines)
    except BadScore as exc:
        study = optuna.load_study(study_name=job.study_name, storage=storage)
        failed = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
        trial = f"trial {failed[-1]}" if failed else "a trial"
        raise BadScore(f"{job.budget.text}, {trial}: {exc}") from None
