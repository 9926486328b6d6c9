"""``ps.trace``: a model -> channel-dependency graph -> prunable channel groups.

The graph is bound to the traced model (never modified) and answers three questions for any
widths (channels kept per group): the pruned model (:meth:`ChannelGraph.prune`), its FLOPs and
its parameter count (:meth:`ChannelGraph.flops`, :meth:`ChannelGraph.params`, analytic and exact).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from prunesearch.engine.channels import Analysis, Layout, ModuleRole, Segment
from prunesearch.engine.dependency import analyze
from prunesearch.engine.flops import CostModel, count_flops, count_params, eval_mode
from prunesearch.engine.importance import Importance, group_scores, top_channels
from prunesearch.engine.prune import layout_indices, prune_copy
from prunesearch.errors import PrunesearchError, TraceError, first_line

__all__ = ["ChannelGraph", "ChannelGroup", "OpChannels", "trace"]

logger = logging.getLogger(__name__)

Widths = Mapping[str, int]


@dataclass
class ChannelGroup:
    """Channels that must be pruned together (residual sums, SE gates, shared modules).

    Attributes:
        name: qualified name of the group's first producer module (forward order).
        size: channel count in the unpruned model.
        producers: conv/linear modules whose weight dim 0 (and bias) is sliced for this group,
            depthwise convs included.
        consumers: conv/linear modules whose weight dim 1 is sliced for this group.
        norms: ``(module, offset, inner)`` of each BatchNorm normalising these channels, at
            ``offset`` in its input (``inner`` features per channel after a flatten).
        rows: ``(producer, offset)`` for each place these channels hold in a producer's
            output channels (weight dim 0): offset 0 unless a split cut the producer's output
            (a chunk's united parts: once per part); depthwise convs included.
        followers: other modules and tensors sliced with these channels: LayerNorms,
            GroupNorms, elementwise parameters such as a layer scale (``module.attr``).
        step: widths are multiples of ``step`` (1 for most groups). With ``interleaved``,
            the channels are ``step`` equal runs that keep the same positions (the inputs or
            outputs of a grouped convolution: each conv group keeps as many channels);
            without, they are kept in whole runs of ``step`` channels (a GroupNorm's groups).
    """

    name: str
    size: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    norms: list[tuple[str, int, int]] = field(default_factory=list)
    rows: list[tuple[str, int]] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)
    step: int = 1
    interleaved: bool = False

    def nearest(self, width: float) -> int:
        """The allowed width (a multiple of ``step`` in ``step..size``) nearest ``width``."""
        return min(self.size, max(self.step, round(width / self.step) * self.step))


@dataclass(frozen=True)
class OpChannels:
    """One traced op, with the channel count (dim 1, features per example once flattened) of
    its output and of each tensor input as a linear function of the group widths:
    ``const + coef @ widths_vector`` (see :meth:`ChannelGraph.ops`)."""

    name: str  # the fx node
    module: nn.Module | None  # what a call_module node runs
    shape: tuple[int, ...]  # output shape at the base widths
    out: tuple[int, np.ndarray]
    inputs: tuple[tuple[int, np.ndarray], ...]
    in_shapes: tuple[tuple[int, ...], ...]

    @staticmethod
    def size(linear: tuple[int, np.ndarray], widths: np.ndarray) -> int:
        return int(linear[0] + linear[1] @ widths)


class _Tracer(fx.Tracer):
    """fx tracer that keeps user-given leaf modules whole and remembers where tracing failed."""

    def __init__(self, leaf_types: tuple[type, ...], leaf_names: set[str]) -> None:
        super().__init__()
        self.leaf_types, self.leaf_names = leaf_types, leaf_names
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaf_names or (self.leaf_types and isinstance(m, self.leaf_types)):
            return True
        if isinstance(m, nn.modules.conv._ConvNd) and not list(m.children()):
            return True  # a conv subclass with its own forward: judged whole by the rules
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = f"{self.path_of_module(m) or '<root>'} ({type(m).__name__})"
            raise


def trace(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    *,
    leaf_modules: Iterable[type | str] = (),
    treat_as: Mapping[type, type] | None = None,
) -> ChannelGraph:
    """Traces ``model`` into a :class:`ChannelGraph` (the model is not modified).

    Args:
        model: any ``nn.Module`` that ``torch.fx`` can trace.
        example_input: a tensor (or tuple of tensors) of the shape the model will see; FLOPs
            are counted at its batch size (use batch 1 for per-example FLOPs).
        leaf_modules: module classes or qualified names to keep opaque: fx does not trace into
            them and their channels are kept whole. Use it for parts with data-dependent control
            flow.
        treat_as: ``{MyConv: nn.Conv2d}``: classes that subclass a torch layer but have their
            own ``forward`` (or hooks), which you vouch compute as that layer does, so that they
            are pruned like it. Without it such modules keep their channels whole (a
            weight-standardised conv sliced as a plain one would compute something else).

    The model is traced and run in eval mode (then restored): branches taken only in training,
    such as auxiliary heads, are not part of the architecture that is pruned and counted.

    Raises:
        TraceError: fx cannot trace the model, or the example input does not run through it.
    """
    if not isinstance(model, nn.Module):
        raise PrunesearchError(f"trace() needs an nn.Module, got {type(model).__name__}")
    leaves = list(leaf_modules)
    tracer = _Tracer(
        tuple(t for t in leaves if isinstance(t, type)), {t for t in leaves if isinstance(t, str)}
    )
    try:
        with eval_mode(model):
            fx_graph = tracer.trace(model)
    except Exception as exc:
        where = f"in module {tracer.failed_in}" if tracer.failed_in else "in the model's forward"
        raise TraceError(
            f"torch.fx cannot trace the model {where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Data-dependent control flow cannot "
            "be traced: mark that module as a leaf (trace(..., leaf_modules=[...]); its channels "
            "are then kept whole) or move the dynamic part into a function wrapped with "
            "torch.fx.wrap"
        ) from None
    gm = fx.GraphModule(tracer.root, fx_graph)
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    try:
        # ShapeProp prints the failing node's traceback to stderr before raising: kept out of
        # the user's terminal, and the error names the cause (the op's own message)
        with eval_mode(model), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(*inputs)
    except Exception as exc:
        raise TraceError(
            f"the example input does not run through the model: {first_line(exc.__cause__ or exc)}"
        ) from None
    return ChannelGraph(model, inputs, gm, analyze(gm, dict(treat_as or {}), tracer.root))


class ChannelGraph:
    """Channel-dependency graph of a model: its prunable groups and their costs.

    Build it with :func:`trace`. ``graph.nx`` is a networkx DiGraph of the fx nodes (ops and
    modules) with each node's channel layout, for inspection.
    """

    def __init__(self, model: nn.Module, inputs: tuple, gm: fx.GraphModule, a: Analysis) -> None:
        self.model = model
        self.example_input = inputs[0] if len(inputs) == 1 else inputs
        self._inputs = inputs
        self._gm = gm
        self._a = a
        self.fixed_ops: list[str] = list(dict.fromkeys(a.unknown_ops))
        if self.fixed_ops:
            logger.warning(
                "channels kept whole (ops not understood): %s", "; ".join(self.fixed_ops)
            )
        self.groups: list[ChannelGroup] = []
        self._group_of_root: dict[int, int] = {}
        self._build_groups()
        # pruned with stated semantics, not exactly: their inputs change their filters' statistics
        self.standardised: list[str] = [
            r.name for r in a.roles.values() if r.standardised and self._resolve(r.in_layout)[1]
        ]
        if self.standardised:
            logger.warning(
                "weight-standardised convs prunable on their input channels (not exact: each "
                "filter is then standardised over the kept input channels alone, as a LayerNorm "
                "over channels normalises the kept ones; their output channels prune exactly): %s",
                ", ".join(self.standardised),
            )
        if not self.groups:
            seen = list(dict.fromkeys(a.opaque_ops))
            logger.warning(
                "no prunable channels in %s: no convolution or linear layer was understood%s",
                type(model).__name__,
                f" (ops not understood: {'; '.join(seen[:8])})" if seen else "",
            )
        self._by_name = {g.name: i for i, g in enumerate(self.groups)}
        # costs other than FLOPs and params, by budget kind: widths -> int (``budget.cost``)
        self.cost_models: dict[str, Callable[[Widths | None], int]] = {}
        self._base = np.asarray([g.size for g in self.groups], dtype=np.int64)
        self._flops = CostModel(a.flop_terms, self._resolve, len(self.groups))
        self._params = CostModel(a.param_terms, self._resolve, len(self.groups))
        self._fvcore_flops = not self._flops.calibrate(
            self._base, count_flops(model, self.example_input), "FLOP"
        )
        self._fvcore_params = not self._params.calibrate(
            self._base, count_params(model), "parameter"
        )

    # -- structure ----------------------------------------------------------------------------
    def _group_of(self, space: int) -> int | None:
        return self._group_of_root.get(self._a.find(space))

    def _resolve(self, layout: Layout) -> tuple[int, list[tuple[int, int]]]:
        const, linear = 0, []
        for seg in self._a.expand(layout):
            g = self._group_of(seg.space)
            if g is None:
                const += seg.length * seg.inner
            else:
                linear.append((g, seg.inner))
        return const, linear

    def _out_layout(self, role: ModuleRole) -> Layout:
        """A producer's output channels, with the parts of a space a split cut."""
        return self._a.expand((Segment(role.out_space, self._a.size[role.out_space]),))

    def _build_groups(self) -> None:
        a = self._a
        roles = sorted(a.roles.values(), key=lambda r: r.order)
        for role in roles:
            if role.out_space is None:
                continue
            offset = 0
            for seg in self._out_layout(role):
                if not a.is_fixed(seg.space):
                    root = a.find(seg.space)
                    if root not in self._group_of_root:
                        self._group_of_root[root] = len(self.groups)
                        # a producer split into parts that prune apart (MixNet): by offset
                        taken = any(g.name == role.name for g in self.groups)
                        self.groups.append(
                            ChannelGroup(
                                f"{role.name}@{offset}" if taken else role.name,
                                a.size[root],
                                step=a.step[root],
                                interleaved=a.interleaved[root],
                            )
                        )
                    self._add_producer(self.groups[self._group_of_root[root]], role.name, offset)
                offset += seg.length
        for role in roles:
            offset = 0
            for seg in a.expand(role.in_layout):
                g = self._group_of(seg.space)
                if g is not None:
                    group = self.groups[g]
                    if role.kind == "dwconv":
                        self._add_producer(group, role.name, offset)
                    elif role.kind == "bn":
                        group.norms.append((role.name, offset, seg.inner))
                    elif role.kind in ("ln", "gn", "param"):
                        group.followers.append(role.name)
                    elif role.name not in group.consumers:
                        group.consumers.append(role.name)
                offset += seg.length * seg.inner
        order = {r.name: r.order for r in roles}
        for group in self.groups:
            group.producers.sort(key=order.__getitem__)
            group.rows.sort(key=lambda row: order[row[0]])

    @staticmethod
    def _add_producer(group: ChannelGroup, name: str, offset: int) -> None:
        if name not in group.producers:
            group.producers.append(name)
        group.rows.append((name, offset))

    @property
    def nx(self) -> nx.DiGraph:
        """The traced ops as a networkx DiGraph; node attribute ``groups`` names the groups of
        its output channels (``None`` where channels are fixed)."""
        g = nx.DiGraph()
        for node in self._gm.graph.nodes:
            lay = self._a.layouts.get(node.name)
            lay = None if lay is None else self._a.expand(lay)
            names = (
                None
                if lay is None
                else [
                    self.groups[i].name if (i := self._group_of(s.space)) is not None else None
                    for s in lay
                ]
            )
            g.add_node(node.name, op=node.op, target=str(node.target), groups=names)
            for inp in node.all_input_nodes:
                g.add_edge(inp.name, node.name)
        return g

    def _linear(self, layout: Layout) -> tuple[int, np.ndarray]:
        const, linear = self._resolve(layout)
        coef = np.zeros(len(self.groups), dtype=np.int64)
        for g, inner in linear:
            coef[g] += inner
        return const, coef

    def ops(self) -> list[OpChannels]:
        """Every traced op that makes a tensor with a channel layout, in forward order, with
        its output's and tensor inputs' channel counts as linear functions of the widths: what
        a cost model other than FLOPs (measured latency) is built from."""
        out = []
        for node in self._gm.graph.nodes:
            lay = self._a.layouts.get(node.name)
            meta = node.meta.get("tensor_meta")
            if (
                lay is None
                or node.op in ("placeholder", "get_attr", "output")
                or not hasattr(meta, "shape")
            ):
                continue
            args = [
                n
                for n in node.all_input_nodes
                if n.name in self._a.layouts and hasattr(n.meta.get("tensor_meta"), "shape")
            ]
            module = self._gm.get_submodule(str(node.target)) if node.op == "call_module" else None
            out.append(
                OpChannels(
                    node.name,
                    module,
                    tuple(meta.shape),
                    self._linear(lay),
                    tuple(self._linear(self._a.layouts[n.name]) for n in args),
                    tuple(tuple(n.meta["tensor_meta"].shape) for n in args),
                )
            )
        return out

    def group(self, name: str) -> ChannelGroup:
        try:
            return self.groups[self._by_name[name]]
        except KeyError:
            raise PrunesearchError(f"unknown group {name!r}") from None

    @property
    def base_widths(self) -> dict[str, int]:
        """Every group's unpruned channel count."""
        return {g.name: g.size for g in self.groups}

    # -- widths ---------------------------------------------------------------------------------
    def widths_vector(self, widths: Widths | None) -> np.ndarray:
        """Validates ``widths`` and returns them as an int64 vector in group order."""
        vec = self._base.copy()
        if widths is None:
            return vec
        if not isinstance(widths, Mapping):
            raise PrunesearchError(
                f"widths must be a mapping of group name to channels, got {type(widths).__name__}"
            )
        for name, w in widths.items():
            i = self._by_name.get(name)
            if i is None:
                raise PrunesearchError(f"widths: unknown group {name!r}")
            if isinstance(w, bool) or not isinstance(w, int | np.integer):
                raise PrunesearchError(f"widths[{name!r}] must be an integer, got {w!r}")
            g = self.groups[i]
            if not 1 <= w <= g.size:
                raise PrunesearchError(f"widths[{name!r}] must be in 1..{g.size}, got {w}")
            if w % g.step:
                raise PrunesearchError(
                    f"widths[{name!r}] must be a multiple of {g.step} "
                    f"(whole {'conv' if g.interleaved else 'norm'} groups), "
                    f"got {w}"
                )
            vec[i] = int(w)
        return vec

    def stages(self) -> dict[str, int]:
        """Group -> stage index: stages are the distinct spatial sizes of the groups' first
        producers' outputs, largest first (0 = the stem's resolution); groups on flat features
        (linear layers) form the last stage."""
        shapes = {
            n.target: tuple(n.meta["tensor_meta"].shape[2:])
            for n in self._gm.graph.nodes
            if n.op == "call_module" and "tensor_meta" in n.meta
        }
        sizes = {g.name: shapes.get(g.name, ()) for g in self.groups}
        spatial = sorted({s for s in sizes.values() if s}, key=lambda s: -math.prod(s))
        index = {s: i for i, s in enumerate(spatial)}
        return {name: index.get(s, len(spatial)) for name, s in sizes.items()}

    def flops(self, widths: Widths | None = None) -> int:
        """FLOPs (fvcore MACs) of the model pruned to ``widths``: exact, without building it."""
        vec = self.widths_vector(widths)
        if self._fvcore_flops:
            return count_flops(self.prune(widths or {}), self.example_input)
        return self._flops(vec)

    def params(self, widths: Widths | None = None) -> int:
        """Parameter count of the model pruned to ``widths``: exact, without building it."""
        vec = self.widths_vector(widths)
        if self._fvcore_params:
            return count_params(self.prune(widths or {}))
        return self._params(vec)

    # -- pruning --------------------------------------------------------------------------------
    def keep_indices(
        self, widths: Widths, importance: Importance = "l1"
    ) -> dict[str, torch.Tensor]:
        """Sorted channel indices kept in each group that ``widths`` shrinks."""
        vec = self.widths_vector(widths)
        shrunk = [i for i, g in enumerate(self.groups) if vec[i] < g.size]
        scores = group_scores(self.model, [self.groups[i] for i in shrunk], importance)
        groups = [self.groups[i] for i in shrunk]
        return {
            g.name: top_channels(scores[g.name], int(vec[i]), g.step, g.interleaved)
            for i, g in zip(shrunk, groups, strict=True)
        }

    def prune(self, widths: Widths, importance: Importance = "l1") -> nn.Module:
        """A new, physically smaller copy of the model keeping ``widths[g]`` channels per group.

        Args:
            widths: channels kept per group name; groups left out keep all their channels.
            importance: ``"l1"`` (filter L1 norm), ``"slimming"`` (BN |gamma|), or a mapping of
                group name to a 1-D score tensor; the top-``width`` channels of each group are
                kept, in their original order, with their weights and BN statistics.

        Module names and classes are those of the original model, which is left untouched.
        """
        slices = self.kept_slices(widths, importance)
        pruned = prune_copy(self.model, self._a.roles, lambda role: slices[role.name])
        modules = dict(pruned.named_modules())
        for target, parts in self._a.split_sizes.items():  # a split's list of sizes
            owner, _, attr = target.rpartition(".")
            sizes = [self._size(part, widths) for part in parts]
            setattr(modules[owner], attr, type(getattr(modules[owner], attr))(sizes))
        return pruned

    def _size(self, layout: Layout, widths: Widths) -> int:
        """The features of ``layout`` at ``widths``."""
        const, linear = self._resolve(layout)
        return const + sum(
            widths.get(self.groups[g].name, self.groups[g].size) * inner for g, inner in linear
        )

    def kept_slices(
        self, widths: Widths, importance: Importance = "l1"
    ) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """What :meth:`prune` keeps of each sliced module (or tensor, ``module.attr``):
        ``(input indices, output indices)`` along its channel dims, None where all are kept.
        Input indices count features (channels x ``inner`` after a flatten)."""
        kept_by_name = self.keep_indices(widths, importance)
        kept = {self._by_name[n]: idx for n, idx in kept_by_name.items()}
        out = {}
        for name, role in self._a.roles.items():
            out_idx = (
                None
                if role.out_space is None
                else layout_indices(self._out_layout(role), self._group_of, kept)
            )
            out[name] = (
                layout_indices(self._a.expand(role.in_layout), self._group_of, kept),
                out_idx,
            )
        return out

    def widths_of(self, pruned: nn.Module) -> dict[str, int]:
        """The group widths of ``pruned``, a channel-pruned copy of this graph's model made by
        any tool (Torch-Pruning, NNI, a hand edit) that keeps module names: reads each group's
        first producer, then checks that every parameter and buffer has the shape this graph
        gives those widths.

        Raises:
            PrunesearchError: a module is missing, or a shape is not one these groups can give
                (the other tool pruned something this graph keeps whole, or coupled channels
                apart).
        """
        widths = {g.name: self._width_in(pruned, i) for i, g in enumerate(self.groups)}
        self.widths_vector(widths)  # in range
        expected = {k: tuple(v.shape) for k, v in self.prune(widths).state_dict().items()}
        actual = {k: tuple(v.shape) for k, v in pruned.state_dict().items()}
        if expected.keys() != actual.keys():
            missing = sorted(expected.keys() ^ actual.keys())
            raise PrunesearchError(
                f"pruned model's state does not match the model's: {', '.join(missing[:3])} differ"
            )
        for key, shape in expected.items():
            if actual[key] != shape:
                raise PrunesearchError(
                    f"pruned model's {key} has shape {list(actual[key])}; "
                    f"these groups at those widths give {list(shape)}"
                )
        return widths

    def _width_in(self, pruned: nn.Module, index: int) -> int:
        """A group's width in another tool's pruned copy, read from the output channels of
        its first producer that holds no other prunable group."""
        group = self.groups[index]
        for name in group.producers:
            role = self._a.roles[name]
            layout = (
                self._out_layout(role)
                if role.out_space is not None
                else self._a.expand(role.in_layout)
            )
            groups = [self._group_of(s.space) for s in layout]
            fixed = sum(s.length for s, g in zip(layout, groups, strict=True) if g is None)
            places = [g for g in groups if g is not None]
            if set(places) != {index}:
                continue
            try:
                rows = int(pruned.get_submodule(name).weight.shape[0])
            except AttributeError:
                raise PrunesearchError(
                    f"pruned model has no module {name!r} with a weight (was it renamed?)"
                ) from None
            return (rows - fixed) // len(places)
        raise PrunesearchError(f"group {group.name!r}: no producer holds it alone")

    def __repr__(self) -> str:
        return (
            f"ChannelGraph({type(self.model).__name__}, {len(self.groups)} groups, "
            f"{self.flops():,} FLOPs, {self.params():,} params)"
        )
