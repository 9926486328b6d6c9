"""``prunesearch transfer``: the paper's guided pruning, a found design applied to another model.

Liu et al. (section 5) observed that the architectures pruning finds follow patterns that
transfer: average the kept fraction of channels per stage of a found ResNet-56 and apply those
ratios to ResNet-110, or from VGG-16 to VGG-19, and the result is as good as searching again.
``transfer`` does that: per stage (a spatial resolution; :meth:`ChannelGraph.stages`), the
channel-weighted mean keep ratio of the source spec, applied to every group of the same stage of
the target model. Stages are matched by index (0 = highest resolution); a target with more
stages than the source reuses the source's last one.
"""

from __future__ import annotations

import json
from typing import Any

from prunesearch.allow_import import AllowImport
from prunesearch.errors import PrunesearchError
from prunesearch.spec import ArchSpec, base_graph

__all__ = ["parse_input_shape", "parse_model_args", "stage_ratios", "transfer"]


def stage_ratios(spec: ArchSpec, *, allow_import: AllowImport = False) -> dict[int, float]:
    """Stage index -> channel-weighted mean keep ratio of ``spec``."""
    stages = spec.graph(allow_import=allow_import).stages()
    kept: dict[int, int] = {}
    total: dict[int, int] = {}
    for name, size in spec.base_widths.items():
        s = stages[name]
        kept[s] = kept.get(s, 0) + spec.widths[name]
        total[s] = total.get(s, 0) + size
    return {s: kept[s] / total[s] for s in sorted(total)}


def transfer(
    spec: ArchSpec,
    to_model: str,
    *,
    model_args: dict[str, Any] | None = None,
    input_shape: list[int] | None = None,
    allow_import: AllowImport = False,
) -> ArchSpec:
    """A spec for ``to_model`` with ``spec``'s per-stage keep ratios.

    ``model_args`` and ``input_shape`` default to the source spec's (same dataset).

    Raises:
        PrunesearchError: unknown target model, arguments or input shape it does not accept.
    """
    ratios = stage_ratios(spec, allow_import=allow_import)
    args = dict(spec.model_args if model_args is None else model_args)
    shape = list(spec.input_shape if input_shape is None else input_shape)
    target = base_graph(to_model, args, shape, allow_import=allow_import)
    if not target.groups:
        raise PrunesearchError(f"{to_model} has no prunable channel groups")
    last = max(ratios)
    stages = target.stages()
    widths = {}
    for g in target.groups:
        r = ratios[min(stages[g.name], last)]
        widths[g.name] = g.nearest(r * g.size)
    search = {
        "transferred_from": {
            "model": spec.model,
            "model_args": spec.model_args,
            "input_shape": list(spec.input_shape),
            "flops": spec.flops,
            "search": spec.search,
        },
        "stage_ratios": {str(k): round(v, 4) for k, v in ratios.items()},
        "signal": (spec.search or {}).get("signal", "l1"),
    }
    return ArchSpec.from_graph(target, widths, model=to_model, model_args=args, search=search)


def parse_model_args(text: str | None) -> dict[str, Any] | None:
    """``--model-args``: a JSON object of the target model's arguments (None: the spec's)."""
    if text is None:
        return None
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PrunesearchError(f"--model-args: not JSON ({exc.msg})") from None
    if not isinstance(args, dict):
        raise PrunesearchError("--model-args: must be a JSON object")
    return args


def parse_input_shape(text: str | None) -> list[int] | None:
    """``--input-shape C,H,W`` (None: the spec's)."""
    if text is None:
        return None
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise PrunesearchError(f"--input-shape {text!r}: expected C,H,W (three positive integers)")
    return shape
