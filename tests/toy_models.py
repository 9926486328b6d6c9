"""Small models, each built around one construct the channel-dependency engine must handle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Plain(nn.Module):
    """conv-BN-ReLU modules, module pooling, flatten of a CxHxW map into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = cbr(3, 8)
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 12, 3, padding=1)  # with bias
        self.bn2 = nn.BatchNorm2d(12)
        self.act = nn.LeakyReLU(0.1)
        self.fc1 = nn.Linear(12 * 4 * 4, 20)
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x):
        x = self.pool(self.c1(x))  # (N, 8, 8, 8)
        x = F.avg_pool2d(self.act(self.bn2(self.c2(x))), 2)  # (N, 12, 4, 4)
        x = x.view(x.size(0), -1)  # (N, 192): 16 features per channel
        return self.fc2(F.relu(self.fc1(x)))


class PostActResidual(nn.Module):
    """Post-activation residual add, identity and projection shortcuts, functional ops."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.a1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.abn = nn.BatchNorm2d(8)
        self.b1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bbn = nn.BatchNorm2d(16)
        self.proj = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = torch.relu(self.abn(self.a1(x)) + x)
        x = (self.bbn(self.b1(x)) + self.proj(x)).relu()
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class PreActResidual(nn.Module):
    """Pre-activation blocks: BN-ReLU before the conv, sum without activation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn_out = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        x = x + out
        x = F.relu(self.bn_out(x))
        return self.fc(x.mean((2, 3)))


