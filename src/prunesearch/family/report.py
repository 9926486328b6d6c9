"""The family report: its data (``family.json``), the figure's data, the figure
(``family.png``) and the table (``family.md``).

The data of the figure is computed apart from the drawing (:func:`figure_data`), so that it is
tested; :func:`draw_figure` only draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError, edited_file
from prunesearch.fileio import atomic_write_text, read_json

__all__ = [
    "FAMILY_RUN_FORMAT",
    "draw_figure",
    "figure_data",
    "latency_ms",
    "markdown",
    "member_row",
    "render_family_report",
    "scratch_b_points",
    "trained_family",
]

FAMILY_RUN_FORMAT = "prunesearch.trained-family/v1"


def latency_ms(card: dict[str, Any] | None, model: str = "spec") -> float | None:
    """Milliseconds per image at batch 1 in the faster memory format, from an export's card
    (``model``: ``spec`` or its unpruned ``base``); None when not measured."""
    rows = ((card or {}).get("latency") or {}).get("rows") or []
    times = [r["median_ms_per_image"] for r in rows if r["model"] == model and r["batch"] == 1]
    return min(times) if times else None


def member_row(
    metrics: dict[str, Any], cost: dict[str, Any], card: dict[str, Any] | None, where: Path
) -> dict[str, Any]:
    """A member's row of the report: what it is, how good, how fast, what it cost."""
    spec = metrics["spec"]
    family = metrics.get("family") or {}
    return {
        "member": where.name,
        "budget": (spec.get("budget") or {}).get("text") or family.get("budget"),
        "flops": spec["flops"],
        "params": spec["params"],
        "latency_ms": latency_ms(card),
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": metrics.get("val_accuracy"),
        "recipe": metrics.get("kind"),
        "init": metrics.get("init") or family.get("init") or {"from": "scratch"},
        "cost": cost,
        "run_dir": str(where),
        "export": None if card is None else card.get("path"),
        "card": None if card is None else card.get("card"),
        "verified": None if card is None else card["verification"]["passed"],
    }


def scratch_b_points(folders: list[Path], skip: Path) -> list[dict[str, Any]]:
    """The members of the Scratch-B families trained from the same find run
    (``family-scratch-b-s*`` folders among ``folders``' children; ``skip``: this run)."""
    points, seen = [], set()
    for parent in folders:
        for path in sorted(parent.glob("family-scratch-b-s*/family.json")):
            if path.parent.resolve() == skip.resolve() or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            data = read_json(path, "family report")
            if data.get("format") != FAMILY_RUN_FORMAT:
                continue
            points += [
                {k: m.get(k) for k in ("budget", "flops", "params", "test_accuracy", "latency_ms")}
                | {"seed": data.get("seed"), "folder": str(path.parent)}
                for m in data.get("members") or []
            ]
    return points


def figure_data(report: dict[str, Any]) -> dict[str, Any]:
    """The figure's points: accuracy against MFLOPs, against parameters (and against ms per
    image where measured) for the members (in FLOPs order), the controls (``(x, y, budget,
    baseline)``: each drawn in its member's colour), the base and any Scratch-B members."""
    members = sorted(report["members"], key=lambda m: m["flops"])
    controls = report.get("controls") or []
    base = report["base"]

    def pts(rows, x_key: str, scale: float, *keys: str):
        return [
            (r[x_key] / scale, r["test_accuracy"], *(r.get(k) for k in keys))
            for r in rows
            if r.get(x_key) is not None and r.get("test_accuracy") is not None
        ]

    def panel(x_key: str, scale: float) -> dict[str, Any] | None:
        if not pts(members, x_key, scale):
            return None
        base_pt = pts([base], x_key, scale, "budget")
        return {
            "members": pts(members, x_key, scale, "budget"),
            "controls": pts(controls, x_key, scale, "budget", "control"),
            "base": base_pt[0] if base_pt else None,
            "scratch_b": pts(report.get("scratch_b") or [], x_key, scale, "budget"),
        }

    return {
        "title": f"{report['space']}: {report['recipe']} family (seed {report['seed']})",
        "budgets": [m["budget"] for m in members],  # colour i: budget i, member and controls
        "panels": {
            name: p
            for name, p in (
                ("MFLOPs (fvcore MACs)", panel("flops", 1e6)),
                ("parameters (millions)", panel("params", 1e6)),
                ("latency, ms per image (batch 1)", panel("latency_ms", 1.0)),
            )
            if p is not None
        },
    }


CONTROL_MARKERS = ("^", "s", "v", "D", "P", "X")


