"""Channel-dependency analysis of a traced model.

Walks a shape-propagated ``torch.fx`` graph once, in forward order, and describes the channel
dimension (dim 1) of every tensor as a *layout*: a sequence of segments, each one whole *channel
space*. A space is born at a producer (a conv or linear layer's output channels) or as a fixed
source (the network input, the output of an op we do not understand). Ops then relate spaces:

* pass-through ops (BN, activations, pooling, depthwise conv, spatial reductions) keep the layout;
* elementwise binary ops (residual ``+``, SE gates ``*``) and shared modules *unite* spaces, which
  must then be pruned together (union-find);
* ``torch.cat`` on dim 1 concatenates layouts (the offsets are the segment lengths);
* flattening a CxHxW map multiplies each segment's ``inner`` size (features per channel).

Anything else, and the network output, *fixes* the spaces it touches: their channels are never
pruned. The analysis also records, per parametric module, its role (how its weights are sliced)
and, per counted op, an exact FLOP/parameter term ``coef * size(layout_a) * size(layout_b)``
mirroring fvcore's formulas, so that costs for any widths are a cheap polynomial.

Decision: unknown ops are never guessed at. Keeping channels whole is always correct; pruning
them wrongly would corrupt the model silently.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize

__all__ = ["Analysis", "ModuleRole", "Segment", "Term", "analyze"]


@dataclass(frozen=True)
class Segment:
    """A whole channel space inside a tensor's dim 1: ``length`` channels x ``inner`` features."""

    space: int
    length: int
    inner: int = 1


Layout = tuple[Segment, ...]


@dataclass
class ModuleRole:
    """How a parametric module's tensors are sliced when channels are removed.

    ``kind``: ``conv`` (dim 0 by ``out_space``, dim 1 by ``in_layout``), ``dwconv`` (dim 0 by
    ``in_layout``; in = out = groups), ``linear`` (like conv), ``bn`` (all by ``in_layout``).
    """

    name: str
    kind: str
    in_layout: Layout
    out_space: int | None
    order: int


@dataclass(frozen=True)
class Term:
    """``coef * prod(size(layout) for layout in layouts)``: one exact cost contribution."""

    coef: int
    layouts: tuple[Layout, ...]


@dataclass
class Analysis:
    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    fixed: list[bool] = field(default_factory=list)
    layouts: dict[str, Layout] = field(default_factory=dict)
    roles: dict[str, ModuleRole] = field(default_factory=dict)
    flop_terms: list[Term] = field(default_factory=list)
    param_terms: list[Term] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)  # ops that fixed prunable channels
    opaque_ops: list[str] = field(default_factory=list)  # every op the rules do not cover

    # -- union-find over channel spaces -------------------------------------------------------
    def new_space(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        root = s
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[s] != root:  # path compression
            self.parent[s], s = root, self.parent[s]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if ra > rb:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb] or self.size[ra] != self.size[rb]

    def is_fixed(self, s: int) -> bool:
        return self.fixed[self.find(s)]

    def fix_layout(self, layout: Layout) -> bool:
        """Fixes every space of ``layout``; returns whether any was prunable before."""
        changed = False
        for seg in layout:
            root = self.find(seg.space)
            changed |= not self.fixed[root]
            self.fixed[root] = True
        return changed


# -- op tables --------------------------------------------------------------------------------

_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
)

