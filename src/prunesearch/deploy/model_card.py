"""An exported model's card: ``model.json`` (:func:`card_data`, the data) and ``MODEL.md``
(:func:`render_card`, the same as Markdown): the architecture and its cost, accuracy, recipe,
preprocessing, search provenance, the export's verification, measured latency and, for a family
member, its training cost."""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prunesearch.deploy.trained_run import TrainedRun
from prunesearch.latency.measure import latency_table
from prunesearch.spec import package_versions

__all__ = ["CARD_FORMAT", "card_data", "dataset_text", "preprocessing", "render_card"]


CARD_FORMAT = "prunesearch.model-card/v1"


def dataset_text(dataset: Any) -> str:
    """A space's ``data.dataset`` in words: the built-in name, or ``folder /abs/path``."""
    if isinstance(dataset, dict):
        kind = next((k for k in ("folder", "arrays", "callable") if k in dataset), "?")
        return f"{kind} {dataset.get(kind)}"
    return str(dataset)


def preprocessing(run: TrainedRun) -> dict[str, Any] | None:
    """What an input must go through before the model (the card's ``preprocessing``): image
    size, channel order, mean, std (of x / 255), resize rule, class names."""
    source = run.config.get("data_source")
    if isinstance(source, dict):
        keys = ("image_size", "channels", "channel_order", "mean", "std", "resize", "classes")
        return {k: source.get(k) for k in keys}
    from prunesearch.data.datasets import DATASETS

    info = DATASETS.get(str(((run.config.get("space") or {}).get("data") or {}).get("dataset")))
    if info is None:
        return None
    c, h, w = info.shape
    return {
        "image_size": [h, w],
        "channels": c,
        "channel_order": "RGB" if c == 3 else "L",
        "mean": list(info.mean),
        "std": list(info.std),
        "resize": "none (the dataset's own size)",
        "classes": None,
    }


