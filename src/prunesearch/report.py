"""Compute-then-render summaries: plain data here, drawing in the CLI (rich) or figures."""

from __future__ import annotations

from typing import Any

from .spec import ArchSpec

__all__ = ["spec_summary"]


def spec_summary(spec: ArchSpec) -> dict[str, Any]:
    """Per-group widths against the base model, and the spec's costs, as plain data."""
    rows = [
        {"group": name, "base": base, "width": spec.widths[name],
         "keep_ratio": round(spec.widths[name] / base, 4)}
        for name, base in spec.base_widths.items()
    ]
    return {
        "model": spec.model,
        "input_shape": list(spec.input_shape),
        "groups": rows,
        "flops": spec.flops,
        "base_flops": spec.base_flops,
        "flops_ratio": round(spec.flops / spec.base_flops, 4) if spec.base_flops else None,
        "params": spec.params,
        "base_params": spec.graph().params(),
        "flop_counter": spec.flop_counter,
        "budget": spec.budget,
    }
