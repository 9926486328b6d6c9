"""Runs: a space (+ CLI overrides) -> data, model and recipe -> a training run folder.

``train_base`` trains the base model a search starts from; ``train_arch`` trains a spec from
scratch (Scratch-E: the base's epochs; Scratch-B: as many more as the spec is cheaper, so that
both see the same compute) or fine-tunes the base's weights pruned to the spec. Each run folder
holds ``config.json`` (resolved space, options, versions, seed) so the run can be repeated.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunesearch.data.datasets import (
    DatasetInfo,
    load_train_test,
    split_validation,
    validation_size,
)
from prunesearch.engine.flops import count_flops
from prunesearch.engine.graph import trace
from prunesearch.errors import PrunesearchError, first_line, shown
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.models import create_model
from prunesearch.paths import CHECKPOINT, CONFIG, METRICS, WEIGHTS, run_folder
from prunesearch.progress import Reporter
from prunesearch.space import Optimisation, Space
from prunesearch.spec import ArchSpec, build, package_versions
from prunesearch.training.base_weights import load_base, load_space_base
from prunesearch.training.loop import Progress, Recipe, RunOptions, Splits, fit
from prunesearch.vocab import ARCH_INITS, EPOCH_BUDGETS, TRAIN_ARCH_KINDS, require

__all__ = [
    "ArchTraining",
    "DataOptions",
    "PreparedData",
    "arch_kind",
    "arch_run_dir",
    "arch_training",
    "base_run_dir",
    "check_same_source",
    "check_source",
    "inherit_weights",
    "load_splits",
    "prepare_data",
    "prepare_run_dir",
    "recipe_from_space",
    "recorded_source",
    "resolve_space",
    "scratch_b_epochs",
    "train_arch",
    "train_base",
    "write_config",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataOptions:
    data_dir: str | None = None
    limit_train: int | None = None
    download: bool = False


@dataclass
class PreparedData:
    """A space's data, loaded: the space with what the data decides filled in (the user's own
    data: the model's ``num_classes``, ``data.image_size`` and ``data.channels``), the splits,
    and the record of the data's source (None for a built-in dataset)."""

    space: Space
    splits: Splits
    source: dict[str, Any] | None


def _channels(space: Space) -> int:
    given = space.model.args.get("in_channels")
    if space.data.channels is not None:
        return space.data.channels
    return given if isinstance(given, int) and not isinstance(given, bool) else 3


def _with_data(space: Space, info: DatasetInfo, source: dict[str, Any]) -> Space:
    """The space with the class count, image size and channels of the user's data."""
    given = space.model.args.get("num_classes")
    names = ", ".join(info.classes[:8]) + (", ..." if len(info.classes) > 8 else "")
    if given is not None and given != info.num_classes:
        raise PrunesearchError(
            f"space {space.name}: model.args.num_classes is {shown(given)} but the data has "
            f"{info.num_classes} classes ({names}); leave num_classes out to take it from the data"
        )
    c, h, w = info.shape
    space = space.replace("model", args={**space.model.args, "num_classes": info.num_classes})
    return space.replace("data", image_size=h if h == w else (h, w), channels=c)


def prepare_data(space: Space, data: DataOptions, reporter: Reporter | None = None) -> PreparedData:
    """Train (minus the held-out validation split, then limited), validation and test data,
    checked against the space's model."""
    d = space.data
    num_classes = space.model.args.get("num_classes")
    loaded = load_train_test(
        d,
        channels=_channels(space),
        num_classes=num_classes if isinstance(num_classes, int) else None,
        data_dir=data.data_dir,
        download_missing=data.download,
        reporter=reporter,
    )
    train, test = loaded.train, loaded.test
    if loaded.source is not None:
        space = _with_data(space, train.info, loaded.source)
    check_model_fits(space, train.info, exact=loaded.source is not None)
    val = None
    val_size = validation_size(d.val_size, len(train))
    if val_size:
        train, val = split_validation(train, val_size)
    if data.limit_train is not None:
        if data.limit_train < 1:
            raise PrunesearchError(f"--limit-train must be >= 1, got {data.limit_train}")
        train = train.subset(slice(0, data.limit_train))
    return PreparedData(space, Splits(train, val, test), loaded.source)


