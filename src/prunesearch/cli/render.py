"""What the CLI prints: rich tables and lines from the plain dicts the library returns, and the
``--json`` summary line. Nothing here computes a result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "compare_table",
    "console",
    "emit_json",
    "export_lines",
    "family_table",
    "fidelity_table",
    "find_table",
    "human",
    "print_latency",
    "print_names",
    "print_run",
    "report_lines",
    "show_table",
    "transfer_line",
]

console = Console()


def emit_json(data: dict[str, Any]) -> None:
    """The machine-readable summary: one JSON line, the last of stdout."""
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def human(n: float) -> str:
    """``1.23M``: a count in thousands, millions or billions."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def print_run(metrics: dict[str, Any], run_dir: Path, json_out: bool) -> None:
    """A training run's one-line summary (and its JSON)."""
    keys = ("kind", "space", "model", "epochs", "flops", "test_accuracy", "val_accuracy")
    keys += ("train_seconds", "images_per_s", "world_size", "device")
    s = {"run_dir": str(run_dir)} | {k: metrics.get(k) for k in keys}
    val = f", val {s['val_accuracy']:.4f}" if s["val_accuracy"] is not None else ""
    console.print(
        f"[bold]{s['kind']}[/] {s['model']} on {s['space']}: test accuracy "
        f"{s['test_accuracy']:.4f}{val} after {s['epochs']} epochs ({s['train_seconds']:.0f}s "
        f"training, {s['images_per_s']} img/s) -> {run_dir}"
    )
    if json_out:
        emit_json(s)


def find_table(result: dict[str, Any], space_name: str) -> None:
    """The searched architecture and the baselines of each budget, then the specs' paths."""
    timed = any("latency_ms" in m for m in result["members"])
    table = _table(
        f"find on {space_name}: signal {result['signal']}, objective "
        f"{result['objective']}, {result['trials']} trials per budget",
        ("budget", "architecture", "FLOPs", "params", "score (val)")
        + (("ms/image (measured)",) if timed else ()),
        left=("budget", "architecture"),
    )

    def cells(row: dict[str, Any]) -> tuple[str, ...]:
        ms = (f"{row['latency_ms']:.3f}" if "latency_ms" in row else "",) if timed else ()
        return human(row["flops"]), human(row["params"]), f"{row['score']:.4f}", *ms

    for m in result["members"]:
        table.add_row(m["budget"], f"searched ({m['trial']})", *cells(m))
        for name, b in m["baselines"].items():
            table.add_row("", f"baseline {name}", *cells(b))
    console.print(table)
    if result["exported"]:
        for m in result["members"]:
            console.print(f"spec: {m['spec']}")
    else:
        console.print(
            "specs: written by another worker of this study, or by an earlier run "
            f"into {result['run_dir']}"
        )


def show_table(summary: dict[str, Any], name: str) -> None:
    """A spec's widths against the base model, and its costs."""
    table = _table(
        f"{name}: {summary['model']} {tuple(summary['input_shape'])}",
        ("group", "base", "width", "keep"),
        left=("group",),
    )
    for row in summary["groups"]:
        keep = f"{row['keep_ratio']:.0%}"
        table.add_row(row["group"], str(row["base"]), str(row["width"]), keep)
    console.print(table)
    console.print(
        f"FLOPs {human(summary['flops'])} of {human(summary['base_flops'])} "
        f"({summary['flops_ratio']:.1%}, fvcore: 1 multiply-add = 1)   "
        f"params {human(summary['params'])} of {human(summary['base_params'])}"
    )


def print_latency(latency: dict[str, Any]) -> None:
    """Measured latency per model and memory format, and the speed-up against the base."""
    from prunesearch.latency.measure import latency_table

    table = _table(
        f"latency on {latency['device']}, {latency['threads']} thread(s): "
        "median ms per image (25th-75th percentile)",
        ("model", "memory format", *(f"batch {b}" for b in latency["batches"])),
        left=("model", "memory format"),
    )
    for row in latency_table(latency):
        table.add_row(*row)
    console.print(table)
    speed = ", ".join(
        f"{fmt} batch {b}: {x:.2f}x"
        for fmt, per in latency["speedup"].items()
        for b, x in per.items()
    )
    if speed:
        ratio = latency["base_flops"] / latency["flops"]
        console.print(f"base / spec time: {speed} (FLOPs: {ratio:.2f}x)")
    console.print(
        f"{latency['repeats']} repeats after {latency['warmup']} warm-up calls, "
        f"torch {latency['torch']}"
    )


def compare_table(result: dict[str, Any], space_name: str) -> None:
    """The paper's table: each row's test accuracy over the paired seeds, and its cost."""
    table = _table(
        f"compare on {space_name} at {result['budget']}: test accuracy over "
        f"seeds {result['seeds']}",
        ("row", "test acc (%)", "FLOPs", "params", "epochs", "compute", "score"),
        left=("row",),
    )
    for r in result["rows"]:
        table.add_row(
            r["row"] + (f" (= {r['same_as']})" if r["same_as"] else ""),
            f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}",
            human(r["flops"]),
            human(r["params"]),
            str(r["epochs"]),
            f"{r['compute_vs_base']:.2f}x",
            "" if r["score"] is None else f"{r['score']:.4f}",
        )
    console.print(table)
    console.print(f"-> {result['run_dir']}/compare.json, compare.md")


