"""What ``find`` exports per budget: the choice among the trials and baselines, and its specs.

The best-scoring architecture is never worse on the objective than a baseline; under the
scratch objective the finalists are scored again with a second seed (the winner's curse); under
a latency budget the choice is timed for real and re-projected until it meets the budget. The
specs (the choice's and the baselines') and ``family.json`` are written once, by the worker
that wins the study's export claim.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import optuna

from prunesearch.engine.budget import project
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.find.candidates import Candidates, Job
from prunesearch.find.studies import HOST, claim_export, mark_exported, redact
from prunesearch.latency.budgets import latency_record, measured_within
from prunesearch.paths import CONFIG, FAMILY
from prunesearch.spec import ArchSpec
from prunesearch.training.runs import recorded_source

__all__ = ["already_exported", "best", "export_once", "measured", "member_and_files"]

logger = logging.getLogger(__name__)

CONFIRM_SEED = 1  # the finalists' second opinion: another init and data order


def best(
    candidates: Candidates,
    study: optuna.Study,
    baselines: dict[str, dict[str, Any]],
    job: Job,
    confirm_path: Path,
) -> dict[str, Any]:
    """The architecture to export: the best-scoring of the completed trials and the baselines
    (never worse on the objective than a baseline). Under the scratch objective the top
    ``scratch_confirm`` finalists are scored again with a second seed and chosen by their mean:
    the best of 40 noisy scores is mostly luck (the winner's curse), two seeds halve its
    variance."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    pool = [
        {
            "score": t.value,
            "widths": t.user_attrs["widths"],
            "trial": t.number,
            "signal": job.signal,
        }
        | ({"round_to": t.params["round_to"]} if "round_to" in t.params else {})
        for t in sorted(done, key=lambda t: (-t.value, t.number))
    ]
    pool += [
        {
            "score": b["score"],
            "widths": b["widths"],
            "trial": f"baseline:{name}",
            "signal": b["signal"],
        }
        for name, b in baselines.items()
    ]
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
            table[key] = candidates.scorer.score(f["widths"], seed=CONFIRM_SEED)
            atomic_write_json(confirm_path, cache)
            logger.info(
                "finalist %s: scores %.4f (search), %.4f (second seed)",
                f["trial"],
                f["score"],
                table[key],
            )
        f["scores"] = [f["score"], table[key]]
        f["score"] = statistics.fmean(f["scores"])
    return max(finalists[:k], key=lambda f: f["score"]) | {
        "finalists": [{"trial": f["trial"], "scores": f["scores"]} for f in finalists[:k]]
    }


def measured(
    candidates: Candidates,
    job: Job,
    choice: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    memo_path: Path,
) -> dict[str, Any]:
    """A latency budget's choice, timed for real: re-projected (and scored again) until the
    measured latency meets the budget; the baselines timed too (controls, never changed).

    Done once per study and choice: ``memo_path`` (measured.json) keeps the outcome, so a
    finished search run again (``compare`` resumed, a worker joining late) exports the same
    spec rather than timing it again and perhaps re-projecting it."""
    memo = read_json(memo_path, "latency measurements") if memo_path.is_file() else {}
    key = json.dumps(
        [job.study_name, choice["widths"], {k: b["widths"] for k, b in sorted(baselines.items())}],
        sort_keys=True,
    )
    if key not in memo:
        memo[key] = _measure_choice(candidates, job, choice, baselines)
        atomic_write_json(memo_path, memo)
    done = memo[key]
    for name, b in baselines.items():
        b["latency"] = done["baselines"][name]
    return choice | done["choice"]


