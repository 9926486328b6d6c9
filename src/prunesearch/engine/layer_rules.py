"""Channel rules of the layers that own parameters: convolutions (plain, depthwise, grouped),
linear layers, normalisations (BatchNorm, LayerNorm over channels, GroupNorm, as modules or
functional calls on a module's tensors) and elementwise parameters (a layer scale).

Each rule records the module's role (how its tensors are sliced) and its exact FLOP and
parameter terms (fvcore's formulas), and returns the layout of its output. A mixin of the
walker in :mod:`prunesearch.engine.dependency`, which provides ``a`` (the :class:`Analysis`),
``unknown``, ``unify``, ``pass_through``, ``reshape`` and ``term``.
"""

from __future__ import annotations

import math

from torch import fx, nn

from prunesearch.engine.channels import Layout, ModuleRole, Segment
from prunesearch.engine.ops import (
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    ELEMENTWISE_MODULES,
    KNOWN_BASES,
    RESHAPE_FUNCTIONS,
    SPATIAL_MODULES,
    UPSAMPLE_FLOPS,
    describe,
    is_op,
    not_plain,
    tensor_shape,
)
from prunesearch.engine.standardised import standardisation_flops

Shape = tuple[int, ...]


class LayerRules:
    """The rules of parametric layers (see the module docstring)."""

    def call_module(self, node: fx.Node, shape: Shape, order: int) -> Layout | None:
        name = str(node.target)
        m = self.modules[name]
        src = node.args[0] if node.args else None
        lay_in, in_shape = self.layout_of(src), tensor_shape(src)
        if lay_in is None or in_shape is None or len(node.args) != 1 or node.kwargs:
            return self.unknown(node)
        if isinstance(m, KNOWN_BASES) and not any(isinstance(m, t) for t in self.treat_as):
            why = not_plain(m)
            if why is not None and why.startswith("its own forward"):
                lay = self.standardised_conv(node, name, m, lay_in, shape, order)
                if lay is not None:
                    return lay
            if why is not None:
                self.why[node.name] = why
                return self.unknown(node)
        last = self.a.dim(src.name) == len(in_shape) - 1
        if isinstance(m, ELEMENTWISE_MODULES) or (
            isinstance(m, nn.PReLU) and m.num_parameters == 1
        ):
            return self.pass_through(node, src, shape)
        if isinstance(m, nn.Linear) and last:
            return self.producer(node, name, m, lay_in, shape, order, math.prod(shape[:-1]))
        if isinstance(m, nn.LayerNorm) and last:
            return self.layernorm(node, name, m, lay_in, in_shape, order)
        if self.a.dim(src.name) != 1:
            return self.unknown(node)
        return self.channels_first_module(node, name, m, src, shape, order)

    def channels_first_module(self, node, name, m, src, shape, order) -> Layout | None:
        lay_in, in_shape = self.layout_of(src), tensor_shape(src)
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return self.conv(node, name, m, lay_in, shape, order)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self.batchnorm(node, name, m, lay_in, in_shape, order)
        if isinstance(m, nn.GroupNorm):
            return self.groupnorm(node, name, m, lay_in, in_shape, order)
        if isinstance(m, SPATIAL_MODULES):
            if isinstance(m, nn.AdaptiveAvgPool2d) and len(in_shape) == 4:
                # fvcore: aten::adaptive_avg_pool2d costs one op per input element
                self.term(self.a.flop_terms, math.prod(in_shape) // in_shape[1], lay_in)
            return self.pass_through(node, src, shape)
        if isinstance(m, nn.Flatten):
            return self.reshape(node, src, shape, literal_channels=False)
        if isinstance(m, nn.Upsample):
            return self.upsample(node, src, shape, m.mode)
        return self.unknown(node)

    def upsample(self, node, src, shape, mode) -> Layout | None:
        """Resizing (``nn.Upsample``, ``F.interpolate``) acts on each channel alone, as an
        HRNet's fusion layers do before adding streams; fvcore counts ``UPSAMPLE_FLOPS[mode]``
        ops per output element of a 4-D tensor."""
        lay_in = self.layout_of(src)
        if lay_in is None or len(shape) != 4 or mode not in UPSAMPLE_FLOPS:
            return self.unknown(node)
        self.term(self.a.flop_terms, math.prod(shape) // shape[1] * UPSAMPLE_FLOPS[mode], lay_in)
        return self.pass_through(node, src, shape)

    # -- convolutions and linear layers -------------------------------------------------------
    def standardised_conv(self, node, name, m, lay_in, shape, order) -> Layout | None:
        """A weight-standardised conv (:mod:`prunesearch.engine.standardised`): a conv whose
        role is marked, plus the cost of its standardisation (per call) and of its per-filter
        parameters; None (kept whole) if ``m`` does not compute as one."""
        if name not in self.ws_flops:
            self.ws_flops[name] = standardisation_flops(m, tensor_shape(node.args[0]))
        flops = self.ws_flops[name]
        if flops is None or self.a.dim(node.args[0].name) != 1:
            return None
        new = name not in self.a.roles
        lay_out = self.conv(node, name, m, lay_in, shape, order)
        role = self.a.roles[name]
        role.standardised = True
        if flops:
            k = math.prod(m.kernel_size)
            self.term(self.a.flop_terms, flops * k, self.a.expand(lay_in), lay_out)
        per_filter = [
            p
            for p in m._parameters.values()
            if p is not None and p is not m.weight and p is not m.bias and p.dim() >= 1
        ]
        for p in per_filter if new else ():
            if p.shape[0] == m.out_channels:  # a gain: sliced with the filters
                self.term(self.a.param_terms, p.numel() // p.shape[0], lay_out)
        return lay_out

    def conv(self, node, name, m, lay_in, shape, order) -> Layout | None:
        k = math.prod(m.kernel_size)
        spatial = shape[0] * math.prod(shape[2:])
        if m.groups == m.in_channels == m.out_channels and m.groups > 1:
            # depthwise: channels pass through
            self.shared(node, name, lay_in)
            # fvcore: N * prod(weight.shape) * prod(out spatial), weight = [C, 1, *k]
            self.term(self.a.flop_terms, spatial * k, lay_in)
            if name not in self.a.roles:
                self.a.roles[name] = ModuleRole(name, "dwconv", lay_in, None, order)
                self.term(self.a.param_terms, k + (m.bias is not None), lay_in)
            return self.a.expand(self.a.roles[name].in_layout)
        if m.groups > 1:
            # grouped: every conv group keeps the same number of input and output channels
            # (Torch-Pruning's rule); the input must be one space to be cut into groups
            if len(lay_in) == 1 and lay_in[0].inner == 1:
                self.a.constrain(lay_in[0].space, m.groups, interleaved=True)
            elif self.a.fix_layout(lay_in):  # its conv groups would straddle spaces
                self.a.unknown_ops.append(
                    f"{describe(node, self.modules)}: its input joins several channel spaces"
                )
        return self.producer(node, name, m, lay_in, shape, order, spatial * k)

    def shared(self, node: fx.Node, name: str, lay_in: Layout) -> None:
        """A module called again must see the same channels: unite its input layouts."""
        role = self.a.roles.get(name)
        if role is not None:
            self.unify(node, [role.in_layout, lay_in])

    def producer(self, node, name, m, lay_in, shape, order, coef) -> Layout | None:
        """A conv or linear layer: a new channel space (its output channels)."""
        self.shared(node, name, lay_in)
        groups = getattr(m, "groups", 1)
        dim = len(shape) - 1 if isinstance(m, nn.Linear) else 1
        if name not in self.producer_space:
            self.producer_space[name] = self.a.new_space(shape[dim])
            self.a.constrain(self.producer_space[name], groups, interleaved=True)
        lay_out = (Segment(self.producer_space[name], shape[dim]),)
        # conv: N * Cout * (Cin/groups) * prod(k) * prod(out spatial); linear: rows * Cin * Cout
        self.term(self.a.flop_terms, coef, lay_in, lay_out, div=groups)
        if name not in self.a.roles:
            kind = "linear" if isinstance(m, nn.Linear) else "gconv" if groups > 1 else "conv"
            self.a.roles[name] = ModuleRole(name, kind, lay_in, self.producer_space[name], order)
            k = math.prod(getattr(m, "kernel_size", (1,)))
            self.term(self.a.param_terms, k, lay_in, lay_out, div=groups)
            if m.bias is not None:
                self.term(self.a.param_terms, 1, lay_out)
        if dim != 1:
            self.a.dims[node.name] = dim
        return lay_out

    # -- normalisations -------------------------------------------------------------------------
    def norm(self, node, name, kind, lay_in, in_shape, order, factor, params) -> Layout:
        """A norm's role: its tensors are sliced with the channels it normalises; fvcore counts
        ``factor`` ops per element, it holds ``params`` parameters per channel."""
        self.shared(node, name, lay_in)
        dim = self.a.dim(node.args[0].name)
        self.term(self.a.flop_terms, math.prod(in_shape) // in_shape[dim] * factor, lay_in)
        if name not in self.a.roles:
            self.a.roles[name] = ModuleRole(name, kind, lay_in, None, order)
            if params:
                self.term(self.a.param_terms, params, lay_in)
        if dim != 1:
            self.a.dims[node.name] = dim
        return self.a.expand(self.a.roles[name].in_layout)

    def batchnorm(self, node, name, m, lay_in, in_shape, order) -> Layout | None:
        # fvcore, eval mode: 1 op per element, +1 with affine; without running statistics BN
        # normalises by batch statistics even in eval, counted by fvcore's training formula: 4 (+1)
        factor = (4 if m.running_mean is None else 1) + int(m.affine)
        return self.norm(node, name, "bn", lay_in, in_shape, order, factor, 2 * int(m.affine))

    def layernorm(self, node, name, m, lay_in, in_shape, order) -> Layout | None:
        """LayerNorm over the channels alone (channels last): pruned with them, its statistics
        are then those of the kept channels (Torch-Pruning's rule, see the README)."""
        if tuple(m.normalized_shape) != (in_shape[-1],):
            return self.unknown(node)
        affine = (m.weight is not None) + (getattr(m, "bias", None) is not None)
        # fvcore: 5 ops per element with a weight, else 4
        factor = 5 if m.weight is not None else 4
        return self.norm(node, name, "ln", lay_in, in_shape, order, factor, affine)

    def groupnorm(self, node, name, m, lay_in, in_shape, order) -> Layout | None:
        """GroupNorm loses whole groups: the kept groups' statistics do not change."""
        per_group = m.num_channels // m.num_groups
        offset = 0
        for seg in lay_in:
            if seg.inner != 1 or offset % per_group or seg.length % per_group:
                return self.unknown(node)
            offset += seg.length
        for seg in lay_in:
            self.a.constrain(seg.space, per_group, interleaved=False)
        factor = 5 if m.affine else 4
        return self.norm(node, name, "gn", lay_in, in_shape, order, factor, 2 * int(m.affine))

    # -- elementwise parameters -----------------------------------------------------------------
    def parameter(self, arg: fx.Node, dim: int, order: int) -> Layout | None:
        """A module's parameter or buffer broadcast along the channels of the tensor it scales
        or shifts (a layer scale ``gamma * x``, or ``x * gamma.view(1, -1, 1, 1)`` of a 1-D
        one): sliced with those channels along ``dim``, if every use of it is such an
        elementwise op; else None."""
        if arg.op != "get_attr":  # a 1-D parameter viewed along one dim
            src = arg.args[0] if arg.args else None
            if not (_channel_view(arg) and isinstance(src, fx.Node) and src.op == "get_attr"):
                return None
            arg, dim = src, 0
        target = str(arg.target)
        owner, _, attr = target.rpartition(".")
        m = self.root_modules.get(owner)
        if (
            m is None
            or (attr not in m._parameters and attr not in m._buffers)
            or isinstance(m, KNOWN_BASES)
        ):  # a layer's own tensors are sliced by its role
            return None
        if not _elementwise_uses(arg):
            return None
        if target not in self.a.roles:
            t = getattr(m, attr)
            lay = (Segment(self.a.new_space(t.shape[dim]), t.shape[dim]),)
            self.a.roles[target] = ModuleRole(target, "param", lay, None, order, dim=dim)
            if attr in m._parameters:
                self.term(self.a.param_terms, t.numel() // t.shape[dim], lay)
        role = self.a.roles[target]
        return self.a.expand(role.in_layout) if role.dim == dim else None


def _channel_view(node: fx.Node) -> bool:
    """``t.view(1, -1, 1, 1)`` / ``t.reshape(...)`` of a 1-D tensor: one dim holds all of it
    (the shape is the traced one, so it follows the pruned tensor's length)."""
    shape, src = tensor_shape(node), tensor_shape(node.args[0] if node.args else None)
    return (
        is_op(node, RESHAPE_FUNCTIONS, {"view", "reshape"})
        and shape is not None
        and src is not None
        and len(src) == 1
        and sum(d != 1 for d in shape) <= 1
        and sum(
            1
            for a in node.args[1:]
            if a == -1 or a == [-1] or -1 in (a if isinstance(a, list | tuple) else ())
        )
        == 1
    )


def _elementwise_uses(node: fx.Node) -> bool:
    """Whether every use of ``node`` is an elementwise binary op, directly or through a view
    along one dim."""
    return all(
        is_op(u, BINARY_FUNCTIONS, BINARY_METHODS) or (_channel_view(u) and _elementwise_uses(u))
        for u in node.users
    )