_PASS_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}
_PASS_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min",
    "clamp_min_", "clip", "clip_", "contiguous", "clone", "detach", "float", "abs", "neg",
}
_BINARY_FUNCTIONS = {
    operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
    operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub, torch.div,
    torch.maximum, torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
# Ops whose result is not a tensor and that do not constrain channels.
_SHAPE_METHODS = {"size", "dim", "numel"}


def _tensor_shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _nodes_in(arg: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(arg, out.append)
    return out


_KNOWN_BASES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.Flatten,
    nn.PReLU, *_PASS_MODULES)


def _not_plain(m: nn.Module) -> str | None:
    """Why a torch layer (or subclass) cannot be sliced as torch's own layer, or None: a
    subclass with its own ``forward`` computes something else (a weight-standardised conv), a
    parametrization or weight-norm hook rewrites its weight, hooks may change what it returns."""
    torch_forwards = {c.__dict__["forward"] for c in type(m).__mro__
                      if c.__module__.startswith("torch.") and "forward" in c.__dict__}
    if type(m).forward not in torch_forwards:
        return f"its own forward ({type(m).__qualname__})"
    if parametrize.is_parametrized(m):
        return "a parametrized weight"
    if m._forward_pre_hooks or m._forward_hooks:
        hooks = [type(h).__name__ for h in (*m._forward_pre_hooks.values(),
                                              *m._forward_hooks.values())]
        return f"forward hooks ({', '.join(hooks)})"
    return None


# Functions that are the identity when their ``training`` argument is False (traced in eval
# mode, it is the constant False): name -> its position. torchvision's
# ``stochastic_depth(input, p, mode, training)``, timm's ``drop_path(x, drop_prob, training)``.
_EVAL_IDENTITIES = {"stochastic_depth": 3, "drop_path": 2}


def _eval_identity(node: fx.Node) -> bool:
    position = _EVAL_IDENTITIES.get(getattr(node.target, "__name__", ""))
    if position is None:
        return False
    training = node.args[position] if len(node.args) > position else \
        node.kwargs.get("training", True)
    return training is False


def _layout_size(layout: Layout) -> int:
    return sum(seg.length * seg.inner for seg in layout)


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        m = modules[str(node.target)]
        extra = f", groups={m.groups}" if isinstance(m, nn.modules.conv._ConvNd) else ""
        return f"module '{node.target}' ({type(m).__name__}{extra})"
    if node.op == "call_method":
        return f"method '.{node.target}()' at node '{node.name}'"
    target = getattr(node.target, "__name__", str(node.target))
    return f"function '{target}' at node '{node.name}'"


class _Walker:
    def __init__(self, gm: fx.GraphModule, treat_as: dict[type, type] | None = None,
                 root: nn.Module | None = None) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        # the traced model's own modules: the GraphModule holds only those it calls (a module
        # reached by get_attr alone, as F.batch_norm reaches its BN's tensors, is a stub there)
        self.root_modules = dict((root or gm).named_modules())
        self.a = Analysis()
        self.producer_space: dict[str, int] = {}
        self.treat_as = treat_as or {}
        self.why: dict[str, str] = {}  # node -> why its module is not sliced as torch's own

    # -- helpers ------------------------------------------------------------------------------
    def fresh(self, shape: tuple[int, ...] | None) -> Layout | None:
        if shape is None or len(shape) < 2:
            return None
        return (Segment(self.a.new_space(shape[1], fixed=True), shape[1]),)

    def layout_of(self, arg: Any) -> Layout | None:
        return self.a.layouts.get(arg.name) if isinstance(arg, fx.Node) else None

    def unknown(self, node: fx.Node) -> Layout | None:
        touched = False
        for n in _nodes_in((node.args, node.kwargs)):
            lay = self.a.layouts.get(n.name)
            if lay is not None:
                touched |= self.a.fix_layout(lay)
        what = _describe(node, self.modules)
        if node.name in self.why:
            what += f": {self.why[node.name]}"
        if touched:
            self.a.unknown_ops.append(what)
        if node.op != "call_method" or node.target not in _SHAPE_METHODS:
            self.a.opaque_ops.append(what)
        return self.fresh(_tensor_shape(node))

    def unify(self, node: fx.Node, layouts: list[Layout]) -> Layout | None:
        """Unites layouts that must stay index-aligned (``a + b``, a shared module's inputs)."""
        first = layouts[0]
        shapes_match = all(
            len(lay) == len(first)
            and all((s.length, s.inner) == (t.length, t.inner)
                    for s, t in zip(lay, first, strict=True))
            for lay in layouts
        )
        if not shapes_match:
            return self.unknown(node)
        for lay in layouts[1:]:
            for s, t in zip(lay, first, strict=True):
                self.a.union(s.space, t.space)
        return first

    def term(self, terms: list[Term], coef: int, *layouts: Layout) -> None:
        terms.append(Term(int(coef), tuple(layouts)))

    # -- per-node rules -----------------------------------------------------------------------
    def visit(self, node: fx.Node, order: int) -> None:
        shape = _tensor_shape(node)
        if node.op in ("placeholder", "get_attr"):
            lay = self.fresh(shape)
        elif node.op == "output":
            for n in _nodes_in(node.args):
                lay = self.a.layouts.get(n.name)
                if lay is not None:
                    self.a.fix_layout(lay)
            return
        elif shape is None:
            lay = self.non_tensor(node)
        elif node.op == "call_module":
            lay = self.call_module(node, shape, order)
        else:
            lay = self.call_op(node, shape, order)
        if lay is not None and (shape is None or _layout_size(lay) != shape[1]):
            lay = self.unknown(node)  # a rule's assumption did not hold: keep it safe
        if lay is not None:
            self.a.layouts[node.name] = lay

    def non_tensor(self, node: fx.Node) -> None:
        safe = (node.op == "call_method" and node.target in _SHAPE_METHODS) or (
            node.op == "call_function" and node.target is getattr
        )
        if not safe:
            self.unknown(node)
        return None

    def pass_through(self, node: fx.Node, src: Any, shape: tuple[int, ...]) -> Layout | None:
        lay = self.layout_of(src)
        in_shape = _tensor_shape(src)
        if lay is None or in_shape is None or len(shape) < 2 or shape[1] != in_shape[1]:
            return self.unknown(node)
        return lay

    def call_module(self, node: fx.Node, shape: tuple[int, ...], order: int) -> Layout | None:
        name = str(node.target)
        m = self.modules[name]
        src = node.args[0] if node.args else None
        lay_in = self.layout_of(src)
        in_shape = _tensor_shape(src)
        if lay_in is None or in_shape is None or len(node.args) != 1 or node.kwargs:
            return self.unknown(node)
        if isinstance(m, _KNOWN_BASES) and not any(isinstance(m, t) for t in self.treat_as):
            why = _not_plain(m)
            if why is not None:
                self.why[node.name] = why
                return self.unknown(node)
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return self.conv(node, name, m, lay_in, shape, order)
        if isinstance(m, nn.Linear) and len(in_shape) == 2:
            return self.producer(node, name, "linear", m, lay_in, shape, order, coef=shape[0])
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self.batchnorm(node, name, m, lay_in, in_shape, order)
        if isinstance(m, _PASS_MODULES) or (isinstance(m, nn.PReLU) and m.num_parameters == 1):
            if isinstance(m, nn.AdaptiveAvgPool2d) and len(in_shape) == 4:
                # fvcore: aten::adaptive_avg_pool2d costs one op per input element
                self.term(self.a.flop_terms, math.prod(in_shape) // in_shape[1], lay_in)
            return self.pass_through(node, src, shape)
        if isinstance(m, nn.Flatten):
            return self.reshape(node, src, shape, literal_channels=False)
        return self.unknown(node)

    def conv(self, node, name, m, lay_in, shape, order) -> Layout | None:
        k = math.prod(m.kernel_size)
        spatial = shape[0] * math.prod(shape[2:])
        if m.groups == 1:
            return self.producer(node, name, "conv", m, lay_in, shape, order, coef=spatial * k)
        if m.groups == m.in_channels == m.out_channels:  # depthwise: channels pass through
            self.shared(node, name, lay_in)
            # fvcore: N * prod(weight.shape) * prod(out spatial), weight = [C, 1, *k]
            self.term(self.a.flop_terms, spatial * k, lay_in)
            if name not in self.a.roles:
                self.a.roles[name] = ModuleRole(name, "dwconv", lay_in, None, order)
                self.term(self.a.param_terms, k + (m.bias is not None), lay_in)
            return self.a.roles[name].in_layout
        return self.unknown(node)

    def shared(self, node: fx.Node, name: str, lay_in: Layout) -> None:
        """A module called again must see the same channels: unite its input layouts."""
        role = self.a.roles.get(name)
        if role is not None:
            self.unify(node, [role.in_layout, lay_in])

    def producer(self, node, name, kind, m, lay_in, shape, order, coef) -> Layout | None:
        self.shared(node, name, lay_in)
        if name not in self.producer_space:
            self.producer_space[name] = self.a.new_space(shape[1])
        lay_out = (Segment(self.producer_space[name], shape[1]),)
        # conv: N * Cout * (Cin/1) * prod(k) * prod(out spatial); linear: N * Cin * Cout
        self.term(self.a.flop_terms, coef, lay_in, lay_out)
        if name not in self.a.roles:
            self.a.roles[name] = ModuleRole(name, kind, lay_in, self.producer_space[name], order)
            k = math.prod(getattr(m, "kernel_size", (1,)))
            self.term(self.a.param_terms, k, lay_in, lay_out)
            if m.bias is not None:
                self.term(self.a.param_terms, 1, lay_out)
        return lay_out

    def batchnorm(self, node, name, m, lay_in, in_shape, order) -> Layout | None:
        self.shared(node, name, lay_in)
        per_channel = math.prod(in_shape) // in_shape[1]
        # fvcore, eval mode: 1 op per element, +1 with affine; without running statistics BN
        # normalises by batch statistics even in eval, counted by fvcore's training formula: 4 (+1)
        factor = (4 if m.running_mean is None else 1) + int(m.affine)
        self.term(self.a.flop_terms, per_channel * factor, lay_in)
        if name not in self.a.roles:
            self.a.roles[name] = ModuleRole(name, "bn", lay_in, None, order)
            if m.affine:
                self.term(self.a.param_terms, 2, lay_in)
        return self.a.roles[name].in_layout

    def call_op(self, node: fx.Node, shape: tuple[int, ...], order: int) -> Layout | None:
        t = node.target
        is_fn = node.op == "call_function"
        src = node.args[0] if node.args else None
        if (is_fn and t in _PASS_FUNCTIONS) or (not is_fn and t in _PASS_METHODS):
            in_shape = _tensor_shape(src)
            if t is F.adaptive_avg_pool2d and in_shape is not None and len(in_shape) == 4:
                lay = self.layout_of(src)
                if lay is not None:
                    self.term(self.a.flop_terms, math.prod(in_shape) // in_shape[1], lay)
            return self.pass_through(node, src, shape)
        if (is_fn and t in _BINARY_FUNCTIONS) or (not is_fn and t in _BINARY_METHODS):
            return self.binary(node, shape)
        if is_fn and t in _CAT_FUNCTIONS:
            return self.cat(node, shape)
        if (is_fn and t in _RESHAPE_FUNCTIONS) or (not is_fn and t in _RESHAPE_METHODS):
            literal = t in ("view", "reshape") or t is torch.reshape
            return self.reshape(node, src, shape, literal_channels=literal)
        if (is_fn and t in _REDUCE_FUNCTIONS) or (not is_fn and t in _REDUCE_METHODS):
            return self.reduce(node, src, shape)
        if is_fn and t is operator.getitem:
            return self.getitem(node, src, shape)
        if is_fn and _eval_identity(node):
            return self.pass_through(node, src, shape)
        if is_fn and t is F.batch_norm:
            owner = self.batchnorm_owner(node)
            lay_in, in_shape = self.layout_of(src), _tensor_shape(src)
            if owner is not None and lay_in is not None and in_shape is not None:
                return self.batchnorm(node, owner, self.root_modules[owner], lay_in, in_shape,
                                      order)
        if is_fn and t is F.pad:
            pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
            in_shape = _tensor_shape(src)
            if isinstance(pad, list | tuple) and in_shape and len(pad) <= 2 * (len(in_shape) - 2):
                return self.pass_through(node, src, shape)
        return self.unknown(node)

    def batchnorm_owner(self, node: fx.Node) -> str | None:
        """The BatchNorm module whose own statistics and affine parameters a functional
        ``F.batch_norm`` call uses (timm's BatchNormAct2d: BN and activation in one module), so
        that pruning slices them; None if they are not one BatchNorm's."""
        names = ("running_mean", "running_var", "weight", "bias")
        given = dict(zip(names, node.args[1:5], strict=False)) | {
            k: v for k, v in node.kwargs.items() if k in names}
        owners = set()
        for attr, arg in given.items():
            if arg is None:
                continue
            if not isinstance(arg, fx.Node) or arg.op != "get_attr":
                return None
            owner, _, leaf = str(arg.target).rpartition(".")
            if leaf != attr:
                return None
            owners.add(owner)
        if len(owners) != 1:
            return None
        owner = owners.pop()
        m = self.root_modules.get(owner)
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or \
                {k for k, v in given.items() if v is not None} != {
                    k for k in names if getattr(m, k, None) is not None}:
            return None
        return owner

    def binary(self, node: fx.Node, shape: tuple[int, ...]) -> Layout | None:
        if len(shape) < 2:
            return self.unknown(node)
        layouts: list[Layout] = []
        for arg in list(node.args[:2]) + list(node.kwargs.values()):
            arg_shape = _tensor_shape(arg)
            if arg_shape is None:
                continue  # python scalar or non-tensor
            dim = 1 - (len(shape) - len(arg_shape))  # the arg's dim broadcast against dim 1
            if dim < 0 or arg_shape[dim] == 1:
                continue  # broadcast along channels: does not constrain them
            lay = self.layout_of(arg)
            if lay is None or dim != 1:
                return self.unknown(node)
            layouts.append(lay)
        if not layouts:
            return self.unknown(node)
        return self.unify(node, layouts)

    def cat(self, node: fx.Node, shape: tuple[int, ...]) -> Layout | None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, list | tuple) or not isinstance(dim, int):
            return self.unknown(node)
        layouts = [self.layout_of(t) for t in tensors]
        if any(lay is None for lay in layouts):
            return self.unknown(node)
        if dim % len(shape) == 1:
            return tuple(seg for lay in layouts for seg in lay)  # offsets = running lengths
        return self.unify(node, layouts)

    def reshape(self, node, src, shape, literal_channels: bool) -> Layout | None:
        lay = self.layout_of(src)
        in_shape = _tensor_shape(src)
        if lay is None or in_shape is None or len(shape) < 2 or shape[0] != in_shape[0]:
            return self.unknown(node)
        if literal_channels:
            # view/reshape: a hard-coded channel count would break once channels are removed
            sizes = node.args[1:] if len(node.args) > 2 else node.args[1] if len(node.args) > 1 \
                else node.kwargs.get("shape", ())
            dims = list(sizes) if isinstance(sizes, list | tuple) else [sizes]
            if len(dims) < 2 or (isinstance(dims[1], int) and dims[1] != -1):
                return self.unknown(node)
        if shape[1] == in_shape[1]:
            return lay
        if len(shape) == 2 and shape[1] == math.prod(in_shape[1:]):
            inner = math.prod(in_shape[2:])  # each channel becomes `inner` features
            return tuple(Segment(s.space, s.length, s.inner * inner) for s in lay)
        return self.unknown(node)

    def reduce(self, node, src, shape) -> Layout | None:
        in_shape = _tensor_shape(src)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if in_shape is None or dims is None:
            return self.unknown(node)
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims):
            return self.unknown(node)
        if any(d % len(in_shape) in (0, 1) for d in dims):
            return self.unknown(node)
        return self.pass_through(node, src, shape)

    def getitem(self, node, src, shape) -> Layout | None:
        idx = node.args[1]
        full = slice(None, None, None)
        if (
            isinstance(idx, tuple) and len(idx) >= 2 and idx[0] == full and idx[1] == full
            and all(isinstance(i, slice | int) for i in idx)
        ):
            return self.pass_through(node, src, shape)
        return self.unknown(node)


def analyze(gm: fx.GraphModule, treat_as: dict[type, type] | None = None,
            root: nn.Module | None = None) -> Analysis:
    """Runs the analysis on a GraphModule whose nodes carry ``tensor_meta`` (ShapeProp).

    ``treat_as``: module classes the user vouches compute as the torch layer they subclass
    (sliced like it although their forward, or hooks, are their own). ``root``: the traced
    model (default: ``gm``)."""
    walker = _Walker(gm, treat_as, root)
    for order, node in enumerate(gm.graph.nodes):
        walker.visit(node, order)
    return walker.a