def _versions() -> dict[str, str]:
    out = package_versions()
    for pkg in ("onnx", "onnxruntime", "onnxscript"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def card_data(
    run: TrainedRun, exported: dict[str, Any], latency: dict[str, Any] | None
) -> dict[str, Any]:
    """The model card's content as plain data (``model.json``; ``latency`` None: not
    measured)."""
    summary = run.spec.summary()
    m = run.metrics
    return {
        "format": CARD_FORMAT,
        "model": run.spec.model,
        "model_args": run.spec.model_args,
        "input_shape": list(run.spec.input_shape),
        "run": _run_record(run),
        "accuracy": {"test": m.get("test_accuracy"), "val": m.get("val_accuracy")},
        "preprocessing": preprocessing(run),
        "architecture": {
            k: summary[k]
            for k in (
                "flops",
                "base_flops",
                "flops_ratio",
                "params",
                "base_params",
                "flop_counter",
                "groups",
            )
        },
        "search": _search_record(run),
        "export": {k: v for k, v in exported.items() if k != "verification"},
        "verification": exported["verification"],
        "latency": latency,
        "versions": _versions(),
    }


def _run_record(run: TrainedRun) -> dict[str, Any]:
    """How the model was trained: the run folder, its data, seed, epochs and recipe."""
    m, meta = run.metrics, run.meta
    return {
        "folder": str(run.run_dir),
        "kind": meta.get("kind"),
        "space": meta.get("space"),
        "dataset": dataset_text(((run.config.get("space") or {}).get("data") or {}).get("dataset")),
        "limit_train": (run.config.get("data") or {}).get("limit_train"),
        "seed": m.get("seed"),
        "epochs": m.get("epochs"),
        "recipe": m.get("recipe"),
        "memory_format": m.get("memory_format"),
        "train_seconds": m.get("train_seconds"),
        "device": m.get("device"),
    }


def _search_record(run: TrainedRun) -> dict[str, Any] | None:
    """Which search chose the architecture (None for a base run)."""
    if run.meta.get("spec") is None or not run.spec.search:
        return None
    search, budget = run.spec.search, run.spec.budget
    return {
        "budget": (budget or {}).get("text"),
        **{
            k: search.get(k)
            for k in (
                "objective",
                "signal",
                "trial",
                "score",
                "trials",
                "study",
                "granularity",
                "baseline",
                "base_checkpoint_sha256",
            )
        },
    }


def _preprocessing_lines(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    lines = [
        "## Preprocessing",
        "",
        f"- **Input**: {p['image_size'][0]}x{p['image_size'][1]}, {p['channels']} channel(s) "
        f"({p['channel_order']}), resized by: {p['resize']}.",
        f"- **Normalisation**: (x / 255 - mean) / std per channel, mean {p['mean']}, std "
        f"{p['std']}.",
    ]
    if p.get("classes"):
        shown_classes = ", ".join(f"{i}: {c}" for i, c in enumerate(p["classes"][:50]))
        more = f" (and {len(p['classes']) - 50} more)" if len(p["classes"]) > 50 else ""
        lines.append(f"- **Classes** (logit index: name): {shown_classes}{more}.")
    return [*lines, ""]


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def render_card(card: dict[str, Any]) -> str:
    """``MODEL.md``: the card as Markdown."""
    a, r, e, v, lat = (
        card["architecture"],
        card["run"],
        card["export"],
        card["verification"],
        card["latency"],
    )
    acc = card["accuracy"]
    lines = [
        f"# {card['model']} ({r['kind']} run of {r['space']})",
        "",
        f"- **File**: `{e['file']}` ({e['format']}, {e['bytes']:,} bytes, sha256 "
        f"`{e['sha256'][:16]}...`), input `{e['input']['name']}` float32 "
        f"{' x '.join(map(str, e['input']['shape']))} (NCHW), output `logits`; "
        f"{e['exporter']}.",
        f"- **Test accuracy**: {_pct(acc['test'])} (validation {_pct(acc['val'])}) on "
        f"{r['dataset']}"
        + (
            f", trained on the first {r['limit_train']:,} training images"
            if r.get("limit_train")
            else ""
        )
        + ".",
        f"- **Cost**: {a['flops']:,} FLOPs ({a['flops_ratio']:.1%} of the base's "
        f"{a['base_flops']:,}; fvcore: 1 multiply-add = 1), {a['params']:,} params (base "
        f"{a['base_params']:,}).",
        f"- **Training**: {r['epochs']} epoch(s), seed {r['seed']}, "
        + _recipe(r.get("recipe") or {})
        + _format_text(r.get("memory_format"))
        + ".",
        "",
    ]
    lines += _preprocessing_lines(card.get("preprocessing"))
    lines += _search_lines(card.get("search"))
    lines += _verification_lines(v)
    lines += [*_cost_lines(card.get("training_cost")), "## Latency", "", *_latency_lines(lat)]
    if a["flops"] < a["base_flops"]:
        lines += ["", "## Widths against the base", ""]
        lines += _md_table(
            ["group", "base", "width", "keep"],
            [[g["group"], g["base"], g["width"], f"{g['keep_ratio']:.0%}"] for g in a["groups"]],
        )
    lines += ["", "Versions: " + ", ".join(f"{k} {val}" for k, val in card["versions"].items()), ""]
    return "\n".join(lines)


def _search_lines(s: dict[str, Any] | None) -> list[str]:
    """Which search chose the architecture (none for a base run)."""
    if not s:
        return []
    return [
        "## Search provenance",
        "",
        f"Budget {s['budget']}, objective `{s['objective']}`, signal `{s['signal']}`, "
        f"trial {s['trial']} of {s['trials']} (score {_num(s['score'])}), study "
        f"`{s['study']}`, granularity {s['granularity']}"
        + (f"; the `{s['baseline']}` baseline's architecture" if s.get("baseline") else "")
        + f"; base checkpoint sha256 `{str(s['base_checkpoint_sha256'])[:16]}...`.",
        "",
    ]


def _verification_lines(v: dict[str, Any]) -> list[str]:
    """How the export was checked against the PyTorch model."""
    return [
        "## Verification",
        "",
        f"{v['runtime']} against the PyTorch model on {v['images_from']}, in batches of "
        f"{', '.join(map(str, v['batches']))}: max |logit difference| "
        f"{v['max_abs_logit_diff']:.3g} (tolerance {v['tolerance']:.3g}: "
        f"{v['tolerance_rule']}), top-1 agreement {v['top1_agreement']:.2%} "
        f"({v['near_ties']} near-ties). **{'Passed' if v['passed'] else 'FAILED'}.**",
        "",
    ]


def _latency_lines(lat: dict[str, Any] | None) -> list[str]:
    if lat is None:
        return ["Not measured (exported with `--no-latency`)."]
    lines = [
        f"PyTorch eager inference on {lat['device']}, {lat['threads']} thread(s), torch "
        f"{lat['torch']}: median ms per image (25th-75th percentile over "
        f"{lat['repeats']} repeats after {lat['warmup']} warm-up calls), for this model "
        "(`spec`)" + (" and its unpruned base." if lat["speedup"] else "."),
        "",
    ]
    return lines + _md_table(
        ["model", "memory format", *(f"batch {b}" for b in lat["batches"])], latency_table(lat)
    )


def _cost_lines(cost: dict[str, Any] | None) -> list[str]:
    """The card's "Training cost" block (``prunesearch family``'s bill; none for export)."""
    if not cost:
        return []
    teacher = f" + teacher {cost['teacher_macs']:.3g}" if cost.get("teacher_macs") else ""
    return [
        "## Training cost",
        "",
        f"{cost['train_macs']:.3g} training MACs{teacher} ({cost['factor']}), "
        f"{cost['x_base']:.3f}x the base's training and {cost['x_scratch_b']:.3f}x this "
        f"architecture's Scratch-B; {cost['epochs']} epoch(s), {cost['images']:,} images, "
        f"{cost['train_seconds']} s of training.",
        "",
    ]


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _recipe(recipe: dict[str, Any]) -> str:
    keys = ("lr", "momentum", "weight_decay", "schedule", "batch_size", "augment")
    return "SGD " + ", ".join(f"{k} {recipe[k]}" for k in keys if k in recipe)


def _format_text(choice: Any) -> str:
    if not isinstance(choice, dict):
        return ""
    return f"; trained in {choice.get('memory_format')} ({choice.get('how')})"