def load_splits(space: Space, data: DataOptions, reporter: Reporter | None = None) -> Splits:
    """The splits of :func:`prepare_data`."""
    return prepare_data(space, data, reporter).splits


def resolve_space(space: Space, data: DataOptions, reporter: Reporter | None = None) -> Space:
    """The space with what the user's own data decides filled in (see :class:`PreparedData`);
    a space on a built-in dataset as it is."""
    if not isinstance(space.data.dataset, dict):
        return space
    return prepare_data(space, data, reporter).space


def recorded_source(config_path: Path) -> dict[str, Any] | None:
    """The ``data_source`` a run folder's config records (None: none, or no such file)."""
    if not config_path.is_file():
        return None
    recorded = read_json(config_path, "run config").get("data_source")
    return recorded if isinstance(recorded, dict) else None


def check_source(source: dict[str, Any] | None, recorded: Any, what: str) -> None:
    """Refuses data that is not what ``what`` (a run folder, a spec) recorded it read: another
    folder, file or reader, or the same one changed since (its digest)."""
    if source is None or not isinstance(recorded, dict):
        return

    def where(s: dict[str, Any]) -> Any:
        return s.get("path", s.get("callable"))

    if where(recorded) != where(source):
        raise PrunesearchError(f"the data is {where(source)}, but {what} used {where(recorded)}")
    if recorded.get("digest") and recorded["digest"] != source.get("digest"):
        raise PrunesearchError(
            f"the data at {where(source)} changed since {what} read it (digest "
            f"{recorded['digest'][:12]}, now {str(source.get('digest'))[:12]})"
        )


def check_same_source(source: dict[str, Any] | None, config_path: Path) -> None:
    """:func:`check_source` against the source the run folder of ``config_path`` recorded."""
    check_source(source, recorded_source(config_path), f"the run {config_path.parent}")


def check_model_fits(space: Space, info: DatasetInfo, exact: bool = False) -> None:
    """The space's model against the data it trains on: a forward pass of two blank images of
    the dataset's shape must give a logit per class (``exact``: exactly one per class). Tried,
    not guessed from the argument names (constructors call the input channels in_channels,
    in_chans, in_ch...)."""
    model = space.create_model().eval()
    shape = info.shape
    what = f"space {space.name}: model {space.model.name} {shown(space.model.args)}"
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as exc:  # the user's model: any failure is a mismatch to report
        raise PrunesearchError(
            f"{what} does not take {info.name} images "
            f"({'x'.join(map(str, shape))}): {first_line(exc)[:200]}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PrunesearchError(f"{what} returns {got} for 2 images, not logits [2, classes]")
    if out.shape[1] < info.num_classes or (exact and out.shape[1] != info.num_classes):
        raise PrunesearchError(
            f"{what} gives {out.shape[1]} logits but {info.name} has {info.num_classes} classes"
        )


def base_metadata(path: Path, space: Space) -> dict[str, Any]:
    """The metadata of ``--base``'s weights (empty for a base trained elsewhere), checked to be
    a base of the space's model (:func:`~prunesearch.training.base_weights.load_base`)."""
    return load_space_base(path, space).meta


def recipe_from_space(
    space: Space, *, epochs: int | None = None, sparsity: float | None = None
) -> Recipe:
    t, d = space.train, space.data
    if epochs is not None and epochs < 1:
        raise PrunesearchError(f"--epochs must be >= 1, got {epochs}")
    if sparsity is not None and sparsity < 0:
        raise PrunesearchError(f"--sparsity must be >= 0, got {sparsity}")
    optimisation = {f.name: getattr(t, f.name) for f in fields(Optimisation)}
    return Recipe(
        **optimisation
        | {"epochs": epochs or t.epochs, "sparsity": t.sparsity if sparsity is None else sparsity},
        batch_size=d.batch_size,
        eval_batch_size=d.eval_batch_size,
        augment=d.augment,
    )


def scratch_b_epochs(
    epochs: int, base_flops: int, arch_flops: int, max_factor: float | None = None
) -> int:
    """Scratch-B: the base's epochs scaled by base/arch FLOPs (rounded), optionally capped."""
    factor = base_flops / arch_flops
    if max_factor is not None:
        if max_factor < 1:
            raise PrunesearchError(f"--max-epoch-factor must be >= 1, got {max_factor}")
        factor = min(factor, max_factor)
    return max(epochs, round(epochs * factor))


def prepare_run_dir(run_dir: Path, opts: RunOptions, data: DataOptions) -> dict[str, Any] | None:
    """Refuses to overwrite a run; returns the finished metrics when resuming a done run.

    Raises:
        PrunesearchError: a run there already (without ``opts.resume``), or one resumed with
            another seed or ``--limit-train`` than it was trained with (its config.json).
    """
    done = run_dir / METRICS
    if not opts.resume and ((run_dir / CHECKPOINT).exists() or done.exists()):
        raise PrunesearchError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out"
        )
    _same_settings(run_dir, opts, data)
    if done.is_file() and (run_dir / WEIGHTS).is_file():
        return read_json(done, "metrics")
    return None


