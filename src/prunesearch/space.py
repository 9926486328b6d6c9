"""Search spaces: YAML files that fix a (model, dataset) setting, validated into dataclasses.

A space is found by path, or by name in ``$PRUNESEARCH_SPACES`` or the project's
``search_spaces/`` folder. ``search_spaces/default.yaml`` holds ``default: NAME``. Every key is
checked: an unknown key is an error naming it, and so is a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

import yaml

from prunesearch.errors import PrunesearchError, shown
from prunesearch.fileio import read_text
from prunesearch.vocab import GRANULARITIES, LATENCY_FORMATS, LR_SCHEDULES, OBJECTIVES, SIGNALS

__all__ = [
    "DataCfg",
    "ModelCfg",
    "Optimisation",
    "SearchCfg",
    "Space",
    "TrainCfg",
    "load_space",
    "space_dirs",
    "space_for_spec",
]


DatasetRef = Union[str, dict]  # noqa: UP007 - a built-in name or {folder|arrays|callable: ...}
ImageSize = Union[int, tuple, None]  # noqa: UP007 - N or (H, W)
FloatsOrNone = Union[tuple, None]  # noqa: UP007 - per-channel numbers
IntOrNone = Union[int, None]  # noqa: UP007

# the user's own data: {KIND: VALUE} and, for a callable, its keyword arguments
USER_DATA_KINDS = ("folder", "arrays", "callable")


@dataclass(frozen=True)
class ModelCfg:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataCfg:
    """The ``data`` section. ``dataset`` is a built-in name or the user's own data:
    ``{folder: DIR}``, ``{arrays: FILE.npz}`` or ``{callable: "pkg.module:fn", args: {...}}``
    (paths resolved against the space file's folder, kept absolute). The keys after
    ``synthetic`` apply to the user's own data only (README, "Your own data")."""

    dataset: DatasetRef
    val_size: IntOrNone = None  # None: 10% of the training images, at most 5000
    batch_size: int = 128
    eval_batch_size: int = 500
    augment: bool = True
    synthetic: dict[str, Any] = field(default_factory=dict)  # arguments of the synthetic set
    image_size: ImageSize = None  # N or [H, W]: shorter side resized, then a centre crop
    mean: FloatsOrNone = None  # per channel; default: computed from the training images
    std: FloatsOrNone = None
    channels: IntOrNone = None  # default: the model args' in_channels, else 3
    test_size: float = 0.1  # fraction carved off as the test split when the data has none
    skip_bad_images: bool = False  # false: a corrupt image is an error; true: skipped, counted


BoolOrAuto = Union[bool, str]  # noqa: UP007 - a runtime alias: true, false, or "auto"


@dataclass(frozen=True)
class Optimisation:
    """The optimisation settings shared by a space's ``train`` section and a training
    ``Recipe`` (one place for their names and defaults)."""

    epochs: int
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training, lr x gamma at each
    gamma: float = 0.1
    sparsity: float = 0.0  # network-slimming lambda (train-base)
    # the training memory format: true (channels-last), false (NCHW), or auto: chosen per run by
    # a short measured probe of both (train.py), as no rule fits every net (BENCHMARKS.md)
    channels_last: BoolOrAuto = "auto"


@dataclass(frozen=True)
class TrainCfg(Optimisation):
    finetune_epochs: int = 40
    finetune_lr: float = 0.001
    # `prunesearch family` with family_compute 0 (and compare's finetune-cosine and distill
    # rows): a member trains for this fraction of the base's epochs (rounded up, at least 1) at
    # this peak lr, cosine to 0 (training/recipes.py); distill adds the base as
    # teacher at this temperature and soft-target weight
    family_epochs: float = 0.25
    family_lr: float = 0.01
    # > 0: the family's training compute as this fraction of the base's, split evenly among
    # the members (a smaller member trains more epochs; recipes.py); 0: family_epochs instead.
    # 1.0 chosen by validation accuracy over 3 paired seeds (BENCHMARKS.md, issue 26)
    family_compute: float = 1.0
    distill_temperature: float = 4.0
    distill_weight: float = 0.7


@dataclass(frozen=True)
class SearchCfg:
    signal: str = "slimming"
    trials: int = 40
    min_ratio: float = 0.1
    round_to: int = 1
    granularity: str = "group"
    calib_batches: int = 20
    objective: str = "inherit"  # what scores a candidate: inherit | scratch (objectives.py)
    scratch_images: int = 6000  # scratch objective: training images of the first rung
    scratch_rungs: int = 2  # rungs of x scratch_reduction images; successive halving
    scratch_reduction: int = 3
    scratch_cooldown: float = 0.25  # decay branch at each rung, a fraction of its images
    scratch_confirm: int = 4  # finalists re-scored with a second seed before export (0: off)
    # latency budgets (4ms, 50%latency): what the latency is of (latency_model.py)
    latency_batch: int = 1  # images per forward pass; a budget is ms per image at it
    latency_threads: int = 0  # torch threads while timing (0: torch's default here)
    latency_format: str = "auto"  # nchw | channels-last | auto: the faster one per candidate
    latency_round_to: int = 8  # the search also tries widths in multiples of this


@dataclass(frozen=True)
class Space:
    name: str
    model: ModelCfg
    data: DataCfg
    train: TrainCfg
    search: SearchCfg = field(default_factory=SearchCfg)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        d["train"]["milestones"] = list(self.train.milestones)
        return d

    def create_model(self):
        """The space's model, untrained. A space is the user's own file: a model it names by
        import path (``"pkg.module:callable"``) is imported without ``--allow-import``."""
        from prunesearch.models import create_model

        return create_model(self.model.name, allow_import=True, **self.model.args)

    def with_latency_batch(self, batch: int | None) -> Space:
        """The space with ``--latency-batch`` applied (None: its own ``search.latency_batch``)."""
        if batch is None:
            return self
        if batch < 1:
            raise PrunesearchError(f"--latency-batch must be >= 1, got {batch}")
        return self.replace("search", latency_batch=batch)

    def replace(self, section: str | None = None, **changes: Any) -> Space:
        """A copy with top-level fields, or those of one section, changed."""
        if section is None:
            return dataclasses.replace(self, **changes)
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


# the synthetic data set's arguments (data.py's _synthetic) and the largest value of each
SYNTHETIC_KEYS = {
    "image_size": 1024,
    "in_channels": 64,
    "num_classes": 1000,
    "train_size": 1_000_000,
    "test_size": 1_000_000,
    "seed": 2**31,
}

_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict[str, Any]": dict}
_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
}