def fidelity_table(result: dict[str, Any], space_name: str) -> None:
    """Each objective's rank correlation with from-scratch accuracy, and the noise ceiling."""
    from prunesearch.experiments.fidelity import ci_text, headroom_text

    k = result["top_k"]
    table = _table(
        f"fidelity on {space_name} at {result['budget']}: "
        f"{len(result['archs'])} architectures x seeds {result['seeds']}",
        ("objective", "Kendall tau [95%]", "Spearman rho [95%]", "regret", f"top-{k} precision"),
        left=("objective",),
    )
    for name, r in result["objectives"].items():
        table.add_row(
            name,
            ci_text(r["kendall_tau"]),
            ci_text(r["spearman_rho"]),
            f"{100 * r['regret']:.2f} pts",
            f"{r[f'top{k}_precision']:.2f}",
        )
    if result.get("noise_ceiling"):
        c = result["noise_ceiling"]
        table.add_row(
            "noise ceiling", ci_text(c["kendall_tau"]), ci_text(c["spearman_rho"]), "", ""
        )
    console.print(table)
    if result.get("headroom"):
        console.print(headroom_text(result["headroom"]))
    console.print(f"-> {result['run_dir']}/fidelity.json, fidelity.md")


def report_lines(result: dict[str, Any]) -> None:
    console.print(f"{result['kind']} report: {result['markdown']}")
    for f in result["figures"]:
        console.print(f"  {f}")


def transfer_line(new: Any, to: str, path: Path) -> None:
    """A transferred spec's stage ratios and costs."""
    console.print(
        f"{to}: stage keep ratios {new.search['stage_ratios']} -> FLOPs {human(new.flops)} of "
        f"{human(new.base_flops)} ({new.flops / new.base_flops:.1%}), params "
        f"{human(new.params)} -> {path}"
    )


def export_lines(card: dict[str, Any]) -> None:
    """An export's file, verification and latency."""
    v, e, flops = card["verification"], card["export"], card["architecture"]["flops"]
    console.print(
        f"{e['format']} export of {card['model']} ({human(flops)} FLOPs, test "
        f"accuracy {card['accuracy']['test']:.4f}) -> {card['path']}"
    )
    console.print(
        f"verified with {v['runtime']} on {v['images_from']}: max |logit diff| "
        f"{v['max_abs_logit_diff']:.2e} (tolerance {v['tolerance']:.1e}), top-1 "
        f"agreement {v['top1_agreement']:.2%}"
    )
    if card["latency"] is None:
        console.print("latency: not measured (--no-latency)")
    else:
        print_latency(card["latency"])
    console.print(f"model card: {card['card']}, {card['card_json']}")


def family_table(result: dict[str, Any]) -> None:
    """A trained family: each member's size, speed, accuracy and cost, then the bill."""
    table = _table(
        f"family of {result['space']}: recipe {result['recipe']}, seed {result['seed']}",
        ("member", "FLOPs", "params", "ms/image", "test acc", "MACs", "x base", "x Scratch-B"),
        left=("member",),
    )
    b = result["base"]
    ms = f"{b['latency_ms']:.3f}" if b["latency_ms"] is not None else "-"
    acc = f"{b['test_accuracy']:.4f}" if b["test_accuracy"] is not None else "-"
    table.add_row(
        "base", human(b["flops"]), human(b["params"]), ms, acc,
        human(b["cost"]["train_macs"]), "1", "-",
    )  # fmt: skip
    controls = result.get("controls") or []
    for m in result["members"]:
        for r in [m, *(c for c in controls if c["of"] == m["member"])]:
            c = r["cost"]
            ms = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
            name = r["budget"] + (f" {r['control']}" if r.get("control") else "")
            table.add_row(
                name, human(r["flops"]), human(r["params"]), ms, f"{r['test_accuracy']:.4f}",
                human(c["total_macs"]), f"{c['x_base']:.3f}", f"{c['x_scratch_b']:.3f}",
            )  # fmt: skip
    console.print(table)
    t = result["total"]
    console.print(
        f"family: {human(t['total_macs'])} training MACs, {t['x_base']:.3f}x the base's "
        f"training, {t['x_scratch_b']:.3f}x Scratch-B of every member -> {result['out']}"
        "/family.md"
    )
    if controls:
        ct = result["controls_total"]
        console.print(
            "controls (rows '<budget> <baseline>'; not members, counted apart): "
            f"{human(ct['total_macs'])} training MACs, {ct['x_base']:.3f}x the base's training"
        )


def print_names(key: str, names: list[str], json_out: bool) -> None:
    for name in names:
        console.print(name)
    if json_out:
        emit_json({key: names})