def _same_settings(run_dir: Path, opts: RunOptions, data: DataOptions) -> None:
    """A run continued or reused must be the one asked for: same seed, same training data."""
    if not (run_dir / CONFIG).is_file():
        return
    config = read_json(run_dir / CONFIG, "run config")
    was = {
        "--seed": (config.get("options") or {}).get("seed", opts.seed),
        "--limit-train": (config.get("data") or {}).get("limit_train", data.limit_train),
    }
    now = {"--seed": opts.seed, "--limit-train": data.limit_train}
    for flag, value in was.items():
        if value != now[flag]:
            said = [f"{flag} {v}" if v is not None else f"no {flag}" for v in (value, now[flag])]
            raise PrunesearchError(
                f"{run_dir} was trained with {said[0]}, not {said[1]}: run with the same "
                "options, or choose another --out"
            )


def write_config(
    run_dir: Path, space: Space, opts: RunOptions, data: DataOptions, **sections: Any
) -> None:
    """A run folder's ``config.json``, the one writer of its shape: the resolved space, the run
    and data options, versions and the command line, then the run kind's own ``sections``
    (``recipe`` and ``data_source`` of a training run, ``find``'s options and base, ...).
    Written by rank 0 only."""
    from prunesearch.training.loop import _distributed, resolve_device

    rank, _, _ = _distributed(resolve_device(opts.device))
    if rank != 0:
        return
    data_dir = str(Path(data.data_dir).resolve()) if data.data_dir else None
    config = {
        "space": space.to_dict(),
        "space_path": space.path,
        "options": asdict(opts),
        "data": asdict(data) | {"data_dir": data_dir},
        "versions": package_versions(),
        "command": sys.argv,
    }
    atomic_write_json(run_dir / CONFIG, config | sections)


def base_run_dir(space: Space, out: str | Path | None = None) -> Path:
    """Where ``train-base`` writes: ``out``, else ``outputs/<space>/base``."""
    return Path(out) if out else run_folder(space.name, "base")


def arch_run_dir(
    space: Space, spec_name: str, kind: str, seed: int, out: str | Path | None = None
) -> Path:
    """Where ``train-arch`` writes: ``out``, else ``outputs/<space>/arch/<spec>/<kind>-s<seed>``
    (``kind``: ``finetune``, ``scratch-e`` or ``scratch-b``)."""
    return Path(out) if out else run_folder(space.name, "arch", spec_name, f"{kind}-s{seed}")