def _check_dataset(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise PrunesearchError(
            f"{where}: must be a dataset name or a mapping {{folder|arrays|callable: ...}}, "
            f"got {shown(value)}"
        )
    kinds = [k for k in value if k in USER_DATA_KINDS]
    for key in value:
        if key not in (*USER_DATA_KINDS, "args"):
            raise PrunesearchError(
                f"{where}.{shown(key)}: unknown key; known: {', '.join(USER_DATA_KINDS)}, args"
            )
    if len(kinds) != 1:
        raise PrunesearchError(f"{where}: give exactly one of {', '.join(USER_DATA_KINDS)}")
    kind = kinds[0]
    if not isinstance(value[kind], str) or not value[kind]:
        raise PrunesearchError(f"{where}.{kind}: must be a non-empty string")
    if kind == "callable" and ":" not in value[kind]:
        raise PrunesearchError(f"{where}.callable: must be 'pkg.module:function'")
    if "args" in value and (kind != "callable" or not isinstance(value["args"], dict)):
        raise PrunesearchError(f"{where}.args: only a callable takes args, as a mapping")
    return dict(value)


def _check_optional(value: Any, type_name: str, where: str) -> Any:
    """The optional keys of the ``data`` section (None: not given)."""
    if value is None:
        return None
    if type_name == "ImageSize":
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8192:
            return value
        if (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and all(1 <= v <= 8192 for v in value)
        ):
            return tuple(value)
        raise PrunesearchError(
            f"{where}: must be an integer N or [H, W] in 1..8192, got {shown(value)}"
        )
    if type_name == "FloatsOrNone":
        nums = _check(value, "tuple[float, ...]", where)
        if not 1 <= len(nums) <= 64 or not all(math.isfinite(v) for v in nums):
            raise PrunesearchError(f"{where}: must be 1..64 finite numbers, got {shown(value)}")
        return nums
    return _check(value, "int", where)


def _check(value: Any, type_name: str, where: str) -> Any:
    """Checks ``value`` against a dataclass field's annotation (as written, a string)."""
    if type_name == "DatasetRef":
        return _check_dataset(value, where)
    if type_name in ("ImageSize", "FloatsOrNone", "IntOrNone"):
        return _check_optional(value, type_name, where)
    if type_name == "BoolOrAuto":
        if isinstance(value, bool) or value == "auto":
            return value
        raise PrunesearchError(f"{where}: must be true, false or auto, got {shown(value)}")
    if type_name == "tuple[float, ...]":
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise PrunesearchError(f"{where}: must be a list of numbers, got {shown(value)}")
        return tuple(float(v) for v in value)
    typ = _TYPES[type_name]
    if typ is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 1e15:
            raise PrunesearchError(f"{where}: must be a finite number, got {shown(value)}")
        return float(value)
    if (typ is int and isinstance(value, bool)) or not isinstance(value, typ):
        raise PrunesearchError(f"{where}: must be {_TYPE_NAMES[typ]}, got {shown(value)}")
    return value


def _section(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise PrunesearchError(f"{where}: must be a mapping, got {shown(raw)}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise PrunesearchError(f"{where}.{key}: unknown key; known: {', '.join(known)}")
    kwargs = {
        key: _check(value, str(known[key].type), f"{where}.{key}") for key, value in raw.items()
    }
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise PrunesearchError(f"{where}.{missing[0]}: missing")
    return cls(**kwargs)


def _train_checks(t: TrainCfg) -> list[tuple[bool, str, str]]:
    return [
        (t.epochs >= 1, "train.epochs", "must be >= 1"),
        (t.lr > 0, "train.lr", "must be > 0"),
        (t.schedule in LR_SCHEDULES, "train.schedule", f"must be one of {', '.join(LR_SCHEDULES)}"),
        (all(0 < m < 1 for m in t.milestones), "train.milestones", "must lie in (0, 1)"),
        (0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)"),
        (t.weight_decay >= 0, "train.weight_decay", "must be >= 0"),
        (0 < t.gamma <= 1, "train.gamma", "must be in (0, 1]"),
        (t.finetune_lr > 0, "train.finetune_lr", "must be > 0"),
        (t.sparsity >= 0, "train.sparsity", "must be >= 0"),
        (t.finetune_epochs >= 1, "train.finetune_epochs", "must be >= 1"),
    ]


def _search_checks(s: SearchCfg) -> list[tuple[bool, str, str]]:
    return [
        (s.signal in SIGNALS, "search.signal", f"must be one of {', '.join(SIGNALS)}"),
        (s.trials >= 1, "search.trials", "must be >= 1"),
        (0 < s.min_ratio <= 1, "search.min_ratio", "must be in (0, 1]"),
        (s.round_to >= 1, "search.round_to", "must be >= 1"),
        (
            s.granularity in GRANULARITIES,
            "search.granularity",
            f"must be one of {', '.join(GRANULARITIES)}",
        ),
        (s.calib_batches >= 0, "search.calib_batches", "must be >= 0"),
        (s.objective in OBJECTIVES, "search.objective", f"must be one of {', '.join(OBJECTIVES)}"),
        (s.scratch_images >= 1, "search.scratch_images", "must be >= 1"),
        (s.scratch_rungs >= 1, "search.scratch_rungs", "must be >= 1"),
        (s.scratch_reduction >= 2, "search.scratch_reduction", "must be >= 2"),
        (0 < s.scratch_cooldown <= 1, "search.scratch_cooldown", "must be in (0, 1]"),
        (s.scratch_confirm >= 0, "search.scratch_confirm", "must be >= 0"),
        (s.latency_batch >= 1, "search.latency_batch", "must be >= 1"),
        (s.latency_threads >= 0, "search.latency_threads", "must be >= 0 (0: torch's default)"),
        (
            s.latency_format in LATENCY_FORMATS,
            "search.latency_format",
            f"must be one of {', '.join(LATENCY_FORMATS)}",
        ),
        (s.latency_round_to >= 1, "search.latency_round_to", "must be >= 1"),
    ]


def _data_checks(d: DataCfg) -> list[tuple[bool, str, str]]:
    return [
        (d.val_size is None or d.val_size >= 0, "data.val_size", "must be >= 0"),
        (d.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (d.eval_batch_size >= 1, "data.eval_batch_size", "must be >= 1"),
        (0 < d.test_size < 1, "data.test_size", "must be in (0, 1)"),
        (d.channels is None or 1 <= d.channels <= 64, "data.channels", "must be in 1..64"),
        (
            d.std is None or all(v > 0 for v in d.std),
            "data.std",
            "must be > 0 for every channel",
        ),
        (
            d.mean is None or d.std is None or len(d.mean) == len(d.std),
            "data.mean",
            "must have as many channels as data.std",
        ),
    ]


def _validate(space: Space, where: str) -> None:
    """Every value in its range (the first that is not, named with its key)."""
    checks = _train_checks(space.train) + _search_checks(space.search) + _data_checks(space.data)
    for ok, key, message in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(space, section), name)
            raise PrunesearchError(f"{where}.{key}: {message}, got {shown(value)}")
    _validate_synthetic(space.data.synthetic, where)


def _validate_synthetic(synthetic: dict[str, Any], where: str) -> None:
    """The synthetic set's arguments (data.py): known keys, integers in range."""
    for key, value in synthetic.items():
        if key not in SYNTHETIC_KEYS:
            raise PrunesearchError(
                f"{where}.data.synthetic.{shown(key)}: unknown key; known: "
                f"{', '.join(SYNTHETIC_KEYS)}"
            )
        low = 0 if key == "seed" else 1
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= SYNTHETIC_KEYS[key]
        ):
            raise PrunesearchError(
                f"{where}.data.synthetic.{key}: must be an integer in "
                f"[{low}, {SYNTHETIC_KEYS[key]}], got {shown(value)}"
            )


def _validate_family(t: TrainCfg, where: str) -> None:
    """The keys of ``prunesearch family``'s recipes (training/recipes.py)."""
    for ok, key, message in (
        (0 < t.family_epochs <= 1, "family_epochs", "must be in (0, 1] (of the base's epochs)"),
        (t.family_lr > 0, "family_lr", "must be > 0"),
        (0 <= t.family_compute <= 100, "family_compute", "must be in [0, 100] (0: off)"),
        (t.distill_temperature > 0, "distill_temperature", "must be > 0"),
        (0 <= t.distill_weight <= 1, "distill_weight", "must be in [0, 1]"),
    ):
        if not ok:
            raise PrunesearchError(f"{where}.train.{key}: {message}, got {shown(getattr(t, key))}")


def _absolute(dataset: Any, space_path: str) -> Any:
    """A folder or arrays path of the user's data made absolute: a relative one is relative to
    the space file's folder (to the working folder for a space given as a mapping)."""
    if not isinstance(dataset, dict):
        return dataset
    for kind in ("folder", "arrays"):
        if kind in dataset:
            path = Path(dataset[kind]).expanduser()
            if not path.is_absolute():
                base = Path(space_path).resolve().parent if space_path else Path.cwd()
                path = base / path
            return {kind: str(Path(os.path.abspath(path)))}
    return dataset


def space_from_dict(raw: Any, where: str = "space", path: str = "") -> Space:
    """Validates a parsed space."""
    if not isinstance(raw, dict):
        raise PrunesearchError(f"{where}: must be a mapping of sections")
    known = ("name", "model", "data", "train", "search")
    for key in raw:
        if key not in known:
            raise PrunesearchError(f"{where}.{key}: unknown key; known: {', '.join(known)}")
    example = {
        "name": "NAME",
        "model": "{name: resnet20, args: {}}",
        "data": "{dataset: {folder: DIR}, image_size: 32}",
        "train": "{epochs: 10}",
    }
    for key in ("name", "model", "data", "train"):
        if key not in raw:
            raise PrunesearchError(f"{where}.{key}: missing (e.g. {key}: {example[key]})")
    name = _check(raw["name"], "str", f"{where}.name")
    data = _section(DataCfg, raw["data"], f"{where}.data")
    space = Space(
        name=name,
        model=_section(ModelCfg, raw["model"], f"{where}.model"),
        data=dataclasses.replace(data, dataset=_absolute(data.dataset, path)),
        train=_section(TrainCfg, raw["train"], f"{where}.train"),
        search=_section(SearchCfg, raw.get("search", {}), f"{where}.search"),
        path=path,
    )
    _validate(space, where)
    _validate_family(space.train, where)
    return space


def space_dirs() -> list[Path]:
    """Where a space is looked up by name, in order: ``$PRUNESEARCH_SPACES``, the bundled
    spaces, ``./search_spaces``.

    The bundled spaces live in the top-level ``search_spaces/`` folder, their one home: a
    source checkout or an editable install reads it in place; a wheel carries it as the package
    data ``prunesearch/search_spaces/`` (pyproject.toml maps that package onto the folder, so
    there is no second copy in the repository and no build step of our own).
    """
    dirs = []
    if os.environ.get("PRUNESEARCH_SPACES"):
        dirs.append(Path(os.environ["PRUNESEARCH_SPACES"]))
    here = Path(__file__).resolve().parent
    for bundled in (here / "search_spaces", here.parents[1] / "search_spaces"):  # wheel, checkout
        if bundled.is_dir():
            dirs.append(bundled)
            break
    dirs.append(Path.cwd() / "search_spaces")
    return dirs


MAX_SPACE_BYTES = 1 << 20  # a space is a screenful of YAML


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``): a space never needs them, and nested
    aliases make a 600-byte file expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(
                f"aliases (*name) are not supported in a space, at line "
                f"{mark.line + 1} column {mark.column + 1}"
            )
        return super().compose_node(parent, index)


def _read_yaml(path: Path) -> Any:
    text = read_text(path, "space", MAX_SPACE_BYTES)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader, less aliases
    except RecursionError:
        raise PrunesearchError(f"space {path} is not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        raise PrunesearchError(
            f"space {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None


def list_spaces() -> list[str]:
    names: set[str] = set()
    for d in space_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml") if p.stem != "default")
    return sorted(names)


def load_space(name_or_path: str | os.PathLike | None = None) -> Space:
    """Loads a space by path, by name, or (None) the default one.

    Raises:
        PrunesearchError: not found (listing the known names), or invalid (naming the key).
    """
    if name_or_path is None or str(name_or_path) == "default":
        for d in space_dirs():
            default = d / "default.yaml"
            if default.is_file():
                raw = _read_yaml(default)
                if not isinstance(raw, dict) or not isinstance(raw.get("default"), str):
                    raise PrunesearchError(f"{default}: must hold 'default: SPACE_NAME'")
                return load_space(raw["default"])
        raise PrunesearchError("no search_spaces/default.yaml found; pass --space")
    text = str(name_or_path)
    path = Path(text)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or os.sep in text:
            raise PrunesearchError(f"space file not found: {text}")
        for d in space_dirs():
            if (d / f"{text}.yaml").is_file():
                path = d / f"{text}.yaml"
                break
        else:
            raise PrunesearchError(f"unknown space {text!r}; known: {', '.join(list_spaces())}")
    # recorded absolute: a spec names the space file it was searched with, from any folder
    return space_from_dict(_read_yaml(path), f"space {path.name}", str(path.resolve()))


def space_for_spec(search: Mapping[str, Any] | None, override: str | None = None) -> Space:
    """The space a spec is trained in: ``override`` (``--space``) if given, else the file the
    spec was searched with when it still exists, else the space of that name."""
    if override:
        return load_space(override)
    info = search or {}
    path = info.get("space_path")
    return load_space(path if path and Path(path).is_file() else info.get("space"))