class Concat(nn.Module):
    """Dense connectivity: torch.cat on channels, a BN over the concatenation, 1x1 transition."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.l1 = nn.Sequential(nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1))
        self.l2 = nn.Sequential(nn.BatchNorm2d(10), nn.ReLU(), nn.Conv2d(10, 5, 3, padding=1))
        self.bn = nn.BatchNorm2d(15)
        self.trans = nn.Conv2d(15, 7, 1)
        self.fc = nn.Linear(7 * 2 * 2, 3)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.l1(x)], 1)
        x = torch.cat((x, self.l2(x)), dim=1)
        x = self.trans(F.relu(self.bn(x)))
        x = nn.functional.adaptive_max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    """Depthwise conv and an SE gate (elementwise ``*`` of the map by a per-channel scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 12, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.se_reduce = nn.Conv2d(12, 4, 1)
        self.se_expand = nn.Conv2d(4, 12, 1)
        self.project = nn.Conv2d(12, 6, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = F.hardswish(self.bn1(self.expand(x)))
        x = F.relu6(self.bn2(self.dw(x)))
        s = x.mean((2, 3), keepdim=True)  # (N, 12, 1, 1)
        s = torch.sigmoid(self.se_expand(F.silu(self.se_reduce(s))))
        x = x * s
        x = self.bn3(self.project(x))
        return self.head(x.mean(dim=[2, 3]))


class GroupedConv(nn.Module):
    """A grouped (non-depthwise) conv: its input and output lose whole channels per group."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gconv = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.c3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = F.relu(self.gconv(F.relu(self.c1(x))))
        x = F.relu(self.c3(x))
        return self.fc(x.mean((2, 3)))


class UnknownOp(nn.Module):
    """``torch.roll`` over channels is not understood: the channels it touches stay whole."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.roll(F.relu(self.c1(x)), 1, dims=1)
        return self.fc(F.relu(self.c2(x)).mean((2, 3)))


class DynamicGate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = DynamicGate()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.gate(self.c1(x)).mean((2, 3)))


def in_chans_net(in_chans: int = 3, n: int = 4) -> nn.Module:
    """A constructor that names its arguments as timm does (``in_chans``), not ``in_channels``:
    it must be checked against the data by running it, not by guessing argument names."""
    return nn.Sequential(cbr(in_chans, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n))


class StdConv2d(nn.Conv2d):
    """A weight-standardised conv (as timm's StdConv2d): its own forward normalises each filter,
    so slicing it as a plain Conv2d would compute something else."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class WeightStandardised(nn.Module):
    """A weight-standardised conv between plain ones: its output channels prune exactly, its
    input channels with the stated semantics (filters standardised over the kept inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = cbr(3, 8)
        self.ws = StdConv2d(8, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.c3 = cbr(12, 10)
        self.c4 = cbr(10, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.c4(self.c3(F.relu(self.bn(self.ws(self.c1(x))))))
        return self.fc(x.mean((2, 3)))


def weight_normed(legacy: bool) -> nn.Module:
    """A conv under weight normalisation (the parametrization, or the legacy pre-hook)."""
    from torch.nn.utils import parametrizations, weight_norm

    model = nn.Sequential(
        cbr(3, 8),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        cbr(12, 6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )
    (weight_norm if legacy else parametrizations.weight_norm)(model[1])
    return model


class FunctionalConvs(nn.Module):
    """Convolutions written as F.conv2d on parameters: invisible to the analysis."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.1)
        self.w2 = nn.Parameter(torch.randn(4, 8, 3, 3) * 0.1)

    def forward(self, x):
        return F.conv2d(F.relu(F.conv2d(x, self.w1, padding=1)), self.w2, padding=1).mean((2, 3))


class AuxHead(nn.Module):
    """An auxiliary head used only in training (as torchvision's googlenet/inception_v3)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = cbr(3, 8)
        self.aux = nn.Conv2d(8, 4, 1)
        self.c2 = cbr(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.c1(x)
        out = self.fc(self.c2(x).mean((2, 3)))
        if self.training:
            return out, self.aux(x).mean((2, 3))
        return out


def stochastic_depth(x: torch.Tensor, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth's signature and fx treatment (wrapped): the identity
    unless training."""
    if not training or p == 0.0:
        return x
    keep = torch.empty(x.shape[0], 1, 1, 1).bernoulli_(1 - p) / (1 - p)
    return x * keep


torch.fx.wrap("stochastic_depth")


class StochasticDepthResidual(nn.Module):
    """A residual block whose branch goes through stochastic depth (efficientnet's blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8)
        self.branch = nn.Sequential(cbr(8, 6), nn.Conv2d(6, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + stochastic_depth(self.branch(x), 0.2, "row", self.training)
        return self.fc(x.mean((2, 3)))


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm and activation in one module, the BN written functionally (timm's)."""

    def forward(self, x):
        x = F.batch_norm(
            x,
            self.running_mean if not self.training else None,
            self.running_var if not self.training else None,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
        return F.relu(x)


class FunctionalNorms(nn.Module):
    """Convs normalised by BatchNormAct2d, in a residual stream."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), BatchNormAct2d(8)
        self.c2, self.n2 = nn.Conv2d(8, 6, 3, padding=1, bias=False), BatchNormAct2d(6)
        self.c3, self.n3 = nn.Conv2d(6, 8, 1, bias=False), BatchNormAct2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.n1(self.c1(x))
        x = x + self.n3(self.c3(self.n2(self.c2(x))))
        return self.fc(x.mean((2, 3)))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map, by permutes (torchvision's and timm's)."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)


class ConvNeXtBlocks(nn.Module):
    """ConvNeXt's patterns: LayerNorm2d after the stem and before a downsampling conv; blocks
    of depthwise conv, permute, LayerNorm, Linear-GELU-Linear on channels last, permute back,
    a layer scale ``gamma * x`` and a residual sum; a LayerNorm before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.stem_norm = LayerNorm2d(8, eps=1e-6)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.LayerNorm(8, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.full((8, 1, 1), 0.5))
        self.down_norm = LayerNorm2d(8, eps=1e-6)
        self.down = nn.Conv2d(8, 12, 2, stride=2)
        self.dw2 = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.scale2 = nn.Parameter(torch.full((12,), 2.0))  # a layer scale on channels last
        self.mlp2 = nn.Linear(12, 12)
        self.head_scale = nn.Parameter(torch.full((12,), 0.5))  # viewed (1, C, 1, 1), timm's
        self.head_norm = nn.LayerNorm(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        x = self.stem_norm(self.stem(x))
        y = self.dw(x).permute(0, 2, 3, 1)  # (N, H, W, 8)
        y = self.pw2(self.act(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + self.gamma * y
        x = self.down(self.down_norm(x))
        y = torch.permute(self.dw2(x), (0, 2, 3, 1))
        x = x + (self.mlp2(y) * self.scale2).permute(0, 3, 1, 2)
        x = x.mul(self.head_scale.view(1, -1, 1, 1))
        return self.fc(self.head_norm(x.mean((2, 3))))


class GroupedBottleneck(nn.Module):
    """ResNeXt/RegNet blocks: a grouped 3x3 conv between 1x1 convs, an SE gate on its output,
    a residual stream; a second grouped conv whose input is the stream itself."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8)
        self.reduce = cbr(8, 12, 1)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3, bias=False)
        self.gbn = nn.BatchNorm2d(12)
        self.se_reduce, self.se_expand = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 1)
        self.expand = nn.Conv2d(12, 8, 1, bias=False)
        self.ebn = nn.BatchNorm2d(8)
        self.grouped2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.gbn(self.grouped(self.reduce(x))))
        y = y * torch.sigmoid(self.se_expand(F.relu(self.se_reduce(y.mean((2, 3), True)))))
        x = F.relu(x + self.ebn(self.expand(y)))
        return self.fc(F.relu(self.grouped2(x)).mean((2, 3)))


class GroupNorms(nn.Module):
    """GroupNorm in a residual stream and on a block's inner channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.gn0 = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(4, 8)
        self.c1, self.gn1 = nn.Conv2d(8, 12, 3, padding=1), nn.GroupNorm(3, 12)
        self.c2, self.gn2 = nn.Conv2d(12, 8, 1), nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.gn0(self.stem(x)))
        x = F.relu(x + self.gn2(self.c2(F.relu(self.gn1(self.c1(x))))))
        return self.fc(x.mean((2, 3)))


class GroupNormAct(nn.GroupNorm):
    """timm's GroupNormAct: ``F.group_norm`` with its own group count, then an activation."""

    def forward(self, x):
        return F.relu(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class StandardisedGroupNormed(nn.Module):
    """BiT's (ResNetV2) pattern: weight-standardised convs, each followed by a GroupNormAct,
    in a residual stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.gn0 = StdConv2d(3, 8, 3, padding=1), GroupNormAct(4, 8)
        self.c1, self.gn1 = StdConv2d(8, 12, 3, padding=1), GroupNormAct(3, 12)
        self.c2, self.gn2 = StdConv2d(12, 8, 1), GroupNormAct(2, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.gn0(self.stem(x))
        x = x + self.gn2(self.c2(self.gn1(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's ShuffleNetV2 channel shuffle (traced: sizes are traced values)."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, -1, height, width)


class ChunkShuffle(nn.Module):
    """ShuffleNetV2's stride-1 unit (chunk in two, one half through a branch, cat, channel
    shuffle): the shuffle interleaves the halves, which the pruned model would do at other
    places, so the stream stays whole; a chunk of a concatenation of two equal convs cuts
    between them and prunes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8)
        self.branch = nn.Sequential(cbr(4, 6, 1), nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4))
        self.a, self.b = cbr(8, 6), cbr(8, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.stem(x)
        x1, x2 = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((x1, self.branch(x2)), dim=1), 2)
        p, q = torch.cat([self.a(x), self.b(x)], 1).chunk(2, dim=1)
        return self.fc((p * q).mean((2, 3)))


class CrossStage(nn.Module):
    """CSPNet's stage: one conv's output split at a literal size, the first part passed on
    whole, the second through a residual block, both concatenated into a transition conv;
    then a chunk of one conv's output in two halves (pruned alike) and a channel slice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.exp = cbr(3, 8), cbr(8, 12, 1)
        self.block, self.trans_b, self.trans = cbr(6, 6), cbr(6, 6, 1), cbr(12, 8, 1)
        self.halves, self.a = cbr(8, 8, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(7, 4)

    def forward(self, x):
        xs, xb = self.exp(self.stem(x)).split(6, dim=1)  # (N, 6, H, W) each
        xb = xb + self.block(xb)
        x = self.trans(torch.cat([xs, self.trans_b(xb)], dim=1))  # (N, 8, H, W)
        p, q = self.halves(x).chunk(2, dim=1)  # (N, 4, H, W) each
        y = torch.cat([self.a(p) * q, x[:, 5:]], 1)  # (N, 4 + 3, H, W)
        return self.fc(y.mean((2, 3)))


class DepthwiseOverConcat(nn.Module):
    """A depthwise conv over a concatenation (Inception/MixNet-style): its filters belong to
    two groups, at their offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = cbr(3, 4, 1), cbr(3, 5, 1)
        self.dw = nn.Conv2d(9, 9, 3, padding=1, groups=9, bias=False)
        self.bn = nn.BatchNorm2d(9)
        self.c = cbr(9, 6, 1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.dw(torch.cat([self.a(x), self.b(x)], 1))))
        return self.fc(self.c(x).mean((2, 3)))


class GhostModule(nn.Module):
    """timm's GhostNet module: a primary conv, a cheap depthwise conv of its output, both
    concatenated and sliced to ``out`` channels (the whole concatenation: the identity)."""

    def __init__(self, c_in: int, out: int) -> None:
        super().__init__()
        self.out = out
        self.primary = cbr(c_in, out // 2, 1)
        self.cheap = nn.Sequential(
            nn.Conv2d(out // 2, out // 2, 3, padding=1, groups=out // 2, bias=False),
            nn.BatchNorm2d(out // 2),
        )

    def forward(self, x):
        x1 = self.primary(x)
        return torch.cat([x1, self.cheap(x1)], dim=1)[:, : self.out, :, :]  # (N, out, H, W)


class GhostBottlenecks(nn.Module):
    """Ghost modules added to a stem's output and to each other: the stem's one space meets
    the ghost output's one space twice (``[x1, dw(x1)]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8)
        self.g1, self.g2 = GhostModule(8, 8), GhostModule(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.g1(x)  # (N, 8, H, W): [x1, dw(x1)] + one space
        x = x + self.g2(x)
        return self.fc(x.mean((2, 3)))


class MultiResolutionFusion(nn.Module):
    """HRNet's fusion: a high- and a low-resolution stream, each added to the other resized
    (a 1x1 conv and ``nn.Upsample`` up, a strided conv down; ``F.interpolate`` bilinear)."""

    def __init__(self) -> None:
        super().__init__()
        self.high, self.low = cbr(3, 6), cbr(3, 8, stride=2)
        self.up = nn.Sequential(nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6))
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.down = nn.Sequential(nn.Conv2d(6, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8))
        self.head = cbr(8, 6, 1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        h, lo = self.high(x), self.low(x)  # (N, 6, H, W), (N, 8, H/2, W/2)
        h, lo = F.relu(h + self.upsample(self.up(lo))), F.relu(lo + self.down(h))
        h2 = F.interpolate(self.head(lo), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fc(torch.cat([h, h2], 1).mean((2, 3)))


class MixedConv2d(nn.ModuleDict):
    """timm's MixedConv2d: the channels split into a list of sizes (an attribute), one conv
    per chunk (kernel 3 and 5 depthwise, or 1x1), concatenated."""

    def __init__(self, splits: list[int], out_splits: list[int] | None = None) -> None:
        super().__init__()
        for i, (c, o) in enumerate(zip(splits, out_splits or splits, strict=True)):
            k = 1 if out_splits else 3 + 2 * i
            self.add_module(
                str(i), nn.Conv2d(c, o, k, padding=k // 2, groups=1 if out_splits else c)
            )
        self.splits = splits

    def forward(self, x):
        x_split = torch.split(x, self.splits, 1)
        return torch.cat([c(x_split[i]) for i, c in enumerate(self.values())], 1)


class MixedKernels(nn.Module):
    """MixNet's block: a grouped 1x1 expansion and a depthwise conv of mixed kernel sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8)
        self.pw = MixedConv2d([4, 4], [6, 6])
        self.bn1 = nn.BatchNorm2d(12)
        self.dw = MixedConv2d([5, 7])
        self.bn2 = nn.BatchNorm2d(12)
        self.proj = nn.Conv2d(12, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.bn2(self.dw(F.relu(self.bn1(self.pw(x))))))
        return self.fc((x + self.proj(y)).mean((2, 3)))


CONSTRUCTS = {
    "plain": Plain,
    "postact_residual": PostActResidual,
    "preact_residual": PreActResidual,
    "concat": Concat,
    "squeeze_excite": SqueezeExcite,
    "grouped_conv": GroupedConv,
    "unknown_op": UnknownOp,
    "convnext": ConvNeXtBlocks,
    "grouped_bottleneck": GroupedBottleneck,
    "group_norms": GroupNorms,
    "chunk_shuffle": ChunkShuffle,
    "cross_stage": CrossStage,
    "depthwise_concat": DepthwiseOverConcat,
    "ghost_bottlenecks": GhostBottlenecks,
    "multi_resolution_fusion": MultiResolutionFusion,
    "weight_standardised": WeightStandardised,
    "mixed_kernels": MixedKernels,
    "standardised_group_normed": StandardisedGroupNormed,
}
