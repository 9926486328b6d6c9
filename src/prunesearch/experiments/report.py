"""`prunesearch report`: a run folder's data as plain dicts and lists, then its figures.

``*_data(run_dir)`` reads a run folder (search, training, compare, fidelity) into numbers;
:func:`render_report` picks the kind, has :mod:`prunesearch.experiments.figures` draw it and writes
``report.md``. The split keeps the numbers testable without looking at pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError, edited_file
from prunesearch.experiments import figures
from prunesearch.fileio import atomic_write_text, read_json
from prunesearch.paths import CONFIG, FAMILY, METRICS
from prunesearch.spec import ArchSpec

__all__ = [
    "compare_data",
    "fidelity_data",
    "pareto_front",
    "render_report",
    "run_kind",
    "search_data",
    "training_data",
    "width_profile",
]


def run_kind(run_dir: Path) -> str:
    """``search`` (family.json), ``compare`` (compare.json), ``fidelity`` (fidelity.json) or
    ``training`` (metrics.json)."""
    for name, kind in (
        ("compare.json", "compare"),
        ("fidelity.json", "fidelity"),
        (FAMILY, "search"),
        (METRICS, "training"),
    ):
        if (run_dir / name).is_file():
            return kind
    raise PrunesearchError(
        f"{run_dir}: not a prunesearch run folder (no family.json, "
        "compare.json, fidelity.json or metrics.json)"
    )


def in_run(run_dir: Path, path: str) -> Path:
    """A path that a run folder's file records: relative to the folder (what find writes), or,
    in folders written before, relative to the directory find ran in, or absolute."""
    inside = run_dir / path
    return inside if inside.exists() or not Path(path).exists() else Path(path)


def _read_json(path: Path) -> Any:
    return read_json(path, path.name, expect=None)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when minimising x (cost) and maximising y
    (accuracy), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def width_profile(spec: ArchSpec, uniform: ArchSpec | None = None) -> dict[str, Any]:
    """Per-group keep ratios of a spec (and of the uniform spec at the same budget), in forward
    order: the paper's architecture figures."""
    names = list(spec.base_widths)
    return {
        "groups": names,
        "base": [spec.base_widths[n] for n in names],
        "width": [spec.widths[n] for n in names],
        "uniform": [uniform.widths[n] for n in names] if uniform else None,
    }


def _study_trials(run_dir: Path, config: dict[str, Any], study_name: str) -> list[dict[str, Any]]:
    import optuna

    from prunesearch.find.studies import storage_for

    url = config.get("find", {}).get("storage")  # None: the run folder's own study.db
    if url is not None and ("***" in url or "=redacted" in url):
        raise PrunesearchError(
            f"{run_dir}: the study's storage URL is not recorded in full; "
            "reports read the default SQLite or journal storages"
        )
    if url is None and not (run_dir / "study.db").is_file():
        raise PrunesearchError(f"{run_dir}: its study.db is gone")
    storage, _ = storage_for(url, run_dir)
    study = optuna.load_study(study_name=study_name, storage=storage)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        rows.append(
            {
                "number": t.number,
                "value": t.value,
                "flops": t.user_attrs.get("flops"),
                "params": t.user_attrs.get("params"),
                "seeded": bool(t.user_attrs.get("seeded")),
            }
        )
    return rows


def search_data(run_dir: Path) -> dict[str, Any]:
    """Every completed trial of every budget (proxy accuracy vs FLOPs), the Pareto front over
    them, the baselines, the best-so-far history and the width profile of each spec."""
    family = _read_json(run_dir / FAMILY)
    config = _read_json(run_dir / CONFIG) if (run_dir / CONFIG).is_file() else {}
    prefix = config.get("find", {}).get("study")
    members = []
    for m in family["members"]:
        spec_path = in_run(run_dir, m["spec"])
        spec = ArchSpec.load(spec_path, check_model=False)  # widths only: no model import
        study = (spec.search or {}).get("study") or f"{prefix}:{m.get('slug')}"
        trials = _study_trials(run_dir, config, study)
        best, history = float("-inf"), []
        for t in sorted(trials, key=lambda t: t["number"]):
            best = max(best, t["value"])
            history.append({"number": t["number"], "value": t["value"], "best": best})
        uniform_path = (m.get("baseline_specs") or {}).get("uniform")
        uniform_path = in_run(run_dir, uniform_path) if uniform_path else None
        uniform = (
            ArchSpec.load(uniform_path, check_model=False)
            if uniform_path and uniform_path.is_file()
            else None
        )
        members.append(
            {
                "budget": m["budget"],
                "target": m["target"],
                "spec": str(spec_path),
                "chosen": {"flops": m["flops"], "score": m["score"], "trial": m["trial"]},
                "baselines": m["baselines"],
                "trials": trials,
                "history": history,
                "profile": width_profile(spec, uniform),
            }
        )
    points = [(t["flops"], t["value"]) for m in members for t in m["trials"]]
    flat = [(m["budget"], t["number"]) for m in members for t in m["trials"]]
    front = [
        {"budget": flat[i][0], "number": flat[i][1], "flops": points[i][0], "value": points[i][1]}
        for i in pareto_front(points)
    ]
    return {
        "kind": "search",
        "space": family["space"],
        "signal": family["signal"],
        "base_flops": family["members"][0]["base_flops"],
        "members": members,
        "pareto": front,
    }