def _measure_choice(
    candidates: Candidates, job: Job, choice: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    graph, s, device = candidates.graph, job.space.search, candidates.device.type
    round_to = choice.get("round_to", s.round_to)
    ratios = {g.name: choice["widths"][g.name] / g.size for g in graph.groups}

    def reproject(aim: int) -> dict[str, int]:
        return project(graph, ratios, "latency", aim, min_ratio=s.min_ratio, round_to=round_to)

    widths, record = measured_within(
        graph,
        candidates.latency_models,
        choice["widths"],
        job.target,
        job.space,
        device=device,
        reproject=reproject,
    )
    timed = {
        name: latency_record(
            graph, candidates.latency_models, b["widths"], job.target, job.space, device=device
        )
        for name, b in baselines.items()
    }
    if widths == choice["widths"]:
        return {"choice": {"latency": record}, "baselines": timed}
    logger.info("scoring the re-projected architecture")
    return {
        "choice": {
            "widths": widths,
            "latency": record,
            "score": candidates.score(widths),
            "score_before_reprojection": choice["score"],
        },
        "baselines": timed,
    }


def _data_source(base_path: Path) -> dict[str, Any] | None:
    """The data source recorded in the base's run folder (none for a base given as a file
    alone, or a model searched in Python)."""
    if not Path(base_path).is_file():
        return None
    recorded = recorded_source(Path(base_path).parent / CONFIG)
    if recorded is None:
        return None
    return {k: recorded.get(k) for k in ("kind", "path", "callable", "digest") if k in recorded}


def _search_info(
    job: Job,
    choice: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    sha: str,
    settings: dict[str, Any],
    n_done: int,
) -> dict[str, Any]:
    """A spec's provenance: how the search that chose it ran, and its baselines' scores."""
    space = job.space
    return {
        "signal": choice["signal"],
        "objective": job.objective,
        "objective_settings": settings,
        "score": choice["score"],
        "trial": choice["trial"],
        "study": job.study_name,
        "storage": redact(job.storage_url),
        "trials": n_done,
        "granularity": space.search.granularity,
        "space": space.name,
        "space_path": space.path,
        "base_checkpoint": str(
            Path(job.base_path).resolve() if Path(job.base_path).is_file() else job.base_path
        ),
        "base_checkpoint_sha256": sha,
        "base": job.base_info,
        # the user's own data the base was trained on (kind, absolute path, digest)
        "data_source": _data_source(job.base_path),
        "baselines": {
            k: {"score": v["score"], "flops": v["flops"], "params": v["params"]}
            | ({"latency_ms": v["latency"]["measured_ms"]} if "latency" in v else {})
            for k, v in baselines.items()
        },
    } | ({"finalists": choice["finalists"]} if "finalists" in choice else {})


def member_and_files(
    job: Job,
    choice: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    graph,
    sha: str,
    settings: dict[str, Any],
    n_done: int,
) -> tuple[dict[str, Any], list[tuple[Path, ArchSpec]]]:
    """The budget's family member and its spec files (the chosen one's, the baselines')."""
    space, budget = job.space, job.budget
    search_info = _search_info(job, choice, baselines, sha, settings, n_done)
    budget_info = {"kind": budget.kind, "target": job.target, "text": budget.text}

    def make(
        widths: dict[str, int], info: dict[str, Any], latency: dict[str, Any] | None = None
    ) -> ArchSpec:
        budget = budget_info | ({"latency": latency} if latency else {})
        return ArchSpec.from_graph(
            graph,
            widths,
            model=space.model.name,
            model_args=space.model.args,
            budget=budget,
            search=info,
        )

    spec = make(choice["widths"], search_info, choice.get("latency"))
    files = [(job.run_dir / f"spec-{budget.slug}.json", spec)]
    # the baselines' architectures as specs too: the controls a from-scratch comparison trains
    baseline_specs = {}
    for name, b in baselines.items():
        info = search_info | {
            "signal": b["signal"],
            "score": b["score"],
            "trial": f"baseline:{name}",
            "baseline": name,
        }
        path = job.run_dir / "baselines" / f"spec-{budget.slug}-{name}.json"
        files.append((path, make(b["widths"], info, b.get("latency"))))
        baseline_specs[name] = str(path)
    member = {
        "budget": budget.text,
        "slug": budget.slug,
        "target": job.target,
        "spec": str(files[0][0]),
        "flops": spec.flops,
        "params": spec.params,
        "base_flops": spec.base_flops,
        "score": choice["score"],
        "trial": choice["trial"],
        "trials_done": n_done,
        "baselines": search_info["baselines"],
        "baseline_specs": baseline_specs,
    }
    if "latency" in choice:
        member["latency_ms"] = choice["latency"]["measured_ms"]
    return member, files


def export_once(
    study: optuna.Study, run_dir: Path, family: dict[str, Any], files: list[tuple[Path, ArchSpec]]
) -> bool:
    """Writes the specs and family.json once, by one of the workers sharing the studies."""
    fingerprint = hashlib.sha256(
        json.dumps(
            [
                [m["budget"], m["trial"], m["score"], m["flops"], m["trials_done"]]
                for m in family["members"]
            ]
        ).encode()
    ).hexdigest()[:16]
    if not claim_export(study, run_dir, fingerprint):
        logger.info(already_exported(study.user_attrs.get("exported") or {}, run_dir))
        return False
    for path, spec in files:
        spec.save(path)
    atomic_write_json(run_dir / FAMILY, _relative_to(family, run_dir))
    mark_exported(study, run_dir, fingerprint)
    return True


def _relative_to(family: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """family.json's spec paths relative to the run folder (readers resolve them against it),
    so that the folder reads the same from any directory and after it is copied."""

    def rel(path: str) -> str:
        return str(Path(path).relative_to(run_dir))

    return family | {
        "members": [
            m
            | {
                "spec": rel(m["spec"]),
                "baseline_specs": {k: rel(v) for k, v in m["baseline_specs"].items()},
            }
            for m in family["members"]
        ]
    }


def already_exported(exported: dict[str, Any], run_dir: Path) -> str:
    """What a run that has nothing new to export says, in words."""
    where = exported.get("run_dir")
    if where == str(run_dir) and exported.get("host") == HOST:
        return f"nothing new to export: the specs of these trials are already in {run_dir}"
    at = f" on {exported['host']}" if exported.get("host") not in (None, HOST) else ""
    return f"nothing to export here: another worker{at} wrote these specs into {where}"
