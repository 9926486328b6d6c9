"""A finished training run folder, read: its trained model rebuilt from the spec in its weights'
metadata, with its metrics and config (what ``export`` and ``family`` start from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.allow_import import AllowImport, import_permission
from prunesearch.errors import PrunesearchError, first_line
from prunesearch.fileio import read_json
from prunesearch.paths import CONFIG, METRICS, WEIGHTS
from prunesearch.spec import ArchSpec, build

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TrainedRun", "load_run"]


@dataclass
class TrainedRun:
    """A finished training run folder, read: its model (weights loaded, eval mode), the spec it
    trains (for a base run: the unpruned widths), and its files' contents."""

    run_dir: Path
    model: nn.Module
    spec: ArchSpec
    meta: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]


def load_run(run_dir: str | Path, allow_import: AllowImport = False) -> TrainedRun:
    """Reads a ``train-arch`` or ``train-base`` run folder and rebuilds its trained model.

    Raises:
        PrunesearchError: not a finished training run, or weights that do not fit the model.
    """
    import torch

    from prunesearch.models import create_model
    from prunesearch.training.loop import load_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunesearchError(f"run folder not found: {run_dir}")
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise PrunesearchError(
            f"{run_dir} has no model.safetensors: export takes the folder "
            "of a finished train-arch or train-base run"
        )
    for name in (METRICS, CONFIG):
        if not (run_dir / name).is_file():
            raise PrunesearchError(f"{run_dir} has no {name}: not a finished training run")
    state, meta = load_weights(weights)
    metrics = read_json(run_dir / METRICS, "metrics")
    config = read_json(run_dir / CONFIG, "run config")
    if not isinstance(metrics.get("test_accuracy"), float | int):
        raise PrunesearchError(
            f"{run_dir}/metrics.json has no test_accuracy: not the metrics of "
            "a finished training run"
        )
    if meta.get("spec") is not None:
        spec = ArchSpec.from_dict(meta["spec"], allow_import=allow_import)
        model = build(spec)
    else:
        if not isinstance(meta.get("model"), str) or not isinstance(meta.get("model_args"), dict):
            raise PrunesearchError(f"{weights}: its metadata names no model")
        permission = import_permission(allow_import, meta["model"])
        model = create_model(meta["model"], allow_import=permission, **meta["model_args"])
        graph = _trace(model, meta.get("input_shape"), weights)
        spec = ArchSpec.from_graph(graph, {}, model=meta["model"], model_args=meta["model_args"])
        spec.allow_import = permission
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PrunesearchError(
            f"{weights} does not fit {spec.model}: {first_line(exc)[:200]}"
        ) from None
    model = model.to(torch.float32).eval()
    return TrainedRun(run_dir, model, spec, meta, metrics, config)


def _trace(model: nn.Module, shape: Any, where: Path):
    import torch

    from prunesearch.engine.graph import trace
    from prunesearch.spec import check_input_shape

    if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise PrunesearchError(f"{where}: its metadata has no valid input_shape")
    check_input_shape(shape, f"{where}: input_shape")
    return trace(model, torch.zeros(1, *shape))