def arch_kind(init: str, schedule: str) -> str:
    """The kind of a train-arch run: ``finetune`` for inherited weights, else the schedule."""
    return "finetune" if init == "inherit" else schedule


def arch_training(kind: str) -> tuple[str, str]:
    """``(schedule, init)`` of a train-arch kind (the inverse of :func:`arch_kind`)."""
    require("training kind", kind, TRAIN_ARCH_KINDS)
    return ("scratch-e", "inherit") if kind == "finetune" else (kind, "scratch")


def train_base(
    space: Space,
    *,
    out: str | Path | None = None,
    epochs: int | None = None,
    sparsity: float | None = None,
    data: DataOptions = DataOptions(),
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Trains the space's base model (with network-slimming sparsity from the space or flag)."""
    run_dir = base_run_dir(space, out)
    finished = prepare_run_dir(run_dir, opts, data)
    if finished is not None:
        return finished
    recipe = recipe_from_space(space, epochs=epochs, sparsity=sparsity)
    prepared = prepare_data(space, data, reporter)
    space, splits = prepared.space, prepared.splits
    torch.manual_seed(opts.seed)
    model = space.create_model()
    shape = list(splits.train.images.shape[1:])
    meta = {
        "kind": "base",
        "space": space.name,
        "model": space.model.name,
        "model_args": space.model.args,
        "input_shape": shape,
        "flops": count_flops(model, torch.zeros(1, *shape)),
    }
    write_config(
        run_dir, space, opts, data, recipe=asdict(recipe), kind="base", data_source=prepared.source
    )
    return fit(
        model,
        splits,
        recipe,
        opts,
        run_dir,
        metadata=meta,
        progress=Progress(reporter, f"train-base {space.name}"),
    )


def inherit_weights(spec: ArchSpec, base_path: Path, signal: str) -> nn.Module:
    """The base model's trained weights pruned to the spec's widths by ``signal``."""
    model = create_model(spec.model, allow_import=spec.allow_import, **spec.model_args)
    base = load_base(base_path, model, model_ref=(spec.model, spec.model_args))
    expected = (spec.search or {}).get("base_checkpoint_sha256")
    if expected and expected != base.sha256:
        raise PrunesearchError(
            f"{base_path} is not the base checkpoint the spec was searched "
            "on (sha256 differs); pass --base with that file"
        )
    model.load_state_dict(base.state)
    graph = trace(model, torch.zeros(1, *spec.input_shape))
    return graph.prune(spec.widths, importance=signal)


@dataclass(frozen=True)
class ArchTraining:
    """How ``train-arch`` trains a spec.

    Attributes:
        schedule: ``scratch-e`` (the base's epochs) or ``scratch-b`` (the base's compute).
        init: ``scratch`` (fresh weights) or ``inherit`` (fine-tune the pruned base).
        base: the base's weights for ``inherit`` (default ``outputs/<space>/base/``).
        max_epoch_factor: caps Scratch-B at this many times the base epochs.
        epochs: overrides the base epochs that Scratch-E/B start from (fine-tuning: its
            epochs); else ``base_epochs`` (``--base-epochs``: a base trained elsewhere), else
            the base's epochs the spec's search recorded, else the space's.
    """

    schedule: str = "scratch-e"
    init: str = "scratch"
    base: str | Path | None = None
    max_epoch_factor: float | None = None
    epochs: int | None = None
    base_epochs: int | None = None

    def check(self) -> None:
        require("schedule", self.schedule, EPOCH_BUDGETS)
        require("init", self.init, ARCH_INITS)
        if self.base_epochs is not None and self.base_epochs < 1:
            raise PrunesearchError(f"--base-epochs must be >= 1, got {self.base_epochs}")
        if self.base is not None and self.init != "inherit":
            raise PrunesearchError("--base is only used with --init inherit")


def train_arch(
    spec: ArchSpec,
    space: Space,
    how: ArchTraining | None = None,
    *,
    out: str | Path | None = None,
    spec_name: str = "spec",
    data: DataOptions = DataOptions(),
    opts: RunOptions = RunOptions(),  # noqa: B008
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Trains a spec from scratch (Scratch-E / Scratch-B) or fine-tunes inherited weights, as
    ``how`` says (default: Scratch-E from fresh weights)."""
    how = how or ArchTraining()
    how.check()
    prepared = prepare_data(space, data, reporter)
    space, splits = prepared.space, prepared.splits
    base_dir = Path(how.base).parent if how.base else run_folder(space.name, "base")
    check_same_source(prepared.source, base_dir / CONFIG)
    check_source(prepared.source, (spec.search or {}).get("data_source"), f"spec {spec_name}")
    _check_spec_fits(spec, space, splits)
    kind = arch_kind(how.init, how.schedule)
    run_dir = arch_run_dir(space, spec_name, kind, opts.seed, out)
    finished = prepare_run_dir(run_dir, opts, data)
    if finished is not None:
        return finished
    model, recipe = _model_and_recipe(spec, space, how, opts.seed)
    meta = {
        "kind": kind,
        "space": space.name,
        "model": spec.model,
        "model_args": spec.model_args,
        "input_shape": list(spec.input_shape),
        "flops": spec.flops,
        "spec": spec.to_dict(),
    }
    sections = {"recipe": asdict(recipe), "kind": kind, "schedule": how.schedule, "init": how.init}
    write_config(run_dir, space, opts, data, **sections, data_source=prepared.source)
    return fit(
        model,
        splits,
        recipe,
        opts,
        run_dir,
        metadata=meta,
        progress=Progress(reporter, f"train-arch {spec_name} ({kind})"),
    )


def _check_spec_fits(spec: ArchSpec, space: Space, splits: Splits) -> None:
    """The spec is of the space's model and takes the data's images."""
    if spec.model != space.model.name or spec.model_args != space.model.args:
        raise PrunesearchError(
            f"spec model {spec.model} {spec.model_args} does not match space "
            f"{space.name} ({space.model.name} {space.model.args})"
        )
    if list(splits.train.images.shape[1:]) != list(spec.input_shape):
        raise PrunesearchError(
            f"spec input shape {spec.input_shape} does not match "
            f"{shown(space.data.dataset)} images {list(splits.train.images.shape[1:])}"
        )


def _model_and_recipe(
    spec: ArchSpec, space: Space, how: ArchTraining, seed: int
) -> tuple[nn.Module, Recipe]:
    """The model to train (fresh, or the pruned base) and its recipe (Scratch-E/B epochs from
    the base's, or the space's fine-tuning settings)."""
    recorded = ((spec.search or {}).get("base") or {}).get("epochs")
    recorded = recorded if isinstance(recorded, int) and recorded >= 1 else None
    epochs = how.epochs or how.base_epochs or recorded
    recipe = recipe_from_space(space, epochs=epochs, sparsity=0.0)
    torch.manual_seed(seed)
    if how.init == "inherit":
        base_path = Path(how.base) if how.base else run_folder(space.name, "base", WEIGHTS)
        signal = (spec.search or {}).get("signal", space.search.signal)
        model = inherit_weights(spec, base_path, signal)
        tune = {"epochs": how.epochs or space.train.finetune_epochs, "lr": space.train.finetune_lr}
        return model, Recipe(**asdict(recipe) | tune | {"schedule": "constant"})
    if how.schedule == "scratch-b":
        n = scratch_b_epochs(recipe.epochs, spec.base_flops, spec.flops, how.max_epoch_factor)
        recipe = Recipe(**asdict(recipe) | {"epochs": n})
    return build(spec), recipe