def _draw_panel(ax, p: dict[str, Any], budgets: list[str]) -> None:
    """One panel: the members' curve (each budget its colour), the controls in their member's
    colour with a marker per baseline, Scratch-B points and the base."""
    colour = {b: f"C{i % 10}" for i, b in enumerate(budgets)}
    xs, ys, _ = zip(*p["members"], strict=True)
    ax.plot(xs, ys, "-", color="0.6", zorder=1)
    for x, y, budget in p["members"]:
        ax.scatter([x], [y], marker="o", color=colour.get(budget, "C0"), zorder=3)
        ax.annotate(budget, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter([], [], marker="o", color="0.3", label="searched members")
    names = list(dict.fromkeys(c[3] for c in p["controls"]))
    for k, name in enumerate(names):
        marker = CONTROL_MARKERS[k % len(CONTROL_MARKERS)]
        for x, y, budget, _ in (c for c in p["controls"] if c[3] == name):
            ax.scatter([x], [y], marker=marker, color=colour.get(budget, "C0"), zorder=3)
        ax.scatter([], [], marker=marker, color="0.3", label=f"{name} (control)")
    if p["scratch_b"]:
        sx, sy, _ = zip(*p["scratch_b"], strict=True)
        ax.scatter(sx, sy, marker="x", color="k", label="Scratch-B", zorder=3)
    if p["base"]:
        ax.scatter([p["base"][0]], [p["base"][1]], marker="*", s=150, color="k", label="base")


def draw_figure(data: dict[str, Any], path: Path) -> Path:
    """Draws :func:`figure_data` into a PNG (written whole: a temporary file, renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = data["panels"]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4.2))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (xlabel, p) in zip(axes, panels.items(), strict=False):
        _draw_panel(ax, p, data.get("budgets") or [])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(data["title"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _table_row(m: dict[str, Any]) -> str:
    """A member's (or a control's) line of the table."""
    c = m["cost"]
    recipe = m["recipe"] + (f" (control: {m['control']})" if m.get("control") else "")
    return (
        f"| {m['member']} | {m['budget']} | {m['flops']:,} | {m['params']:,} | "
        f"{_num(m['latency_ms'], '.3f')} | {m['test_accuracy']:.4f} | {recipe} | "
        f"{c['total_macs']:.3g} | {c['x_base']:.3f} | {c['x_scratch_b']:.3f} | "
        f"{_num(c['train_seconds'], '')} |"
    )


def markdown(report: dict[str, Any]) -> str:
    """``family.md``: the table of members (and the base), the bill, the figure."""
    b, total = report["base"], report["total"]
    head = "| member | budget | FLOPs | params | latency ms | test acc | recipe | training MACs"
    head += " | x base | x Scratch-B | wall s |"
    lines = [
        f"# Family of {report['space']} ({report['recipe']}, seed {report['seed']})",
        "",
        f"From the find run `{report['find_run']}`; FLOPs are fvcore MACs (1 multiply-add = 1); "
        f"training MACs = 3 x forward MACs x images seen (+ the teacher's forward for "
        "distillation); latency measured at export (1 thread, batch 1, faster memory format).",
        "",
        head,
        "|" + " --- |" * 11,
        f"| base | - | {b['flops']:,} | {b['params']:,} | {_num(b['latency_ms'], '.3f')} | "
        f"{_num(b['test_accuracy'], '.4f')} | base, {b['epochs']} epoch(s) | "
        f"{b['cost']['train_macs']:.3g} | 1 | - | {_num(b['cost']['train_seconds'], '')} |",
    ]
    controls = report.get("controls") or []
    for m in report["members"]:
        lines.append(_table_row(m))
        lines += [_table_row(c) for c in controls if c["of"] == m["member"]]
    lines += [
        f"| **family** | | | | | | | {total['total_macs']:.3g} | {total['x_base']:.3f} | "
        f"{_num(total['x_scratch_b'], '.3f')} | {_num(total['train_seconds'], '')} |",
        "",
        f"The family's training cost {total['x_base']:.3f}x one training of the base "
        f"({b['cost']['train_macs']:.3g} MACs, images from {b['cost']['images_from']}); "
        f"Scratch-B of every member would cost {total['scratch_b_macs']:.3g}.",
        "",
    ]
    if controls:
        ct = report["controls_total"]
        names = ", ".join(dict.fromkeys(c["control"] for c in controls))
        lines += [
            f"Controls ({names}: the find run's baseline allocations at each budget, trained by "
            f"the same recipe, beside their member) are not members: their training, "
            f"{ct['total_macs']:.3g} MACs ({ct['x_base']:.3f}x the base's), is counted apart "
            "from the family's total.",
            "",
        ]
    if report.get("figure"):
        lines += [f"![accuracy against FLOPs and latency]({report['figure']})", ""]
    return "\n".join(lines)


def trained_family(run_dir: Path) -> dict[str, Any] | None:
    """The family.json of a folder written by ``prunesearch family``; None for any other
    folder (a find run's family.json is a family of specs, read by ``report`` as a search)."""
    path = run_dir / "family.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path, "family")
    except PrunesearchError:
        return None  # damaged: told by the reader of a find run's family.json
    return data if isinstance(data, dict) and data.get("format") == FAMILY_RUN_FORMAT else None


def render_family_report(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """``prunesearch report`` on a trained family: its table (``report.md``) and figure drawn
    again from its family.json into ``out`` (default ``<run>/report``); their paths."""
    run_dir = Path(run_dir)
    report = trained_family(run_dir)
    if report is None:
        raise PrunesearchError(f"{run_dir}: not a folder written by prunesearch family")
    out = Path(out) if out else run_dir / "report"
    try:
        data, md = figure_data(report), markdown(report)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise edited_file(run_dir / "family.json", exc) from None
    figure = draw_figure(data, out / "family.png")
    atomic_write_text(out / "report.md", md)
    return {
        "kind": "family",
        "run_dir": str(run_dir),
        "out": str(out),
        "figures": [str(figure)],
        "markdown": str(out / "report.md"),
    }
