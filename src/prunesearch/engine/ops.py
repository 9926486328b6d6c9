"""What the channel analysis knows about ops: tables of the ops whose channel behaviour is
understood, and helpers that read an ``fx`` node (its shape, its inputs, the module that owns
the tensors a functional call uses, whether a torch layer is plain)."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize

from prunesearch.engine.channels import Layout

# Elementwise modules and functions: they keep every dim, the channel dim wherever it is.
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
# Spatial modules: per-channel over the dims after the channel dim (dim 1).
SPATIAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
)
PASS_MODULES = ELEMENTWISE_MODULES + SPATIAL_MODULES

ELEMENTWISE_FUNCTIONS = {
    F.relu,
    F.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.sigmoid,
    F.tanh,
    torch.relu,
    torch.relu_,
    torch.sigmoid,
    torch.tanh,
    torch.clamp,
    torch.clip,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
}
PASS_FUNCTIONS = ELEMENTWISE_FUNCTIONS | {
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
}
PASS_METHODS = {  # all elementwise
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_min_",
    "clip",
    "clip_",
    "contiguous",
    "clone",
    "detach",
    "float",
    "abs",
    "neg",
}
BINARY_FUNCTIONS = {
    operator.add,
    operator.iadd,
    operator.mul,
    operator.imul,
    operator.sub,
    operator.isub,
    operator.truediv,
    operator.itruediv,
    torch.add,
    torch.mul,
    torch.sub,
    torch.div,
    torch.maximum,
    torch.minimum,
}
BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
RESHAPE_METHODS = {"view", "reshape", "flatten"}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
REDUCE_METHODS = {"mean", "sum", "amax"}
PERMUTE_FUNCTIONS = {torch.permute, torch.transpose, torch.swapaxes}
PERMUTE_METHODS = {"permute", "transpose", "swapaxes"}
# Ops whose result is not a tensor and that do not constrain channels.
SHAPE_METHODS = {"size", "dim", "numel"}

# Resizing: per channel, over the spatial dims. fvcore counts one op per output element for
# nearest and four for bilinear (4-D tensors); other modes are not understood here.
UPSAMPLE_FUNCTIONS = {F.interpolate, F.upsample}
UPSAMPLE_FLOPS = {"nearest": 1, "bilinear": 4}

KNOWN_BASES: tuple[type[nn.Module], ...] = (
    nn.Upsample,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Flatten,
    nn.PReLU,
    *PASS_MODULES,
)

# Functions that are the identity when their ``training`` argument is False (traced in eval
# mode, it is the constant False): name -> its position. torchvision's
# ``stochastic_depth(input, p, mode, training)``, timm's ``drop_path(x, drop_prob, training)``.
_EVAL_IDENTITIES = {"stochastic_depth": 3, "drop_path": 2}


def is_op(node: fx.Node, functions: set | dict, methods: set) -> bool:
    """Whether ``node`` calls one of ``functions`` or one of the tensor ``methods``."""
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def tensor_shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def nodes_in(arg: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(arg, out.append)
    return out


def layout_size(layout: Layout) -> int:
    return sum(seg.length * seg.inner for seg in layout)


def not_plain(m: nn.Module) -> str | None:
    """Why a torch layer (or subclass) cannot be sliced as torch's own layer, or None: a
    subclass with its own ``forward`` computes something else (a weight-standardised conv), a
    parametrization or weight-norm hook rewrites its weight, hooks may change what it returns."""
    torch_forwards = {
        c.__dict__["forward"]
        for c in type(m).__mro__
        if c.__module__.startswith("torch.") and "forward" in c.__dict__
    }
    if type(m).forward not in torch_forwards:
        return f"its own forward ({type(m).__qualname__})"
    if parametrize.is_parametrized(m):
        return "a parametrized weight"
    if m._forward_pre_hooks or m._forward_hooks:
        hooks = [
            type(h).__name__ for h in (*m._forward_pre_hooks.values(), *m._forward_hooks.values())
        ]
        return f"forward hooks ({', '.join(hooks)})"
    return None


def eval_identity(node: fx.Node) -> bool:
    position = _EVAL_IDENTITIES.get(getattr(node.target, "__name__", ""))
    if position is None:
        return False
    training = (
        node.args[position] if len(node.args) > position else node.kwargs.get("training", True)
    )
    return training is False


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        m = modules[str(node.target)]
        extra = f", groups={m.groups}" if isinstance(m, nn.modules.conv._ConvNd) else ""
        return f"module '{node.target}' ({type(m).__name__}{extra})"
    if node.op == "call_method":
        return f"method '.{node.target}()' at node '{node.name}'"
    target = getattr(node.target, "__name__", str(node.target))
    return f"function '{target}' at node '{node.name}'"


# functional norm -> (its module class, the names of the module tensors it takes, from arg 1)
NORM_FUNCTIONS: dict[Any, tuple[type[nn.Module], tuple[str | None, ...]]] = {
    F.batch_norm: (
        nn.modules.batchnorm._BatchNorm,
        ("running_mean", "running_var", "weight", "bias"),
    ),
    F.layer_norm: (nn.LayerNorm, (None, "weight", "bias")),
    F.group_norm: (nn.GroupNorm, (None, "weight", "bias")),  # if it follows (group_norm_follows)
}


def group_norm_follows(m: nn.Module, in_shape: tuple[int, ...]) -> bool:
    """Whether the forward of ``m``, a GroupNorm (subclass) that calls ``F.group_norm``
    itself (timm's GroupNormAct), follows its pruned group count: a copy that keeps the first
    half of its norm groups gives the original's output on those channels (a literal group
    count would not)."""
    import copy

    from prunesearch.engine.prune import slice_module

    if m.num_groups < 2:
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, in_shape[1], *(min(n, 4) for n in in_shape[2:])), generator=gen)
    kept = torch.arange(m.num_groups // 2 * (m.num_channels // m.num_groups))
    probe = copy.deepcopy(m).float().cpu().eval()
    try:
        with torch.no_grad():
            for p in probe.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
            ref = probe(x)[:, kept]
            slice_module(probe, "gn", kept, None)
            out = probe(x[:, kept])
    except Exception:
        return False
    return out.shape == ref.shape and bool(torch.allclose(out, ref, atol=1e-5, rtol=1e-4))


def norm_owner(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The norm module whose own tensors (statistics, affine parameters) a functional
    ``F.batch_norm``/``F.layer_norm``/``F.group_norm`` call uses (timm's BatchNormAct2d and
    GroupNormAct, torchvision's LayerNorm2d), so that pruning slices them; None if they are
    not one module's, or not all of its tensors."""
    cls, names = NORM_FUNCTIONS[node.target]
    given = {k: v for k, v in zip(names, node.args[1:], strict=False) if k is not None}
    given |= {k: v for k, v in node.kwargs.items() if k in names}
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
    m = modules.get(owner)
    if not isinstance(m, cls) or {k for k, v in given.items() if v is not None} != {
        k for k in names if k is not None and getattr(m, k, None) is not None
    }:
        return None
    return owner


def int_list(args: Any) -> list[int] | None:
    """``(0, 2, 3, 1)`` or ``[0, 2, 3, 1]`` or varargs ints as a list; None if any is not an
    int (a traced value)."""
    if len(args) == 1 and isinstance(args[0], list | tuple):
        args = args[0]
    out = list(args)
    return out if all(isinstance(a, int) for a in out) else None
