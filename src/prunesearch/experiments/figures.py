"""Drawing: a report's data (from :mod:`prunesearch.experiments.report`) as PNG figures and
markdown.

One ``*_figures(data, out)`` per kind of run folder: writes its PNGs into ``out`` and returns
their file names with the markdown lines that show them. Uses matplotlib's Agg backend: no
screen. Nothing here reads a run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["compare_figures", "fidelity_figures", "search_figures", "training_figures"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    _plt().close(fig)
    return path.name


def search_figures(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    """A search's figures (trials, history, width profiles) and its markdown summary."""
    plt = _plt()
    files, md = [], [f"# Search on {data['space']} (signal {data['signal']})", ""]
    for draw in (_trials_figure, _history_figure, _widths_figure):
        file, lines = draw(plt, data, out)
        files.append(file)
        md += lines
    return files, md


def _trials_figure(plt, data: dict[str, Any], out: Path) -> tuple[str, list[str]]:
    """Search score vs FLOPs: every trial, the Pareto front, the baselines, the export."""
    base = data["base_flops"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"uniform": "s", "slimming": "^", "l1": "v", "global": "D"}
    for k, m in enumerate(data["members"]):
        color = f"C{k}"
        ax.scatter(
            [t["flops"] / base for t in m["trials"]],
            [t["value"] for t in m["trials"]],
            s=12,
            alpha=0.5,
            color=color,
            label=f"{m['budget']} trials",
        )
        for name, b in m["baselines"].items():
            ax.scatter(
                b["flops"] / base,
                b["score"],
                marker=markers.get(name, "x"),
                s=60,
                edgecolor="black",
                color=color,
                label=f"{name} baseline" if k == 0 else None,
            )
        ax.scatter(
            m["chosen"]["flops"] / base,
            m["chosen"]["score"],
            marker="*",
            s=160,
            edgecolor="black",
            color=color,
            label="exported" if k == 0 else None,
        )
    front = data["pareto"]
    ax.plot(
        [p["flops"] / base for p in front],
        [p["value"] for p in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    ax.set_xlabel("FLOPs / base FLOPs")
    ax.set_ylabel("search score (held-out val)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    md = _trials_table(data["members"])
    return _save(fig, out / "trials.png"), [*md, ""]


def _trials_table(members: list[dict[str, Any]]) -> list[str]:
    """The exported architecture's and the baselines' scores per budget, as markdown."""
    names = list(members[0]["baselines"])
    md = [
        "## Proxy accuracy vs FLOPs",
        "",
        "![trials](trials.png)",
        "",
        "| budget | exported (trial) | score | "
        + " | ".join(f"{n} baseline" for n in names)
        + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for m in members:
        md.append(
            f"| {m['budget']} | {m['chosen']['trial']} | {m['chosen']['score']:.4f} | "
            + " | ".join(f"{b['score']:.4f}" for b in m["baselines"].values())
            + " |"
        )
    return md


def _history_figure(plt, data: dict[str, Any], out: Path) -> tuple[str, list[str]]:
    """Each trial's score and the best so far, per budget."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for k, m in enumerate(data["members"]):
        h = m["history"]
        ax.plot([r["number"] for r in h], [r["value"] for r in h], ".", color=f"C{k}", alpha=0.4)
        ax.plot(
            [r["number"] for r in h],
            [r["best"] for r in h],
            "-",
            color=f"C{k}",
            label=f"{m['budget']} best so far",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("search score")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return (
        _save(fig, out / "history.png"),
        ["## Optimisation history", "", "![history](history.png)", ""],
    )


def _widths_figure(plt, data: dict[str, Any], out: Path) -> tuple[str, list[str]]:
    """Channels per group, searched against the base and uniform: the paper's figures."""
    n = len(data["members"])
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False)
    for ax, m in zip(axes[:, 0], data["members"], strict=True):
        p = m["profile"]
        x = range(len(p["groups"]))
        ax.bar(x, p["base"], color="lightgray", label="base")
        ax.bar(x, p["width"], color="C0", alpha=0.8, label="searched")
        if p["uniform"]:
            ax.step(x, p["uniform"], where="mid", color="C3", label="uniform")
        ax.set_title(f"{m['budget']}: channels per group", fontsize=9)
        ax.set_xticks(list(x))
        ax.set_xticklabels(p["groups"], rotation=90, fontsize=6)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return (
        _save(fig, out / "widths.png"),
        ["## Width profiles (searched vs base and uniform)", "", "![widths](widths.png)", ""],
    )


def training_figures(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(data["epoch"], data[f"train_{metric}"], "o-", label="train")
        if any(v is not None for v in data[f"val_{metric}"]):
            ax.plot(data["epoch"], data[f"val_{metric}"], "o-", label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(data["title"])
    files = [_save(fig, out / "curves.png")]
    md = [
        f"# {data['title']}",
        "",
        f"Test accuracy {data['test_accuracy']:.4f} after "
        f"{data['epochs']} epochs ({data['train_seconds']} s of training).",
        "",
        "![curves](curves.png)",
        "",
    ]
    return files, md


def compare_figures(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    from prunesearch.experiments.compare import compare_markdown

    plt = _plt()
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    y = range(len(rows))
    ax.barh(
        list(y),
        [100 * r["mean"] for r in rows],
        xerr=[100 * r["std"] for r in rows],
        color=["gray"] + [f"C{k}" for k in range(len(rows) - 1)],
        capsize=3,
    )
    for k, r in enumerate(rows):
        ax.scatter(
            [100 * a for a in r["test_accuracy"]],
            [k] * len(r["test_accuracy"]),
            color="black",
            s=8,
            zorder=3,
        )
    ax.set_yticks(list(y))
    ax.set_yticklabels([r["row"] for r in rows], fontsize=8)
    lo = min(100 * min(r["test_accuracy"]) for r in rows)
    hi = max(100 * max(r["test_accuracy"]) for r in rows)
    ax.set_xlim(lo - (hi - lo + 1) * 0.5, hi + (hi - lo + 1) * 0.3)
    ax.set_xlabel("test accuracy (%), mean ± std, dots: seeds")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    files = [_save(fig, out / "compare.png")]
    md = [
        f"# Compare: {data['space']} at {data['budget']}",
        "",
        "![compare](compare.png)",
        "",
        compare_markdown(data["table"]),
    ]
    return files, md


def fidelity_figures(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    from prunesearch.experiments.fidelity import fidelity_markdown

    plt = _plt()
    files = []
    for panel in data["panels"]:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        pts = panel["points"]
        for origin, marker in (("baseline", "s"), ("spread:group", "o"), ("spread:profile", "^")):
            sel = [p for p in pts if p["origin"] == origin]
            if sel:
                ax.errorbar(
                    [p["score"] for p in sel],
                    [100 * p["mean"] for p in sel],
                    yerr=[
                        [100 * (p["mean"] - p["low"]) for p in sel],
                        [100 * (p["high"] - p["mean"]) for p in sel],
                    ],
                    fmt=marker,
                    ms=4,
                    capsize=2,
                    label=origin,
                )
        for p in pts:
            if p["origin"] == "baseline":
                ax.annotate(p["arch"], (p["score"], 100 * p["mean"]), fontsize=7)
        tau = panel["stats"]["kendall_tau"]
        ax.set_title(
            f"{panel['objective']}: Kendall tau {tau['value']:+.2f} "
            f"[{tau['low']:+.2f}, {tau['high']:+.2f}]",
            fontsize=9,
        )
        ax.set_xlabel(f"{panel['objective']} score (validation split)")
        ax.set_ylabel("from-scratch test accuracy (%), seed range")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        files.append(_save(fig, out / f"fidelity-{panel['objective']}.png"))
    md = [f"# Fidelity: {data['space']} at {data['budget']}", ""]
    md += [f"![{f}]({f})" for f in files] + ["", fidelity_markdown(data["table"])]
    return files, md
