"""Architecture specs: the channel widths a search found, as versioned JSON, and ``build``.

A spec is data: it names a model by registry name (or ``"pkg.module:callable"``, imported only
when allowed), its constructor arguments, the input shape, and the width of every channel group.
Loading validates every field and reports the first problem by its JSON path.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.allow_import import AllowImport, import_permission
from prunesearch.errors import PrunesearchError, SpecError, shown
from prunesearch.fileio import atomic_write_json, read_json
from prunesearch.vocab import BUDGET_KINDS

if TYPE_CHECKING:  # torch is imported where used: reading a spec needs none
    from torch import nn

    from prunesearch.engine.graph import ChannelGraph

__all__ = [
    "FORMAT",
    "ArchSpec",
    "base_graph",
    "build",
    "check_budget",
    "model_code_available",
    "package_versions",
    "reinitialize",
]

FORMAT = "prunesearch.arch/v1"
FLOP_COUNTER = "fvcore-macs"


def package_versions() -> dict[str, str]:
    """Versions of prunesearch and the packages whose behaviour a spec depends on."""
    out = {}
    for pkg in ("prunesearch", "torch", "optuna", "fvcore"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


@functools.lru_cache(maxsize=4)
def _cached_graph(
    model: str, args_json: str, input_shape: tuple[int, ...], allow_import: bool | tuple[str, ...]
) -> ChannelGraph:
    import torch

    from prunesearch.engine.graph import trace
    from prunesearch.models import resolve_model

    try:
        constructor = resolve_model(model, allow_import=allow_import)
    except PrunesearchError as exc:
        raise SpecError(f"$.model: {exc}") from None
    try:
        m = constructor(**json.loads(args_json))
    except Exception as exc:  # the user's arguments: any failure is theirs to fix
        raise SpecError(f"$.model_args: cannot build {model!r} with {args_json}: {exc}") from None
    try:
        return trace(m, torch.zeros(1, *input_shape))
    except PrunesearchError as exc:
        raise SpecError(
            f"$.input_shape: {list(input_shape)} does not fit {model!r}: {exc}"
        ) from None


MAX_INPUT_VALUES = 3 * 1024 * 1024  # per image: a spec's model is traced on a real tensor


def check_input_shape(shape: list[int], where: str) -> None:
    """Refuses, before anything is built or traced, an input too large to trace here."""
    values = math.prod(shape)
    if len(shape) > 4 or values > MAX_INPUT_VALUES:
        raise SpecError(
            f"{where}: {shown(shape)} is {values:,} values per image; the most "
            f"prunesearch traces is {MAX_INPUT_VALUES:,} (3x1024x1024)"
        )


def base_graph(
    model: str,
    model_args: dict[str, Any],
    input_shape: tuple[int, ...] | list[int],
    *,
    allow_import: AllowImport = False,
) -> ChannelGraph:
    """The traced, unpruned model a spec refers to (cached: specs of one family share it).

    Raises:
        SpecError: naming the spec field (model, model_args, input_shape) that is wrong.
    """
    return _cached_graph(
        model,
        json.dumps(model_args, sort_keys=True),
        tuple(input_shape),
        import_permission(allow_import),
    )


def _path(*keys: str | int) -> str:
    out = "$"
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if k.isidentifier() else f"[{k!r}]")
    return out


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: must be an integer, got {shown(value)}")
    if value < minimum:
        raise SpecError(f"{where}: must be >= {minimum}, got {value}")
    return value


def _obj(value: Any, where: str, optional: bool = False) -> dict | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be an object, got {shown(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: must be a non-empty string, got {shown(value)}")
    return value


def _width_map(value: Any, key: str) -> dict[str, int]:
    obj = _obj(value, _path(key))
    if not obj:
        raise SpecError(f"{_path(key)}: must name at least one group")
    return {name: _int(w, _path(key, name), minimum=1) for name, w in obj.items()}


def check_budget(value: Any) -> dict[str, Any] | None:
    """A spec's ``budget`` field, validated (None: no budget).

    Raises:
        SpecError: naming the first bad key by its JSON path.
    """
    budget = _obj(value, "$.budget", optional=True)
    if budget is None:
        return None
    if budget.get("kind") not in BUDGET_KINDS:
        raise SpecError(
            f"$.budget.kind: must be one of {', '.join(BUDGET_KINDS)}, "
            f"got {shown(budget.get('kind'))}"
        )
    _int(budget.get("target"), "$.budget.target", minimum=1)
    if "text" in budget:
        _str(budget["text"], "$.budget.text")
    latency = _obj(budget.get("latency"), "$.budget.latency", optional=True)
    for key, value in (latency or {}).items():  # every recorded time is in milliseconds
        values = value if isinstance(value, list) else [value]  # a spread, or rounds: a list
        if key.endswith("_ms") and not all(_positive_ms(v) for v in values):
            raise SpecError(
                f"$.budget.latency.{key}: must be a positive number of milliseconds (or a "
                f"list of them), got {shown(value)}"
            )
    return budget


def _positive_ms(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < 1e9


def model_code_available(model: str, allow_import: AllowImport = False) -> bool:
    """Whether the code of the model a spec names can be had here: registered, or an import
    reference that ``allow_import`` permits. A spec of other code still loads (its fields are
    data); :func:`build` is the step that needs the code, and says how to allow it."""
    from prunesearch.models import resolve_model

    try:
        resolve_model(model, allow_import=allow_import)
    except PrunesearchError:
        return False
    return True


@dataclass
class ArchSpec:
    """A pruned architecture: per-group widths of a model, with costs and provenance."""

    model: str
    model_args: dict[str, Any]
    input_shape: list[int]
    widths: dict[str, int]
    base_widths: dict[str, int]
    flops: int
    params: int
    base_flops: int
    flop_counter: str = FLOP_COUNTER
    budget: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=package_versions)
    # permission to import the model code the spec names, given when it was loaded (not saved)
    allow_import: AllowImport = field(default=False, repr=False, compare=False)
    # the file it was loaded from, named in the errors of checks that need its model (not saved)
    source: str | None = field(default=None, repr=False, compare=False)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_graph(
        cls,
        graph: ChannelGraph,
        widths: dict[str, int],
        *,
        model: str,
        model_args: dict[str, Any] | None = None,
        budget: dict | None = None,
        search: dict | None = None,
    ) -> ArchSpec:
        """A spec for ``graph``'s model pruned to ``widths`` (missing groups keep all)."""
        full = graph.base_widths | {k: int(v) for k, v in widths.items()}
        graph.widths_vector(full)  # validates
        _str(model, "model")
        check_budget(budget)  # what save writes, load reads
        return cls(
            model=model,
            model_args=dict(model_args or {}),
            input_shape=list(graph.example_input.shape[1:]),
            widths=full,
            base_widths=graph.base_widths,
            flops=graph.flops(full),
            params=graph.params(full),
            base_flops=graph.flops(),
            budget=budget,
            search=search,
        )

    @classmethod
    def from_dict(
        cls, data: Any, *, allow_import: AllowImport = False, check_model: bool = True
    ) -> ArchSpec:
        """Validates ``data`` (parsed JSON); with ``check_model``, also against the model when
        its code is available (registered, or an import ``allow_import`` permits).

        Raises:
            SpecError: naming the JSON path of the first problem found.
        """
        d = _obj(data, "$")
        if "format" not in d:
            raise SpecError("$.format: missing (expected 'prunesearch.arch/v1')")
        if d["format"] != FORMAT:
            raise SpecError(
                f"$.format: unsupported format {shown(d['format'])}; this version reads {FORMAT!r}"
            )
        known = {"format", *cls.__dataclass_fields__} - {"allow_import", "source"}
        for key in d:
            if key not in known:
                raise SpecError(f"{_path(key)}: unknown field")
        for key in (
            "model",
            "input_shape",
            "widths",
            "base_widths",
            "flops",
            "params",
            "base_flops",
        ):
            if key not in d:
                raise SpecError(f"{_path(key)}: missing")
        model = _str(d["model"], "$.model")
        model_args = _obj(d.get("model_args", {}), "$.model_args")
        shape = d["input_shape"]
        if not isinstance(shape, list) or not shape:
            raise SpecError(f"$.input_shape: must be a non-empty list, got {shown(shape)}")
        shape = [_int(s, _path("input_shape", i), minimum=1) for i, s in enumerate(shape)]
        check_input_shape(shape, "$.input_shape")
        widths = _width_map(d["widths"], "widths")
        base = _width_map(d["base_widths"], "base_widths")
        for name, w in widths.items():
            if name not in base:
                raise SpecError(f"{_path('widths', name)}: group missing from $.base_widths")
            if w > base[name]:
                raise SpecError(f"{_path('widths', name)}: {w} exceeds the base width {base[name]}")
        budget = check_budget(d.get("budget"))
        versions = _obj(d.get("versions", {}), "$.versions")
        spec = cls(
            model=model,
            model_args=model_args,
            input_shape=shape,
            widths=widths,
            base_widths=base,
            flops=_int(d["flops"], "$.flops"),
            params=_int(d["params"], "$.params"),
            base_flops=_int(d["base_flops"], "$.base_flops"),
            flop_counter=_str(d.get("flop_counter", FLOP_COUNTER), "$.flop_counter"),
            budget=budget,
            search=_obj(d.get("search"), "$.search", optional=True),
            versions={str(k): str(v) for k, v in versions.items()},
        )
        spec.allow_import = import_permission(allow_import, model)
        if check_model and model_code_available(model, spec.allow_import):
            spec.check(spec.graph())
        return spec

    @classmethod
    def load(
        cls, path: str | Path, *, allow_import: AllowImport = False, check_model: bool = True
    ) -> ArchSpec:
        """Reads and validates a spec file; with ``check_model`` (the default), also against
        the model it names (building it) when its code is available: a spec of an
        unregistered model loads, and :func:`build` asks for ``allow_import``."""
        path = Path(path)
        try:
            data = read_json(path, "spec", expect=None)
        except PrunesearchError as exc:
            raise SpecError(str(exc)) from None
        try:
            spec = cls.from_dict(data, allow_import=allow_import, check_model=check_model)
        except SpecError as exc:
            raise SpecError(f"spec {path}: {exc}") from None
        spec.source = str(path)
        return spec

    # -- checks and output ------------------------------------------------------------------
    def graph(self, *, allow_import: AllowImport = False) -> ChannelGraph:
        """The traced base model this spec prunes (importing its code if the spec was loaded
        with ``allow_import`` or ``allow_import`` is given here)."""
        try:
            return base_graph(
                self.model,
                self.model_args,
                self.input_shape,
                allow_import=allow_import or self.allow_import,
            )
        except SpecError as exc:
            if self.source is None:
                raise
            raise SpecError(f"spec {self.source}: {exc}") from None

    def require_code(self) -> None:
        """Refuses, before any other work, a spec whose model code may not be imported here
        (the error says how to allow it)."""
        if not model_code_available(self.model, self.allow_import):
            self.graph()  # raises the refusal, naming --allow-import

    def check(self, graph: ChannelGraph) -> None:
        """Checks the widths and recorded costs against the traced base model."""
        groups = graph.base_widths
        for name, size in self.base_widths.items():
            if name not in groups:
                raise SpecError(
                    f"{_path('base_widths', name)}: no such group in model {self.model!r}"
                )
            if size != groups[name]:
                raise SpecError(
                    f"{_path('base_widths', name)}: model {self.model!r} has "
                    f"{groups[name]} channels there, not {size}"
                )
        for g in graph.groups:
            if g.name not in self.widths:
                raise SpecError(f"{_path('widths', g.name)}: missing (every group needs a width)")
            if self.widths[g.name] % g.step:
                raise SpecError(
                    f"{_path('widths', g.name)}: {self.widths[g.name]} is not a "
                    f"multiple of {g.step} (the group keeps whole conv or norm "
                    "groups)"
                )
        for key, actual in (
            ("base_flops", graph.flops()),
            ("flops", graph.flops(self.widths)),
            ("params", graph.params(self.widths)),
        ):
            if getattr(self, key) != actual:
                raise SpecError(
                    f"{_path(key)}: {getattr(self, key)} does not match the "
                    f"widths (counted {actual})"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "model_args": self.model_args,
            "input_shape": list(self.input_shape),
            "widths": dict(self.widths),
            "base_widths": dict(self.base_widths),
            "flops": self.flops,
            "params": self.params,
            "base_flops": self.base_flops,
            "flop_counter": self.flop_counter,
            "budget": self.budget,
            "search": self.search,
            "versions": dict(self.versions),
        }

    def save(self, path: str | Path) -> Path:
        """Writes the spec as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    def summary(self) -> dict[str, Any]:
        """Per-group widths against the base model, and the spec's costs, as plain data."""
        rows = [
            {
                "group": name,
                "base": base,
                "width": self.widths[name],
                "keep_ratio": round(self.widths[name] / base, 4),
            }
            for name, base in self.base_widths.items()
        ]
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "groups": rows,
            "flops": self.flops,
            "base_flops": self.base_flops,
            "flops_ratio": round(self.flops / self.base_flops, 4) if self.base_flops else None,
            "params": self.params,
            "base_params": self.graph().params(),
            "flop_counter": self.flop_counter,
            "budget": self.budget,
        }

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.base_flops if self.base_flops else math.nan


def build(spec: ArchSpec, *, allow_import: AllowImport = False) -> nn.Module:
    """A freshly initialised model with the spec's widths.

    The base model is pruned to the widths, then every module's ``reset_parameters`` is re-run
    (fan-in based inits see the new widths) followed by the model's own ``init_weights`` if it
    has one (the zoo models do: the paper's initialisation).
    """
    graph = spec.graph(allow_import=allow_import)
    spec.check(graph)
    return reinitialize(graph.prune(spec.widths))


def reinitialize(model: nn.Module) -> nn.Module:
    """Fresh weights for a (pruned) model, in place: every module's ``reset_parameters``, then
    the model's own ``init_weights`` if it has one; returned in train mode."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        init = getattr(model, "init_weights", None)
        if callable(init):
            init()
    return model.train()