_MAIN_FILE = {
    "search": FAMILY,
    "training": METRICS,
    "compare": "compare.json",
    "fidelity": "fidelity.json",
}


def training_data(run_dir: Path) -> dict[str, Any]:
    """Per-epoch loss and accuracy curves of a training run."""
    metrics = _read_json(run_dir / METRICS)
    h = metrics["history"]
    if not isinstance(h, list) or not h:
        raise ValueError("no epochs in its history")
    for key in ("test_accuracy", "epochs", "train_seconds"):
        if not isinstance(metrics[key], (int, float)):
            raise TypeError(f"{key} is not a number")
    return {
        "kind": "training",
        "title": f"{metrics.get('kind', 'train')} {metrics.get('model')} on {metrics.get('space')}",
        "epoch": [r["epoch"] for r in h],
        "train_loss": [r["train_loss"] for r in h],
        "train_accuracy": [r["train_accuracy"] for r in h],
        "val_loss": [r.get("val_loss") for r in h],
        "val_accuracy": [r.get("val_accuracy") for r in h],
        "test_accuracy": metrics.get("test_accuracy"),
        "epochs": metrics.get("epochs"),
        "train_seconds": metrics.get("train_seconds"),
    }


def compare_data(run_dir: Path) -> dict[str, Any]:
    """The compare table's rows: mean and std of test accuracy per row."""
    result = _read_json(run_dir / "compare.json")
    return {
        "kind": "compare",
        "space": result["space"],
        "budget": result["budget"],
        "seeds": result["seeds"],
        "rows": [
            {
                "row": r["row"],
                "mean": r["mean"],
                "std": r["std"],
                "flops": r["flops"],
                "test_accuracy": r["test_accuracy"],
            }
            for r in result["rows"]
        ],
        "table": result,
    }


def fidelity_data(run_dir: Path) -> dict[str, Any]:
    """Per objective, the points (objective score, mean from-scratch accuracy, seed range) of
    every architecture, with the objective's statistics."""
    result = _read_json(run_dir / "fidelity.json")
    panels = []
    for name, stats in result["objectives"].items():
        points = [
            {
                "arch": a["name"],
                "origin": a["origin"],
                "score": a["scores"][name],
                "mean": a["mean"],
                "low": min(a["test_accuracy"]),
                "high": max(a["test_accuracy"]),
            }
            for a in result["archs"]
        ]
        panels.append({"objective": name, "stats": stats, "points": points})
    return {
        "kind": "fidelity",
        "space": result["space"],
        "budget": result["budget"],
        "panels": panels,
        "table": result,
    }


def render_report(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Writes the figures and report.md of a run folder; returns their paths."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    out = Path(out) if out else run_dir / "report"
    collect = {
        "search": search_data,
        "training": training_data,
        "compare": compare_data,
        "fidelity": fidelity_data,
    }[kind]
    try:
        data = collect(run_dir)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        # the run folder's files are input too: edited or damaged, they are an error naming
        # the file, not a traceback (nothing is drawn before they are all read)
        raise edited_file(run_dir / _MAIN_FILE[kind], exc) from None
    draw = {
        "search": figures.search_figures,
        "training": figures.training_figures,
        "compare": figures.compare_figures,
        "fidelity": figures.fidelity_figures,
    }[kind]
    files, md = draw(data, out)
    atomic_write_text(out / "report.md", "\n".join(md))
    return {
        "kind": kind,
        "run_dir": str(run_dir),
        "out": str(out),
        "figures": [str(out / f) for f in files],
        "markdown": str(out / "report.md"),
    }
