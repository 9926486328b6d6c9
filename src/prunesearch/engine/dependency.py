"""Channel-dependency analysis of a traced model.

Walks a shape-propagated ``torch.fx`` graph once, in forward order, and describes the channel
dimension of every tensor (dim 1, or wherever a permute moved it) as a *layout*: a sequence of
segments, each one whole *channel space* (:mod:`prunesearch.engine.channels`). A space is born at a
producer (a conv or linear layer's output channels) or as a fixed source (the network input,
the output of an op we do not understand). Ops then relate spaces:

* pass-through ops (norms, activations, pooling, depthwise conv, spatial reductions, eval-mode
  identities) keep the layout; a permute moves the channel dim, and channels-last layers
  (``Linear``, ``LayerNorm`` over the last dim) act on it there;
* elementwise binary ops (residual ``+``, SE gates ``*``, a layer scale ``gamma * x``) and
  shared modules *unite* spaces, which must then be pruned together (union-find);
* grouped convolutions and GroupNorm give spaces a *step* (widths in whole conv or norm groups);
* ``torch.cat`` on the channel dim concatenates layouts (the offsets are the segment lengths);
  ``split``, ``chunk`` and literal channel slices cut them (a space a cut falls inside is cut
  in two), keeping whole what the pruned model would cut elsewhere;
* flattening a CxHxW map multiplies each segment's ``inner`` size (features per channel).

Anything else, and the network output, *fixes* the spaces it touches: their channels are never
pruned. The analysis also records, per parametric module, its role (how its weights are sliced,
:mod:`prunesearch.engine.layer_rules`) and, per counted op, an exact FLOP/parameter term
``coef * size(layout_a) * size(layout_b)`` mirroring fvcore's formulas, so that costs for any
widths are a cheap polynomial.

Decision: unknown ops are never guessed at. Keeping channels whole is always correct; pruning
them wrongly would corrupt the model silently.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunesearch.engine.channels import Analysis, Layout, ModuleRole, Segment, Term
from prunesearch.engine.layer_rules import LayerRules
from prunesearch.engine.ops import (
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    CAT_FUNCTIONS,
    ELEMENTWISE_FUNCTIONS,
    PASS_FUNCTIONS,
    PASS_METHODS,
    PERMUTE_FUNCTIONS,
    PERMUTE_METHODS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    RESHAPE_FUNCTIONS,
    RESHAPE_METHODS,
    SHAPE_METHODS,
    UPSAMPLE_FUNCTIONS,
    describe,
    eval_identity,
    group_norm_follows,
    int_list,
    is_op,
    layout_size,
    nodes_in,
    norm_owner,
    tensor_shape,
)

__all__ = ["Analysis", "Layout", "ModuleRole", "Segment", "Term", "analyze"]


class _Walker(LayerRules):
    def __init__(
        self,
        gm: fx.GraphModule,
        treat_as: dict[type, type] | None = None,
        root: nn.Module | None = None,
    ) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        # the traced model's own modules: the GraphModule holds only those it calls (a module
        # reached by get_attr alone, as F.batch_norm reaches its BN's tensors, is a stub there)
        self.root_modules = dict((root or gm).named_modules())
        self.a = Analysis()
        self.producer_space: dict[str, int] = {}
        self.treat_as = treat_as or {}
        self.why: dict[str, str] = {}  # node -> why its module is not sliced as torch's own
        self.ws_flops: dict[str, int | None] = {}  # weight-standardised convs' extra FLOPs

    # -- helpers ------------------------------------------------------------------------------
    def fresh(self, shape: tuple[int, ...] | None) -> Layout | None:
        if shape is None or len(shape) < 2:
            return None
        return (Segment(self.a.new_space(shape[1], fixed=True), shape[1]),)

    def layout_of(self, arg: Any) -> Layout | None:
        lay = self.a.layouts.get(arg.name) if isinstance(arg, fx.Node) else None
        return None if lay is None else self.a.expand(lay)

    def unknown(self, node: fx.Node) -> Layout | None:
        touched = False
        for n in nodes_in((node.args, node.kwargs)):
            lay = self.a.layouts.get(n.name)
            if lay is not None:
                touched |= self.a.fix_layout(lay)
        what = describe(node, self.modules)
        if node.name in self.why:
            what += f": {self.why[node.name]}"
        if touched:
            self.a.unknown_ops.append(what)
        if node.op != "call_method" or node.target not in SHAPE_METHODS:
            self.a.opaque_ops.append(what)
        self.a.dims.pop(node.name, None)
        return self.fresh(tensor_shape(node))

    def unify(self, node: fx.Node, layouts: list[Layout]) -> Layout | None:
        """Unites layouts that must stay index-aligned (``a + b``, a shared module's inputs)."""
        layouts = self.refine([self.a.expand(lay) for lay in layouts])
        if layouts is None:
            return self.unknown(node)
        first = layouts[0]
        prunable = any(not self.a.is_fixed(s.space) for lay in layouts for s in lay)
        for lay in layouts[1:]:
            for s, t in zip(lay, first, strict=True):
                self.a.union(s.space, t.space)
        if prunable and all(self.a.is_fixed(s.space) for s in first):
            # e.g. a tensor we do not understand (a literal view) scales or is added to them
            self.a.unknown_ops.append(f"{describe(node, self.modules)}: joins channels kept whole")
        return first

    def refine(self, layouts: list[Layout]) -> list[Layout] | None:
        """Layouts cut at each other's segment boundaries until their segments match, so that
        they can be united segment by segment: a ghost module's ``cat([x1, dw(x1)])`` (one
        space twice) added to a shortcut of one space cuts that space in two halves, each
        united with it. None if their sizes differ or a cut falls inside a channel."""
        if len({layout_size(lay) for lay in layouts}) != 1:
            return None
        for _ in range(8):  # a cut may cut spaces united with it: a few rounds settle
            layouts = [self.a.expand(lay) for lay in layouts]
            if all(
                [(s.length, s.inner) for s in lay] == [(s.length, s.inner) for s in layouts[0]]
                for lay in layouts
            ):
                return layouts
            ends = sorted({e for lay in layouts for e in _ends(lay)})
            sizes = [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]
            parts = [self.cut(lay, sizes) for lay in layouts]
            if any(p is None for p in parts):
                return None
            layouts = [tuple(seg for part in p for seg in part) for p in parts]
        return None

    def term(self, terms: list[Term], coef: int, *layouts: Layout, div: int = 1) -> None:
        terms.append(Term(int(coef), tuple(layouts), div))

    # -- per-node rules -----------------------------------------------------------------------
    def visit(self, node: fx.Node, order: int) -> None:
        shape = tensor_shape(node)
        if node.op in ("placeholder", "get_attr"):
            lay = self.fresh(shape)
        elif node.op == "output":
            for n in nodes_in(node.args):
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
        dim = self.a.dim(node.name)
        if lay is not None and (
            shape is None or dim >= len(shape) or layout_size(lay) != shape[dim]
        ):
            lay = self.unknown(node)  # a rule's assumption did not hold: keep it safe
        if lay is not None:
            self.a.layouts[node.name] = lay

    def non_tensor(self, node: fx.Node) -> None:
        safe = (node.op == "call_method" and node.target in SHAPE_METHODS) or (
            node.op == "call_function" and node.target is getattr
        )
        if node.op == "call_function" and node.target is operator.getitem:
            return None  # a part of a chunk: see getitem
        if is_op(node, {torch.split, torch.chunk}, {"split", "chunk"}):
            self.split(node)
            return None
        if not safe:
            self.unknown(node)
        return None

    def pass_through(self, node: fx.Node, src: Any, shape: tuple[int, ...]) -> Layout | None:
        """Same layout, channels on the same dim (elementwise and per-channel spatial ops)."""
        lay = self.layout_of(src)
        in_shape = tensor_shape(src)
        dim = self.a.dim(src.name) if isinstance(src, fx.Node) else 1
        if (
            lay is None
            or in_shape is None
            or len(shape) <= dim
            or shape[dim] != in_shape[dim]
            or (dim != 1 and len(shape) != len(in_shape))
        ):
            return self.unknown(node)
        if dim != 1:
            self.a.dims[node.name] = dim
        return lay

    def call_op(self, node: fx.Node, shape: tuple[int, ...], order: int) -> Layout | None:
        src = node.args[0] if node.args else None
        elementwise = is_op(node, ELEMENTWISE_FUNCTIONS, PASS_METHODS) or (
            node.op == "call_function" and eval_identity(node)
        )
        if elementwise:
            return self.pass_through(node, src, shape)
        if is_op(node, BINARY_FUNCTIONS, BINARY_METHODS):
            return self.binary(node, shape, order)
        if is_op(node, PERMUTE_FUNCTIONS, PERMUTE_METHODS):
            return self.permute(node, src, shape)
        if node.target is F.layer_norm:
            return self.functional_norm(node, src, order)
        if any(
            self.a.dim(n.name) != 1
            for n in nodes_in((node.args, node.kwargs))
            if n.name in self.a.layouts
        ):
            return self.unknown(node)  # the other rules read channels on dim 1
        return self.channels_first_op(node, src, shape, order)

    def channels_first_op(self, node, src, shape, order) -> Layout | None:
        t = node.target
        if is_op(node, PASS_FUNCTIONS, PASS_METHODS):
            in_shape = tensor_shape(src)
            if t is F.adaptive_avg_pool2d and in_shape is not None and len(in_shape) == 4:
                lay = self.layout_of(src)
                if lay is not None:
                    self.term(self.a.flop_terms, math.prod(in_shape) // in_shape[1], lay)
            return self.pass_through(node, src, shape)
        if is_op(node, CAT_FUNCTIONS, set()):
            return self.cat(node, shape)
        if is_op(node, RESHAPE_FUNCTIONS, RESHAPE_METHODS):
            literal = t in ("view", "reshape") or t is torch.reshape
            return self.reshape(node, src, shape, literal_channels=literal)
        if is_op(node, REDUCE_FUNCTIONS, REDUCE_METHODS):
            return self.reduce(node, src, shape)
        if t is operator.getitem:
            return self.getitem(node, src, shape)
        if t is F.batch_norm or t is F.group_norm:
            return self.functional_norm(node, src, order)
        if t in UPSAMPLE_FUNCTIONS:
            mode = node.args[3] if len(node.args) > 3 else node.kwargs.get("mode", "nearest")
            return self.upsample(node, src, shape, mode)
        if t is F.pad:
            pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
            in_shape = tensor_shape(src)
            if isinstance(pad, list | tuple) and in_shape and len(pad) <= 2 * (len(in_shape) - 2):
                return self.pass_through(node, src, shape)
        return self.unknown(node)

    def functional_norm(self, node: fx.Node, src: Any, order: int) -> Layout | None:
        """``F.batch_norm`` / ``F.layer_norm`` / ``F.group_norm`` on a norm module's own
        tensors (timm's BatchNormAct2d and GroupNormAct, torchvision's LayerNorm2d) prunes like
        that module (a group norm: if its forward follows its pruned group count)."""
        owner = norm_owner(node, self.root_modules)
        lay_in, in_shape = self.layout_of(src), tensor_shape(src)
        if owner is None or lay_in is None or in_shape is None:
            return self.unknown(node)
        m = self.root_modules[owner]
        if node.target is F.batch_norm:
            return self.batchnorm(node, owner, m, lay_in, in_shape, order)
        if node.target is F.group_norm:
            groups = node.args[1] if len(node.args) > 1 else node.kwargs.get("num_groups")
            if groups != m.num_groups or not group_norm_follows(m, in_shape):
                return self.unknown(node)
            return self.groupnorm(node, owner, m, lay_in, in_shape, order)
        shape_arg = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
        if (
            self.a.dim(src.name) != len(in_shape) - 1
            or shape_arg is None
            or tuple(shape_arg) != tuple(m.normalized_shape)
        ):
            return self.unknown(node)
        return self.layernorm(node, owner, m, lay_in, in_shape, order)

    def binary(self, node: fx.Node, shape: tuple[int, ...], order: int) -> Layout | None:
        """``a + b``, ``a * b``: operands that are not broadcast along the channels must hold
        the same channels (on the same dim of the result); a module's parameter broadcast
        against them (a layer scale) is sliced with them."""
        operands = [
            (arg, s, len(shape) - len(s))
            for arg in list(node.args[:2]) + list(node.kwargs.values())
            if (s := tensor_shape(arg)) is not None
        ]
        dims = {
            self.a.dim(a.name) + off
            for a, s, off in operands
            if a.op != "get_attr" and self.layout_of(a) is not None and s[self.a.dim(a.name)] != 1
        }
        if len(dims) != 1:
            return self.unknown(node)
        dim = dims.pop()
        layouts: list[Layout] = []
        for arg, s, off in operands:
            if dim - off < 0 or s[dim - off] == 1:
                continue  # broadcast along channels: does not constrain them
            lay = self.parameter(arg, dim - off, order)
            if lay is None:
                lay = self.layout_of(arg)
                if lay is None or self.a.dim(arg.name) + off != dim:
                    return self.unknown(node)
            layouts.append(lay)
        if dim != 1:
            self.a.dims[node.name] = dim
        united = self.unify(node, layouts)
        if united is None:  # a parameter's own space too (it is sliced by its role)
            for lay in layouts:
                self.a.fix_layout(lay)
        return united

    def permute(self, node: fx.Node, src: Any, shape: tuple[int, ...]) -> Layout | None:
        """``permute`` / ``transpose`` move the channel dim; the layout stays."""
        lay, in_shape = self.layout_of(src), tensor_shape(src)
        order = int_list(node.args[1:] or list(node.kwargs.values()))
        if lay is None or in_shape is None or order is None:
            return self.unknown(node)
        n = len(in_shape)
        dim = self.a.dim(src.name)
        if node.target in ("permute", torch.permute):
            if sorted(d % n for d in order) != list(range(n)):
                return self.unknown(node)
            new = [d % n for d in order].index(dim)
        else:
            if len(order) != 2:
                return self.unknown(node)
            a, b = (d % n for d in order)
            new = b if dim == a else a if dim == b else dim
        if new != 1:
            self.a.dims[node.name] = new
        return lay

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

    def split(self, node: fx.Node) -> None:
        """``x.chunk(n, dim=1)``, ``x.split(size, dim=1)``: each ``getitem`` of the result
        takes its part of the channels (a space a cut falls inside is cut in two). The pruned
        model cuts its fewer channels again: into ``n`` equal parts for ``chunk`` (the parts
        are united: each keeps the same channels), every ``size`` channels for ``split`` with
        a literal int (every part but the last keeps its channels whole). A list of sizes that
        is an attribute of the module whose forward splits (timm's MixedConv2d ``splits``) is
        rewritten in the pruned model to the parts' widths: each part prunes on its own.
        Anything else keeps them whole."""
        src = node.args[0]
        lay, in_shape = self.layout_of(src), tensor_shape(src)
        arg = (
            node.args[1]
            if len(node.args) > 1
            else next((v for k, v in node.kwargs.items() if k != "dim"), None)
        )
        chunk = node.target in ("chunk", torch.chunk)
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        sizes, attr = None, None
        if (
            lay is not None
            and in_shape is not None
            and isinstance(dim, int)
            and dim % len(in_shape) == 1 == self.a.dim(src.name)
            and all(u.op == "call_function" and u.target is operator.getitem for u in node.users)
        ):
            sizes = _part_sizes(in_shape[1], arg, chunk)
            attr = None if chunk or sizes is not None else self.sizes_attribute(node, arg)
            sizes = list(arg) if attr is not None else sizes
        parts = None if sizes is None else self.cut(lay, sizes)
        if parts is None:
            self.unknown(node)
            return
        if chunk:
            if self.unify(node, parts) is None:
                return
        elif attr is not None:
            if attr in self.a.split_sizes:  # a module called again: the same parts
                for old, new in zip(self.a.split_sizes[attr], parts, strict=True):
                    self.unify(node, [old, new])
            self.a.split_sizes.setdefault(attr, tuple(parts))
        else:
            for part in parts[:-1]:
                self.a.fix_layout(part)
        for user in node.users:
            self.a.layouts[user.name] = parts[user.args[1]]

    def sizes_attribute(self, node: fx.Node, sizes: Any) -> str | None:
        """``"module.attr"``: the one list (or tuple) attribute of the module whose forward
        calls ``node`` that equals ``sizes`` (a split's sections); None if there is not one."""
        if not isinstance(sizes, list | tuple) or not all(isinstance(n, int) for n in sizes):
            return None
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        owner = str(stack[-1][0]) if stack else ""
        m = self.root_modules.get(owner)
        found = [
            k
            for k, v in (vars(m) if m is not None else {}).items()
            if isinstance(v, list | tuple) and [*v] == [*sizes] and not k.startswith("_")
        ]
        return f"{owner}.{found[0]}" if len(found) == 1 else None

    def cut(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        """``layout`` cut into parts of ``sizes`` features; a space a cut falls inside is cut
        (:meth:`Analysis.cut`; a fixed one is replaced here by two fixed parts). None if a cut
        falls inside one channel's features (after a flatten)."""
        for at in itertools.accumulate(sizes[:-1]):
            offset = 0
            for i, seg in enumerate(layout):
                end = offset + seg.length * seg.inner
                if offset < at < end:
                    if (at - offset) % seg.inner:
                        return None
                    k = (at - offset) // seg.inner
                    if self.a.cut(seg.space, k):
                        layout = self.a.expand(layout)
                    else:
                        layout = (
                            *layout[:i],
                            *(
                                Segment(self.a.new_space(n, fixed=True), n, seg.inner)
                                for n in (k, seg.length - k)
                            ),
                            *layout[i + 1 :],
                        )
                    break
                offset = end
        parts: list[Layout] = []
        rest = list(layout)
        for size in sizes:
            part = []
            while size > 0:
                part.append(rest.pop(0))
                size -= part[-1].length * part[-1].inner
            parts.append(tuple(part))
        return parts

    def reshape(self, node, src, shape, literal_channels: bool) -> Layout | None:
        lay = self.layout_of(src)
        in_shape = tensor_shape(src)
        if lay is None or in_shape is None or len(shape) < 2 or shape[0] != in_shape[0]:
            return self.unknown(node)
        if literal_channels:
            # view/reshape: a hard-coded channel count would break once channels are removed
            sizes = (
                node.args[1:]
                if len(node.args) > 2
                else node.args[1]
                if len(node.args) > 1
                else node.kwargs.get("shape", ())
            )
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
        in_shape = tensor_shape(src)
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
        if node.name in self.a.layouts:
            return self.a.layouts[node.name]  # a part of a chunk or split (set by split)
        idx = node.args[1]
        full = slice(None, None, None)
        if not (
            isinstance(idx, tuple)
            and len(idx) >= 2
            and idx[0] == full
            and all(isinstance(i, slice | int) for i in idx[1:])
        ):
            return self.unknown(node)
        lay, in_shape = self.layout_of(src), tensor_shape(src)
        if idx[1] == full or lay is None or in_shape is None:
            return self.pass_through(node, src, shape)
        return self.channel_slice(node, lay, in_shape[1], idx[1])

    def channel_slice(self, node, lay: Layout, channels: int, index: Any) -> Layout | None:
        """``x[:, a:b]`` with literal bounds: the pruned model slices at the same places, so the
        channels before ``b`` (before ``a`` when the slice runs to the end) stay whole."""
        if (
            not isinstance(index, slice)
            or index.step not in (None, 1)
            or not all(
                v is None or (isinstance(v, int) and v >= 0) for v in (index.start, index.stop)
            )
        ):
            return self.unknown(node)  # a negative bound counts from the pruned model's end
        start, stop, _ = index.indices(channels)
        if stop <= start:
            return self.unknown(node)
        sizes = [n for n in (start, stop - start, channels - stop) if n]
        parts = self.cut(lay, sizes)
        if parts is None:
            return self.unknown(node)
        middle = 1 if start else 0
        self.a.fix_layout(
            tuple(seg for part in parts[: middle + (stop < channels)] for seg in part)
        )
        return parts[middle]


def _ends(layout: Layout) -> list[int]:
    """Where each segment of ``layout`` ends, in features."""
    return list(itertools.accumulate(seg.length * seg.inner for seg in layout))


def _part_sizes(total: int, arg: Any, chunk: bool) -> list[int] | None:
    """The channel counts of the parts of ``chunk(arg)`` / ``split(arg)`` over ``total``."""
    if chunk:
        if not isinstance(arg, int) or arg < 1:
            return None
        each = -(-total // arg)  # torch.chunk: ceil-sized parts, as many as fit
        return [min(each, total - i) for i in range(0, total, each)]
    if isinstance(arg, int) and arg > 0:
        return [min(arg, total - i) for i in range(0, total, arg)]
    return None  # sections: the pruned model's fewer channels would not add up to them


def analyze(
    gm: fx.GraphModule, treat_as: dict[type, type] | None = None, root: nn.Module | None = None
) -> Analysis:
    """Runs the analysis on a GraphModule whose nodes carry ``tensor_meta`` (ShapeProp).

    ``treat_as``: module classes the user vouches compute as the torch layer they subclass
    (sliced like it although their forward, or hooks, are their own). ``root``: the traced
    model (default: ``gm``)."""
    walker = _Walker(gm, treat_as, root)
    for order, node in enumerate(gm.graph.nodes):
        walker.visit(node, order)
    return walker.a
